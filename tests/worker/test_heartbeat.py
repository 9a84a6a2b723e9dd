"""The lease heartbeat of a running worker keeps every item in hand (events and deliveries)
from being taken over by a peer, however long the call in flight takes."""

import threading
import time

from werkzeug import Response

from bridge.storage.db import connect
from bridge.storage.queue import Leases
from tests.conftest import post_webhook, status_updated
from tests.fakes import Scripted, json_response, load_fixture
from tests.processes import wait_for

# Short timings, so a call of 1.5 s (under the clients' 2 s timeout) outlives one lease.
LEASES = Leases(lease_seconds=1.0, heartbeat_seconds=0.2, heartbeat_busy_timeout=0.1)
SLOW = 1.5


def slow_order(bigcommerce, order_id, release: threading.Event):
    """BigCommerce answers the next read of the order only after ``SLOW`` seconds."""

    def respond(request) -> Response:
        release.wait(SLOW)
        return json_response(bigcommerce.orders[order_id])

    bigcommerce.script.append(Scripted(lambda r: r.path.endswith(f"/orders/{order_id}"), respond))


def order_reads(bigcommerce, order_id) -> int:
    return sum(1 for r in bigcommerce.requests if r.path.endswith(f"/orders/{order_id}"))


def event(db):
    return next(db.query("SELECT * FROM events"))


def test_the_heartbeat_renews_the_lease_of_an_event_being_evaluated(client, make_worker, bigcommerce, refersion, db):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    release = threading.Event()
    slow_order(bigcommerce, order_id, release)
    assert post_webhook(client, status_updated(order_id, 11)).status_code == 200
    first = make_worker(clock=time.time, leases=LEASES)
    second = make_worker(clock=time.time, leases=LEASES)
    stop = threading.Event()
    running = threading.Thread(target=first.run, args=(stop,))
    running.start()
    try:
        wait_for(lambda: order_reads(bigcommerce, order_id) == 1, timeout=10)
        claimed = event(db)
        assert claimed["lease_owner"].split("/")[0] == first.owner  # one of its lanes
        first_expiry = claimed["lease_until"]
        # Past the lease the claim gave: only renewals keep the event with the first worker.
        while time.time() < first_expiry + 0.3:
            assert second.run_once() is False
            time.sleep(0.05)
        renewed = event(db)
        assert (renewed["state"], renewed["lease_owner"]) == ("working", claimed["lease_owner"])
        assert renewed["lease_until"] > first_expiry
        release.set()
        wait_for(lambda: refersion.order_ids == [str(order_id)], timeout=10)
    finally:
        release.set()
        stop.set()
        running.join(timeout=10)
    assert not running.is_alive()
    assert event(db)["state"] == "done"
    assert order_reads(bigcommerce, order_id) == 1  # one evaluation, by the first worker


def test_a_renewal_that_cannot_get_the_database_gives_up_within_its_busy_timeout(
    client, make_worker, bigcommerce, refersion, db, settings, caplog
):
    """While another process holds the write lock, the heartbeat waits at most
    ``heartbeat_busy_timeout`` and tries again at its next beat, instead of sitting on the
    lock queue while its lease runs out."""
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    release = threading.Event()
    slow_order(bigcommerce, order_id, release)
    post_webhook(client, status_updated(order_id, 11))
    worker = make_worker(clock=time.time, leases=LEASES)
    blocker = connect(settings.database.path, migrate=False, busy_timeout=5)
    stop = threading.Event()
    running = threading.Thread(target=worker.run, args=(stop,))
    running.start()
    try:
        wait_for(lambda: order_reads(bigcommerce, order_id) == 1, timeout=10)
        with caplog.at_level("ERROR", logger="bridge.worker.loop"):
            blocker.conn.execute("BEGIN IMMEDIATE")
            held_at = time.monotonic()
            wait_for(lambda: any("heartbeat failed" in r.getMessage() for r in caplog.records), timeout=2)
            gave_up_after = time.monotonic() - held_at
            blocker.conn.execute("ROLLBACK")
        # one beat (0.2 s) plus one busy timeout (0.1 s), with room for a loaded machine; a
        # heartbeat waiting SQLite's default would still be queued on the lock here
        assert gave_up_after < 0.8
        release.set()
        wait_for(lambda: refersion.order_ids == [str(order_id)], timeout=10)
    finally:
        release.set()
        stop.set()
        running.join(timeout=10)
        blocker.close()
