"""The worker's lanes: several stores served at once, a slow store holding up only its own lanes,
a store's work on a bounded number of lanes, and its quota never overdrawn by requests in flight.

``Worker.run`` on a thread with the real clock, against the sandboxes; the sandbox BigCommerce
answers one store slowly (``slow_next`` on its paths) and records when each request came in.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from bridge.worker import loop
from tests.conftest import STORE_HASH, post_webhook, status_updated
from tests.fakes import load_fixture
from tests.processes import wait_for
from tests.worker.test_multi_store import apps, post_paid  # noqa: F401 (a fixture)


@pytest.fixture
def running(make_worker):
    started = []

    def start():
        worker = make_worker(clock=time.time)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,))
        thread.start()
        started.append((stop, thread))
        return worker

    yield start
    for stop, thread in started:
        stop.set()
        thread.join(timeout=30)


def test_a_slow_store_holds_up_only_its_own_orders(apps, client, bigcommerce, refersion, running):  # noqa: F811
    bigcommerce.slow_next(1.0, times=50, path=r"^/stores/appone/")  # each call: half the client's timeout
    post_paid(client, bigcommerce, {"appone": 201})
    post_paid(client, bigcommerce, {STORE_HASH: 101, "apptwo": 301})
    started = time.monotonic()
    running()
    wait_for(lambda: {"101", "301"} <= set(refersion.order_ids), timeout=10)
    others_took = time.monotonic() - started
    assert "201" not in refersion.order_ids  # still being read, slowly
    assert others_took < 1.0  # less than one of the slow store's calls
    wait_for(lambda: "201" in refersion.order_ids, timeout=30)
    assert sorted(refersion.order_ids) == ["101", "201", "301"]


def test_one_store_s_backlog_keeps_at_most_its_share_of_lanes_busy(client, bigcommerce, refersion, running, monkeypatch):
    monkeypatch.setattr(loop, "LANES_PER_STORE", 3)
    bigcommerce.set_quota(quota=1_000_000)
    latency = 0.3
    order_ids = [bigcommerce.add(load_fixture("manual_discount"), id=1000 + n) for n in range(12)]
    for order_id in order_ids:
        assert post_webhook(client, status_updated(order_id, 11)).status_code == 200
    bigcommerce.slow_next(latency, times=1000, path=rf"^/stores/{STORE_HASH}/")
    running()
    wait_for(lambda: len(refersion.order_ids) == len(order_ids), timeout=60)
    arrivals = sorted(call.at for call in bigcommerce.recorded(rf"^/stores/{STORE_HASH}/v2/orders"))
    # Each request is answered `latency` after it arrives: how many were in flight at once, at most.
    in_flight = max(sum(1 for other in arrivals if at <= other < at + latency * 0.95) for at in arrivals)
    assert 2 <= in_flight <= 3  # concurrent, and never more than the store's lanes
    assert sorted(refersion.order_ids) == sorted(str(order_id) for order_id in order_ids)


def test_no_more_than_the_sending_lanes_post_to_refersion_at_once(client, bigcommerce, refersion, running, monkeypatch):
    """A send the worker dies during is in doubt and is sent again after a restart: the sends in
    flight at once are few, so one crash can report only that many orders twice."""
    monkeypatch.setattr(loop, "SENDING_LANES", 2)
    bigcommerce.set_quota(quota=1_000_000)
    latency = 0.3
    refersion.slow_next(latency, times=1000)
    order_ids = [bigcommerce.add(load_fixture("manual_discount"), id=2000 + n) for n in range(10)]
    for order_id in order_ids:
        assert post_webhook(client, status_updated(order_id, 11)).status_code == 200
    running()
    wait_for(lambda: len(refersion.order_ids) == len(order_ids), timeout=60)
    arrivals = sorted(call.at for call in refersion.calls(r"/tracker/orders/paid"))
    in_flight = max(sum(1 for other in arrivals if at <= other < at + latency * 0.95) for at in arrivals)
    assert in_flight == 2


def test_only_the_first_lanes_keep_their_prepared_statements(make_worker):
    """Each lane's cached statements cost its connection about 116 KiB: the lanes a light load
    uses keep them, the rest of a backlog's lanes prepare each statement again (issue 11)."""
    worker = make_worker(clock=time.time)
    stop = threading.Event()
    lanes = [loop.Lane(worker, index, stop) for index in (0, loop.CACHED_LANES - 1, loop.CACHED_LANES, loop.LANES - 1, "chores")]
    query = "SELECT count(*) FROM events WHERE state = 'pending'"
    try:
        kept = []
        for lane in lanes:
            try:
                lane.ctx.db.execute(query).fetchall()
                prepared = [sql for (sql,) in lane.ctx.db.execute("SELECT sql FROM sqlite_stmt").fetchall()]
            except sqlite3.OperationalError:
                pytest.skip("this SQLite is built without the sqlite_stmt table")
            kept.append(query in prepared)
        assert kept == [True, True, False, False, True]
    finally:
        for lane in lanes:
            lane.close()
