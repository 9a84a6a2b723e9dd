"""Two ``bridge worker`` processes on one database while webhooks stream in through ``bridge
web``: every order is reported once, by one of them, and both do part of the work."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.e2e.figures import in_doubt_windows, percentiles, posts_per_order, publish, seeded
from tests.e2e.test_kill_soak import add_orders, queue_empty
from tests.processes import WebhookStream, free_port, wait_for

FAST = {"BRIDGE_WORKER_POLL_INTERVAL": "0.02", "WEB_CONCURRENCY": "2"}


@pytest.mark.parametrize("orders", [pytest.param(200, id="short"), pytest.param(1000, id="long", marks=pytest.mark.soak)])
def test_two_workers_on_one_database_never_send_a_delivery_twice(spawn, environ, bigcommerce, refersion, orders):
    rng, seed = seeded(f"two workers ({orders} orders)")
    order_ids, eligible = add_orders(bigcommerce, rng, orders, first_id=300_000)
    refersion.latency = 0.01  # a request on the wire while the other worker polls
    port = free_port()
    web = spawn(["web", "--port", str(port)], FAST)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert web.process.poll() is None, web.output
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code in (200, 503)
        except requests.RequestException:
            return False

    wait_for(up, timeout=30)
    workers = [spawn(["worker"], FAST, name=f"worker-{n}") for n in range(2)]
    started = time.time()
    stream = WebhookStream(base, order_ids, token=WEBHOOK_SECRET, rate=60).start()
    stream.join(timeout=orders / 60 + 60)
    db_path = environ["BRIDGE_DATABASE_PATH"]
    wait_for(lambda: eligible <= set(posts_per_order(refersion)) and queue_empty(db_path), timeout=120, interval=0.2)
    took = time.time() - started
    time.sleep(1)  # anything sent twice would arrive now
    codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [worker.output[-2000:] for worker in workers]
    assert web.stop() == 0

    posts = posts_per_order(refersion)
    twice = sorted(order_id for order_id, count in posts.items() if count > 1)
    shares = [worker.output.count("Reported order") for worker in workers]
    publish(
        f"two workers ({orders} orders)",
        seed=seed,
        orders_sent=len(order_ids),
        eligible=len(eligible),
        acknowledged=len(stream.acknowledged),
        delivered=len(posts),
        duplicated=len(twice),
        lost=len(eligible - set(posts)),
        intake_5xx=stream.answered_5xx,
        reported_by_each_worker=shares,
        all_reported_after_s=round(took, 1),
        in_doubt_window=percentiles(in_doubt_windows(refersion, db_path)),
    )
    assert twice == [], f"seed {seed}: sent twice: {twice}"
    assert len(refersion.attempts) == len(eligible)  # not even a refused second copy
    assert set(posts) == eligible
    assert all(share > 0 for share in shares), shares
