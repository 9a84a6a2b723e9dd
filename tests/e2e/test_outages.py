"""Outages of the outside world, end to end: a real ``bridge serve`` against the sandbox servers.

Refersion down (503, refused connections, slower than ``refersion.timeout``) then back; Refersion
refusing the keys; BigCommerce's quota, 500s and timeouts. Every acknowledged eligible order is
reported exactly once afterwards, and the figures go to RELIABILITY.md.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.conftest import REFERSION_PUBLIC, REFERSION_SECRET, WEBHOOK_SECRET
from tests.e2e.figures import posts_per_order, publish, seeded
from tests.e2e.test_kill_soak import add_orders, queue_empty
from tests.fakes import PAID_PATH
from tests.processes import Serve, WebhookStream, wait_for

# Forty short steps: an outage of a few seconds uses some of them, and none is given up on.
SHORT_RETRIES = {"BRIDGE_WORKER_RETRY_SCHEDULE": ",".join(["0.2", "0.5"] + ["1"] * 38)}
ORDERS_PATH = r"^/stores/[^/]+/v2/orders/\d+"


def deliveries(db_path) -> list[dict]:
    conn = sqlite3.connect(str(db_path), timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM deliveries ORDER BY id")]
    finally:
        conn.close()


def paused(db_path, service: str) -> bool:
    conn = sqlite3.connect(str(db_path), timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM pauses WHERE service = ?", [service]).fetchone()[0] > 0
    finally:
        conn.close()


def answered(server, status: int, path: str = PAID_PATH) -> int:
    return sum(1 for call in server.calls(path) if call.status == status)


def check_exactly_once(refersion, eligible: set[int], acknowledged: set[int], seed: int) -> dict:
    posts = posts_per_order(refersion)
    lost = sorted((eligible & acknowledged) - set(posts))
    assert lost == [], f"seed {seed}: never reported: {lost}"
    assert set(posts) <= eligible, f"seed {seed}: reported though not eligible: {sorted(set(posts) - eligible)}"
    twice = sorted(order_id for order_id, count in posts.items() if count > 1)
    assert twice == [] and not any(received.duplicate for received in refersion.received), f"seed {seed}: posted twice: {twice}"
    return {"delivered": len(posts), "duplicated": len(twice), "lost": len(lost)}


@pytest.mark.parametrize("orders", [pytest.param(45, id="short"), pytest.param(600, id="long", marks=pytest.mark.soak)])
def test_refersion_down_then_back_every_order_is_delivered_once(spawn, environ, bigcommerce, refersion, orders):
    """503s, then a refused connection (the server stopped), then answers slower than the
    timeout (a gateway holding the request, then 504), then Refersion is back."""
    rng, seed = seeded(f"Refersion down then back ({orders} orders)")
    order_ids, eligible = add_orders(bigcommerce, rng, orders)
    db_path = environ["BRIDGE_DATABASE_PATH"]
    serve = Serve(spawn, {**SHORT_RETRIES, "BRIDGE_REFERSION_TIMEOUT": "0.5"}).start()
    thirds = [order_ids[n::3] for n in range(3)]
    rate = orders / 6  # each phase's webhooks arrive over about two seconds
    streams = []
    port = refersion.port
    try:
        refersion.unavailable(times=100_000, retry_after=None)
        streams.append(WebhookStream(serve.base, thirds[0], token=WEBHOOK_SECRET, rate=rate).start())
        wait_for(lambda: answered(refersion, 503) >= 10, timeout=20)

        refersion.clear_failures()
        refersion.stop()  # connection refused
        streams.append(WebhookStream(serve.base, thirds[1], token=WEBHOOK_SECRET, rate=rate).start())
        wait_for(lambda: sum("could not reach Refersion" in (row["last_error"] or "") for row in deliveries(db_path)) >= 5, timeout=20)

        refersion.start(port=port)
        refersion.fail_next(504, times=100_000, delay=0.8, path=PAID_PATH)  # held past the 0.5 s timeout
        streams.append(WebhookStream(serve.base, thirds[2], token=WEBHOOK_SECRET, rate=rate).start())
        wait_for(lambda: answered(refersion, 504) >= 5, timeout=20)
    finally:
        refersion.start(port=port)  # no-op when serving; the session's server must outlive this test
        refersion.clear_failures()
    back = time.time()
    for stream in streams:
        stream.join(timeout=30)
    wait_for(lambda: eligible <= set(posts_per_order(refersion)) and queue_empty(db_path), timeout=60, interval=0.1)
    recovered = time.time() - back
    time.sleep(1)  # anything sent twice would arrive now
    assert serve.stop() == 0, serve.process.output

    acknowledged = {order_id for stream in streams for order_id in stream.acknowledged}
    rows = deliveries(db_path)
    figures = publish(
        f"Refersion down then back ({orders} orders)",
        seed=seed,
        orders_sent=len(order_ids),
        eligible=len(eligible),
        acknowledged=len(acknowledged),
        **check_exactly_once(refersion, eligible, acknowledged, seed),
        refersion_503=answered(refersion, 503),
        refersion_504_after_timeout=answered(refersion, 504),
        intake_5xx=sum(stream.answered_5xx for stream in streams),
        attempts_failed=sum(row["attempts"] for row in rows),
        recovery_s=round(recovered, 2),
    )
    assert acknowledged == set(order_ids)
    assert {row["state"] for row in rows} == {"done"}
    assert figures["attempts_failed"] > 0
    assert recovered < 10 + orders / 50, f"the queue took {recovered:.1f} s to drain after Refersion came back"


def test_refused_refersion_keys_pause_deliveries_without_burning_attempts_until_the_keys_change(spawn, environ, bigcommerce, refersion):
    rng, seed = seeded("Refersion refuses the keys")
    order_ids, eligible = add_orders(bigcommerce, rng, 20)
    db_path = environ["BRIDGE_DATABASE_PATH"]
    refersion.public_key, refersion.secret_key = "pub_rotated_0000", "sec_rotated_0000"  # the configured pair is refused
    serve = Serve(spawn, SHORT_RETRIES).start()
    stream = WebhookStream(serve.base, order_ids, token=WEBHOOK_SECRET, rate=40).start()
    stream.join(timeout=30)
    wait_for(lambda: paused(db_path, "refersion"), timeout=20)
    wait_for(lambda: len(deliveries(db_path)) == len(eligible), timeout=20)
    refused = answered(refersion, 401)
    time.sleep(2)  # a paused store sends nothing: no further 401s, no attempt used
    assert answered(refersion, 401) == refused
    rows = deliveries(db_path)
    assert {(row["state"], row["attempts"]) for row in rows} == {("pending", 0)}
    assert serve.stop() == 0, serve.process.output

    refersion.add_keys("pub_new_1111", "sec_new_1111_abcdef")  # the merchant copies the new pair into the config
    fixed = time.time()
    serve.start(BRIDGE_REFERSION_PUBLIC_KEY="pub_new_1111", BRIDGE_REFERSION_SECRET_KEY="sec_new_1111_abcdef")
    wait_for(lambda: eligible <= set(posts_per_order(refersion)) and queue_empty(db_path), timeout=30, interval=0.1)
    resumed = time.time() - fixed
    time.sleep(1)
    assert serve.stop() == 0, serve.process.output
    figures = publish(
        "Refersion refuses the keys",
        seed=seed,
        orders_sent=len(order_ids),
        eligible=len(eligible),
        acknowledged=len(stream.acknowledged),
        **check_exactly_once(refersion, eligible, set(stream.acknowledged), seed),
        refersion_401=answered(refersion, 401),
        attempts_used_while_paused=0,
        resumed_after_restart_with_new_keys_s=round(resumed, 2),
    )
    assert figures["refersion_401"] <= 2  # the first refusal pauses the store
    assert {received.keys for received in refersion.received} == {("pub_new_1111", "sec_new_1111_abcdef")}
    assert (REFERSION_PUBLIC, REFERSION_SECRET) not in {received.keys for received in refersion.received}
    assert not paused(db_path, "refersion")


def test_bigcommerce_quota_500s_and_timeouts_orders_are_evaluated_when_it_recovers_and_no_request_is_refused(
    spawn, environ, bigcommerce, refersion
):
    """A quota of 10 requests a second (each order takes 3), 500s and answers slower than the
    timeout: every order is evaluated and reported once, and the sandbox never answers 429,
    as the bridge stops when the headers say the quota is spent."""
    rng, seed = seeded("BigCommerce quota, 500s and timeouts")
    order_ids, eligible = add_orders(bigcommerce, rng, 24)
    bigcommerce.set_quota(quota=10, window_ms=1000)
    bigcommerce.fail_next(500, times=6, path=ORDERS_PATH)
    bigcommerce.slow_next(1.0, times=3, path=ORDERS_PATH)  # over the 0.5 s timeout
    db_path = environ["BRIDGE_DATABASE_PATH"]
    serve = Serve(spawn, {**SHORT_RETRIES, "BRIDGE_BIGCOMMERCE_TIMEOUT": "0.5"}).start()
    started = time.time()
    stream = WebhookStream(serve.base, order_ids, token=WEBHOOK_SECRET, rate=40).start()
    stream.join(timeout=30)
    wait_for(lambda: eligible <= set(posts_per_order(refersion)) and queue_empty(db_path), timeout=90, interval=0.1)
    took = time.time() - started
    time.sleep(1)
    assert serve.stop() == 0, serve.process.output
    calls = bigcommerce.recorded()
    figures = publish(
        "BigCommerce quota, 500s and timeouts",
        seed=seed,
        orders_sent=len(order_ids),
        eligible=len(eligible),
        acknowledged=len(stream.acknowledged),
        **check_exactly_once(refersion, eligible, set(stream.acknowledged), seed),
        bigcommerce_requests=len(calls),
        bigcommerce_500=sum(1 for call in calls if call.status == 500),
        bigcommerce_slow=3,
        bigcommerce_429=sum(1 for call in calls if call.status == 429),
        all_reported_after_s=round(took, 1),
        holds_logged=serve.process.output.count("Holding bigcommerce work"),
    )
    assert figures["bigcommerce_500"] == 6
    assert not bigcommerce.injections, "not every injected 500 and slow answer was met"
    # The quota was reached: the store was held, or its lanes used a whole window's quota and waited
    # for the next (the most requests BigCommerce answered within any one second, reserve kept).
    times = sorted(call.at for call in calls)
    busiest = max((sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times)), default=0)
    assert figures["holds_logged"] > 0 or busiest >= 10 - 1, "the quota was never reached: the test proves nothing"
    assert figures["bigcommerce_429"] == 0, "the bridge sent requests the quota headers said would be refused"
