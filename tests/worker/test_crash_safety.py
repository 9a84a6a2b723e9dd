"""A worker killed at any instant loses nothing; two workers never send one delivery twice."""

import threading
import time

import pytest

from bridge.storage import inbox, outbox
from bridge.storage.db import immediate
from bridge.storage.queue import LEASES, Leases
from tests.conftest import post_webhook, status_updated
from tests.fakes import Scripted, load_fixture
from tests.processes import wait_for

LEASE_SECONDS = LEASES.lease_seconds


def test_with_the_default_leases_work_claimed_by_a_dead_worker_is_taken_up_within_30_seconds(
    client, make_worker, bigcommerce, refersion, db, clock, queue_report
):
    """SPEC 4 step 4: an event being evaluated and a delivery being sent by a worker that
    died (just after a renewal, the worst case) are taken up within 30 s by its successor."""
    defaults = Leases()
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    queue_report(70, clock.now)
    assert len(inbox.claim_order_events(db, owner="crashed-worker", now=clock.now, lease=defaults.lease_seconds)) == 1
    with immediate(db):
        assert outbox.deliveries.claim(db, owner="crashed-worker", now=clock.now, lease=defaults.lease_seconds)["order_id"] == 70
    successor = make_worker(leases=defaults)
    assert successor.run_once() is False  # both are still held by the dead worker's lease
    clock.advance(30)
    successor.run_until_idle()
    assert sorted(refersion.order_ids) == sorted([str(order_id), "70"])
    assert {row["state"] for row in db.query("SELECT state FROM events")} == {"done"}
    assert {row["state"] for row in db.query("SELECT state FROM deliveries")} == {"done"}


def test_a_delivery_claimed_by_a_dead_worker_is_taken_up_when_its_lease_runs_out(worker, refersion, db, clock, queue_report):
    queue_report(71, clock.now)
    with immediate(db):
        assert outbox.deliveries.claim(db, owner="crashed-worker", now=clock.now)["order_id"] == 71
    clock.advance(LEASE_SECONDS - 1)
    assert worker.deliver_next() is False  # the lease still holds
    clock.advance(1.1)
    assert worker.deliver_next() is True
    assert refersion.order_ids == ["71"]
    assert next(db.query("SELECT state FROM deliveries"))["state"] == "done"


def test_an_event_claimed_by_a_dead_worker_is_taken_up_when_its_lease_runs_out(client, worker, bigcommerce, refersion, db, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    assert len(inbox.claim_order_events(db, owner="crashed-worker", now=clock.now)) == 1
    assert worker.run_until_idle() == 0
    clock.advance(LEASE_SECONDS + 0.1)
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_next_owner(db, clock, queue_report):
    queue_report(72, clock.now)
    with immediate(db):
        row = outbox.deliveries.claim(db, owner="slow-worker", now=clock.now)
    with immediate(db):
        assert outbox.deliveries.claim(db, owner="next-worker", now=clock.now + LEASE_SECONDS + 1)["id"] == row["id"]
    assert outbox.deliveries.settle(db, [row["id"]], owner="next-worker", state="done") == 1
    assert outbox.deliveries.settle(db, [row["id"]], owner="slow-worker", state="dead") == 0
    assert next(db.query("SELECT state FROM deliveries"))["state"] == "done"


def test_a_heartbeat_keeps_a_long_call_from_being_taken_over(make_worker, refersion, db, queue_report):
    """A running worker's heartbeat renews the lease of a delivery whose Refersion call
    outlasts the lease: a second worker polling meanwhile never sends it again."""
    refersion.answer_next(200, body="{}", delay=1.5)  # under the 2 s timeout, over the 1 s lease
    queue_report(73, time.time())
    leases = Leases(lease_seconds=1.0, heartbeat_seconds=0.2, heartbeat_busy_timeout=0.1)
    first, second = make_worker(clock=time.time, leases=leases), make_worker(clock=time.time, leases=leases)
    stop, running = run_in_thread(first)
    try:
        wait_for(lambda: len(refersion.attempts) == 1, timeout=10)
        first_expiry = next(db.query("SELECT lease_until FROM deliveries"))["lease_until"]
        while time.time() < first_expiry + 0.3:
            assert second.run_once() is False
            time.sleep(0.05)
        row = next(db.query("SELECT * FROM deliveries"))
        assert (row["state"], row["lease_owner"].split("/")[0]) == ("working", first.owner)  # one of its lanes
        assert row["lease_until"] > first_expiry
        wait_for(lambda: next(db.query("SELECT state FROM deliveries"))["state"] == "done", timeout=10)
    finally:
        stop.set()
        running.join(timeout=30)
    assert refersion.attempts == ["73"]


FAST_POLL = {"BRIDGE_WORKER_POLL_INTERVAL": "0.05"}


def test_killed_workers_lose_nothing_and_work_resumes_within_30_seconds_of_a_restart(spawn, client, bigcommerce, refersion, db):
    """SIGKILL a worker in the middle of a BigCommerce call, then its successor in the
    middle of a Refersion call: the order is still reported, once."""
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    release_bigcommerce, release_refersion = threading.Event(), threading.Event()

    def hang(release):
        def respond(request):
            release.wait(60)
            from werkzeug import Response

            return Response('{"status": 503}', 503, content_type="application/json")

        return respond

    bigcommerce.script.append(Scripted(lambda r: True, hang(release_bigcommerce)))
    refersion.script.append(Scripted(lambda r: True, hang(release_refersion)))
    post_webhook(client, status_updated(order_id, 11))

    first = spawn(["worker"], FAST_POLL)
    wait_for(lambda: bigcommerce.calls() == 1, timeout=20)
    first.kill()  # mid-call, holding the event's lease
    release_bigcommerce.set()

    second = spawn(["worker"], FAST_POLL)
    took = wait_for(lambda: len(refersion.attempts) == 1, timeout=40)
    assert took < 30, f"the event was taken up {took:.1f} s after the restart"
    second.kill()  # mid-call, holding the delivery's lease
    release_refersion.set()

    third = spawn(["worker"], FAST_POLL)
    try:
        took = wait_for(lambda: refersion.order_ids == [str(order_id)], timeout=40)
        assert took < 30, f"the delivery was taken up {took:.1f} s after the restart"
        wait_for(lambda: next(db.query("SELECT state FROM deliveries"))["state"] == "done", timeout=10)
    finally:
        assert third.stop() == 0, third.output
    assert next(db.query("SELECT state FROM events"))["state"] == "done"
    assert len(refersion.received) == 1


def test_two_workers_on_one_database_never_send_the_same_delivery_twice(spawn, client, bigcommerce, refersion, db, queue_report):
    orders = [bigcommerce.add(load_fixture("manual_discount"), id=1000 + n) for n in range(30)]
    for order_id in orders:
        post_webhook(client, status_updated(order_id, 11))
    for n in range(30):  # and some that go straight to the outbox
        queue_report(5000 + n, time.time())

    workers = [spawn(["worker"], FAST_POLL) for _ in range(2)]
    try:
        wait_for(lambda: len(refersion.received) >= 60, timeout=60)
        time.sleep(0.5)  # anything sent twice would arrive now
    finally:
        codes = [worker.stop() for worker in workers]
    assert codes == [0, 0], [worker.output for worker in workers]
    assert sorted(refersion.attempts) == sorted({*refersion.attempts})
    assert sorted(map(int, refersion.order_ids)) == sorted(orders + [5000 + n for n in range(30)])
    both_worked = [worker.output.count("Reported order") for worker in workers]
    assert all(count > 0 for count in both_worked), both_worked
    assert {row["state"] for row in db.query("SELECT state FROM deliveries")} == {"done"}


def run_in_thread(worker):
    stop = threading.Event()
    running = threading.Thread(target=worker.run, args=(stop,))
    running.start()
    return stop, running


REFUSE_DONE = (
    "CREATE TRIGGER refuse_done BEFORE UPDATE OF state ON deliveries WHEN NEW.state = 'done' "
    "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
)


def test_an_answer_is_held_until_the_database_takes_it_and_never_sent_twice(worker, refersion, db, clock, queue_report):
    """Refersion accepted the order, then the database refused to record it (here a
    trigger stands in for a full disk): the worker keeps the answer and retries the
    write, rather than sending the order again."""
    queue_report(74, clock.now)
    db.execute(REFUSE_DONE)
    stop, running = run_in_thread(worker)
    try:
        wait_for(lambda: len(refersion.attempts) >= 1, timeout=10)
        time.sleep(2)  # several refused writes
        db.execute("DROP TRIGGER refuse_done")
        wait_for(lambda: next(db.query("SELECT state FROM deliveries"))["state"] == "done", timeout=40)
    finally:
        stop.set()
        running.join(timeout=30)
    assert refersion.attempts == ["74"]


def test_a_stop_request_does_not_throw_away_an_answer_the_database_has_not_taken(worker, refersion, db, clock, queue_report):
    queue_report(76, clock.now)
    db.execute(REFUSE_DONE)
    stop, running = run_in_thread(worker)
    try:
        wait_for(lambda: len(refersion.attempts) >= 1, timeout=10)
        stop.set()  # SIGTERM while the write is being retried
        time.sleep(1)
        db.execute("DROP TRIGGER refuse_done")
    finally:
        running.join(timeout=30)
    assert not running.is_alive()
    assert next(db.query("SELECT state FROM deliveries"))["state"] == "done"
    assert refersion.attempts == ["76"]


def test_work_given_back_after_an_error_is_one_failed_attempt_not_a_held_item(worker, db, clock, queue_report):
    """Whatever the worker holds when an unexpected error reaches its loop goes back to
    the queue on the schedule: neither held by a live worker whose heartbeat would renew
    the lease forever, nor free to come straight back in a tight loop."""
    queue_report(77, clock.now)
    with immediate(db):
        outbox.deliveries.claim(db, owner=worker.owner, now=clock.now)
    worker.give_back("internal error: KeyError")
    row = next(db.query("SELECT * FROM deliveries"))
    assert (row["state"], row["attempts"], row["lease_owner"]) == ("pending", 1, None)
    assert row["due_at"] - clock.now == pytest.approx(5)  # relative to a ~1.8e9 timestamp, approx would allow ±30 min
    assert row["last_error"] == "internal error: KeyError"


def test_a_worker_that_cannot_write_at_all_stops_and_its_successor_takes_over(worker, make_worker, refersion, db, clock, queue_report):
    """Past DB_RETRY_SECONDS, with even the hand-back refused, the worker exits (crash-only)
    instead of spinning; once the database is back, a new worker finishes the job."""
    worker.ctx.db_retry_seconds = 0.3
    queue_report(78, clock.now)
    db.execute(REFUSE_DONE)
    raised = []
    running = threading.Thread(target=lambda: _capture(raised, worker.run, threading.Event()))
    running.start()
    running.join(timeout=30)
    assert not running.is_alive()
    assert [type(error).__name__ for error in raised] == ["IntegrityError"]
    assert refersion.attempts == ["78"]  # no loop
    db.execute("DROP TRIGGER refuse_done")
    clock.advance(LEASE_SECONDS + 1)
    make_worker().run_until_idle()
    assert next(db.query("SELECT state FROM deliveries"))["state"] == "done"


def _capture(raised, function, *args):
    try:
        function(*args)
    except Exception as error:
        raised.append(error)


def test_leases_are_renewed_until_the_item_in_hand_is_settled_even_after_a_stop_request(make_worker, refersion, db, queue_report):
    """SIGTERM arrives while a slow Refersion call is in flight: the worker finishes it,
    and its lease must outlive the stop request, or a second worker would send again."""
    refersion.answer_next(200, body="{}", delay=1.8)  # under the 2 s timeout, over the 1 s lease
    queue_report(79, time.time())
    leases = Leases(lease_seconds=1.0, heartbeat_seconds=0.2, heartbeat_busy_timeout=0.1)
    first, second = make_worker(clock=time.time, leases=leases), make_worker(clock=time.time, leases=leases)
    stop, running = run_in_thread(first)
    try:
        wait_for(lambda: len(refersion.attempts) == 1, timeout=10)
        stop.set()
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            second.run_once()
            time.sleep(0.1)
    finally:
        running.join(timeout=30)
    assert refersion.attempts == ["79"]
    assert next(db.query("SELECT state FROM deliveries"))["state"] == "done"


def test_a_worker_whose_database_refuses_every_write_waits_and_resumes(make_worker, refersion, db, queue_report):
    """A full or read-only disk with nothing sent: the worker neither exits nor spins; once
    writes are taken again, what it held is claimed again and sent once."""
    leases = Leases(lease_seconds=1.0, heartbeat_seconds=0.2, heartbeat_busy_timeout=0.1)
    worker = make_worker(clock=time.time, leases=leases)
    queue_report(81, time.time())
    db.execute(REFUSE_WRITES)
    stop, running = run_in_thread(worker)
    try:
        time.sleep(1.5)
        assert running.is_alive() and refersion.attempts == []
        db.execute("DROP TRIGGER refuse_claims")
        wait_for(lambda: refersion.attempts == ["81"], timeout=15)
    finally:
        stop.set()
        running.join(timeout=10)
    assert next(db.query("SELECT state FROM deliveries"))["state"] == "done"


REFUSE_WRITES = "CREATE TRIGGER refuse_claims BEFORE UPDATE ON deliveries BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"


def test_work_that_cannot_be_handed_back_is_taken_up_again_when_its_lease_runs_out(worker, refersion, db, clock, queue_report):
    """Nothing was sent, and the hand-back itself is refused: the worker takes a new identity
    (its heartbeat stops renewing the old leases) instead of exiting."""
    queue_report(82, clock.now)
    with immediate(db):
        outbox.deliveries.claim(db, owner=worker.owner, now=clock.now)
    old_owner = worker.owner
    db.execute(REFUSE_WRITES)
    worker.give_back("internal error: OperationalError")  # does not raise
    assert worker.owner != old_owner and worker.ctx.owner == worker.owner
    db.execute("DROP TRIGGER refuse_claims")
    assert next(db.query("SELECT lease_owner FROM deliveries"))["lease_owner"] == old_owner
    worker.run_until_idle()
    assert refersion.attempts == []  # still leased to the old identity
    clock.advance(LEASE_SECONDS + 1)
    worker.run_until_idle()
    assert refersion.attempts == ["82"]


def test_a_write_that_fails_for_a_reason_no_wait_can_mend_is_raised_at_once(worker):
    """Only a database that cannot take a write now (locked, full, read-only) is waited for; a bug
    such as a missing table would otherwise hold the worker for DB_RETRY_SECONDS, retrying in vain."""
    import sqlite3
    import time

    import pytest

    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        worker.ctx.write("a row", lambda: worker.db.execute("INSERT INTO no_such_table VALUES (1)"))
    assert time.monotonic() - started < 1.0
