"""``kill -9`` of the worker and of the whole ``bridge serve`` at random instants while a stream
of webhooks arrives: every acknowledged eligible order reaches Refersion exactly once, except an
order whose delivery was on the wire at a kill (README: the in-doubt window, measured here)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from bridge.worker.loop import SENDING_LANES
from tests.conftest import WEBHOOK_SECRET, envelope
from tests.e2e.figures import first_arrivals, in_doubt_windows, percentiles, posts_per_order, publish, seeded
from tests.fakes import load_fixture
from tests.processes import Serve, WebhookStream, wait_for

FAST = {"BRIDGE_WORKER_RETRY_SCHEDULE": "0.2,0.5,1,1,1,1,1,1,1,1", "BRIDGE_REFERSION_TIMEOUT": "2"}
INELIGIBLE_SHARE = 0.1  # orders not paid yet: acknowledged, never reported
# A kill lands "on the wire" when Refersion accepted the order and the answer was not on disk yet;
# a duplicate whose first copy was accepted longer than this before a kill is a defect.
IN_DOUBT_LIMIT = 0.05
SANDBOX_LAG = 0.25
LEASE_RECOVERY = 15 + 10  # a killed worker's items wait out their lease; then some margin


LARGE_QUOTA = 1_000_000  # requests per 30 s: an Enterprise-sized quota, so the stream is not throttled


def add_orders(bigcommerce, rng, count: int, first_id: int = 100_000) -> tuple[list[int], set[int]]:
    """``count`` orders at the sandbox BigCommerce, about 10 % not paid yet; returns (all, eligible).

    The store gets a large quota: the sandbox otherwise announces a Standard plan's 150 requests
    per 30 s, which the bridge honours (test_outages.py), and 4 requests per order would take minutes.
    """
    bigcommerce.set_quota(quota=LARGE_QUOTA, window_ms=30_000)
    fixture = load_fixture("manual_discount")
    order_ids, eligible = [], set()
    for n in range(count):
        if rng.random() < INELIGIBLE_SHARE:
            order_ids.append(bigcommerce.add(fixture, id=first_id + n, status_id=1, payment_status="pending"))
        else:
            eligible.add(bigcommerce.add(fixture, id=first_id + n))
            order_ids.append(first_id + n)
    return order_ids, eligible


def queue_empty(db_path) -> bool:
    conn = sqlite3.connect(str(db_path), timeout=30)
    try:
        busy = conn.execute(
            "SELECT (SELECT count(*) FROM events WHERE state IN ('pending', 'working'))"
            " + (SELECT count(*) FROM deliveries WHERE state IN ('pending', 'working'))"
        ).fetchone()[0]
        return busy == 0
    finally:
        conn.close()


def run_soak(name, spawn, environ, bigcommerce, refersion, *, orders: int, kills: int, rate: float, spread: float = 0.9) -> dict:
    """Stream ``orders`` webhooks at ``rate`` per second, with ``kills`` kills in the first ``spread`` of the stream."""
    rng, seed = seeded(name)
    order_ids, eligible = add_orders(bigcommerce, rng, orders)
    db_path = environ["BRIDGE_DATABASE_PATH"]
    serve = Serve(spawn, FAST).start()
    duration = orders / rate
    # Kill instants in the first `spread` of the stream, at least 1.5 s apart (a restart takes ~1 s).
    instants = sorted(rng.uniform(0.1, spread) * duration for _ in range(kills))
    for n in range(1, len(instants)):
        instants[n] = max(instants[n], instants[n - 1] + 1.5)
    kinds = [rng.choice(["worker", "serve"]) for _ in range(kills)]
    stream = WebhookStream(serve.base, order_ids, token=WEBHOOK_SECRET, rate=rate).start()
    kill_times = []
    began = time.monotonic()
    for instant, kind in zip(instants, kinds, strict=True):
        time.sleep(max(0.0, began + instant - time.monotonic()))
        kill_times.append(time.time())
        serve.kill_worker() if kind == "worker" else serve.kill_all()
        serve.start()
    stream.join(timeout=duration + 120)
    last_kill = kill_times[-1] if kill_times else time.time()
    wait_for(lambda: eligible <= set(posts_per_order(refersion)) and queue_empty(db_path), timeout=LEASE_RECOVERY + 60, interval=0.2)
    recovered = time.time() - last_kill
    time.sleep(1)  # anything sent twice would arrive now
    assert serve.stop() == 0, serve.process.output

    posts = posts_per_order(refersion)
    acknowledged = set(stream.acknowledged)
    lost = sorted((eligible & acknowledged) - set(posts))
    wrongly_sent = sorted(set(posts) - eligible)
    twice = sorted(order_id for order_id, count in posts.items() if count > 1)
    arrived = first_arrivals(refersion)
    # How long before the nearest kill each duplicate's first copy was accepted: only a kill inside
    # the in-doubt window explains a duplicate. The sandbox runs in this busy process, so it may
    # note a request the killed worker sent a little after the kill (negative gap): a restarted
    # worker cannot send within SANDBOX_LAG of a kill, nor before the killed one's lease runs out.
    before_kill = {}
    for order_id in twice:
        gaps = [kill - arrived[order_id] for kill in kill_times if kill >= arrived[order_id] - SANDBOX_LAG]
        before_kill[order_id] = round(min(gaps, key=abs), 4) if gaps else None
    windows = percentiles(in_doubt_windows(refersion, db_path))
    figures = publish(
        name,
        seed=seed,
        orders_sent=len(order_ids),
        eligible=len(eligible),
        acknowledged=len(acknowledged),
        delivered=len(posts),
        posted_twice=len(twice),
        duplicates_first_copy_before_kill_s=before_kill,
        lost=len(lost),
        answered_5xx=stream.answered_5xx,
        refused_connections=stream.refused,
        kills=list(zip(kinds, [round(t - kill_times[0], 2) for t in kill_times], strict=True)),
        recovery_after_last_kill_s=round(recovered, 1),
        in_doubt_window=windows,
    )
    assert acknowledged == set(order_ids)
    assert lost == [], f"seed {seed}: acknowledged eligible orders never reported: {lost}"
    assert wrongly_sent == [], f"seed {seed}: orders reported that are not eligible: {wrongly_sent}"
    assert max(posts.values()) <= 2, f"seed {seed}: {posts.most_common(3)}"
    unexplained = {order_id: gap for order_id, gap in before_kill.items() if gap is None or gap > IN_DOUBT_LIMIT}
    assert not unexplained, f"seed {seed}: posted twice, first copy not within {IN_DOUBT_LIMIT} s of a kill: {unexplained}"
    # Each kill leaves at most the sends then on the wire in doubt: WORKER_SENDING_LANES of them.
    assert len(twice) <= kills * SENDING_LANES, f"seed {seed}: {len(twice)} posted twice in {kills} kills"
    return figures


def test_kill_9_of_worker_and_serve_during_a_webhook_stream_short(spawn, environ, bigcommerce, refersion):
    run_soak("kill-9 soak (short)", spawn, environ, bigcommerce, refersion, orders=150, kills=2, rate=30, spread=0.5)


@pytest.mark.soak
def test_kill_9_of_worker_and_serve_during_a_webhook_stream_long(spawn, environ, bigcommerce, refersion):
    run_soak("kill-9 soak (long)", spawn, environ, bigcommerce, refersion, orders=1000, kills=7, rate=40)


def cart_converted(n: int) -> dict:
    """Intake load that makes no work for the worker: a cart-to-order link, written at once."""
    return envelope("store/cart/converted", {"type": "cart", "id": f"cart-load-{n}", "orderId": n})


# p99 limits: the short run shares two cores with the rest of the suite (pytest -n 4); before the
# answer polled for the write lock, runs showed p99 80-190 ms and a max of 0.64 s.
@pytest.mark.parametrize(
    ("orders", "p99_limit_ms"), [pytest.param(150, 100, id="short"), pytest.param(1000, 30, id="long", marks=pytest.mark.soak)]
)
def test_the_in_doubt_window_stays_within_milliseconds_while_intake_is_busy(spawn, environ, bigcommerce, refersion, orders, p99_limit_ms):
    """Every delivery's answer reaches the disk within milliseconds of Refersion giving it, while
    eight senders keep the webhook intake writing as fast as it can."""
    rng, seed = seeded(f"in-doubt window under load ({orders} orders)")
    order_ids, eligible = add_orders(bigcommerce, rng, orders, first_id=200_000)
    serve = Serve(spawn, FAST).start()
    load = WebhookStream(serve.base, list(range(1, 1_000_000)), token=WEBHOOK_SECRET, senders=8, body=cart_converted).start()
    try:
        time.sleep(0.5)
        stream = WebhookStream(serve.base, order_ids, token=WEBHOOK_SECRET, rate=25).start()
        stream.join(timeout=orders / 25 + 60)
        wait_for(lambda: eligible <= set(posts_per_order(refersion)), timeout=60, interval=0.2)
    finally:
        load.stop()
    assert serve.stop() == 0, serve.process.output
    windows = in_doubt_windows(refersion, environ["BRIDGE_DATABASE_PATH"])
    figures = publish(
        f"in-doubt window under load ({orders} orders)",
        seed=seed,
        orders_sent=len(order_ids),
        delivered=len(windows),
        load_webhooks_acknowledged=len(load.acknowledged),
        answered_5xx=stream.answered_5xx + load.answered_5xx,
        in_doubt_window=percentiles(windows),
    )
    assert len(load.acknowledged) > len(order_ids), "the intake was not kept busy"
    assert figures["in_doubt_window"]["p99_ms"] < p99_limit_ms, figures
