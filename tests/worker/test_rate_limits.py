"""A BigCommerce 429 holds that store back until its quota resets, without sleeping in the
worker: other stores and deliveries keep moving and a stop is noticed at once (issue 5,
defect 4). The lease timings keep a live worker's claims by construction (defect 5)."""

import threading
import time

import pytest

from bridge.storage.db import immediate
from bridge.storage.inbox import Envelope, record_event
from bridge.storage.queue import LEASES, Leases
from tests.conftest import STORE_HASH, post_webhook, queue_delivery, status_updated
from tests.fakes import load_fixture

RESET = {"X-Rate-Limit-Time-Reset-Ms": "20000", "X-Rate-Limit-Requests-Left": "0"}


def test_a_429_holds_the_store_until_the_reset_without_burning_an_attempt(client, worker, bigcommerce, refersion, db, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    bigcommerce.fail_next(429, headers=RESET, body='{"title": "Too many requests"}')
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()

    event = next(db.query("SELECT * FROM events"))
    assert (event["state"], event["attempts"]) == ("pending", 0)
    assert event["due_at"] - clock.now == pytest.approx(20)
    (hold,) = db.query("SELECT * FROM holds")
    assert (hold["store_hash"], hold["service"], hold["until"] - clock.now) == ("abc123", "bigcommerce", pytest.approx(20))

    clock.advance(19)
    assert worker.run_until_idle() == 0
    clock.advance(2)
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]


def test_a_held_store_does_not_hold_back_another_store_or_refersion_deliveries(client, worker, bigcommerce, refersion, db, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    with immediate(db):
        db.execute(
            "INSERT INTO holds (store_hash, service, until, reason) VALUES ('otherstore', 'bigcommerce', ?, 'quota')", [clock.now + 600]
        )
    queue_delivery(db, 991, clock.now, store_hash="otherstore")  # held by its store's BigCommerce quota? No: only a waited send reads
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.order_ids[0] == str(order_id)


def test_the_worker_never_sleeps_on_a_429_and_stops_within_a_second(make_settings, make_worker, client, bigcommerce, db):
    worker = make_worker(make_settings(worker_poll_interval="30"), clock=time.time)
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    bigcommerce.fail_next(429, headers={"X-Rate-Limit-Time-Reset-Ms": "60000"}, times=5)
    post_webhook(client, status_updated(order_id, 11))
    stop = threading.Event()
    running = threading.Thread(target=worker.run, args=(stop,))
    running.start()
    try:
        for _ in range(200):
            if list(db.query("SELECT * FROM holds")):
                break
            time.sleep(0.02)
        asked = time.monotonic()
        stop.set()
        running.join(timeout=5)
        assert not running.is_alive()
        assert time.monotonic() - asked < 1.5
    finally:
        stop.set()
        running.join(timeout=5)
    assert bigcommerce.calls(order_id) == 1


@pytest.mark.parametrize(
    "leases",
    [
        Leases(lease_seconds=15, heartbeat_seconds=5, heartbeat_busy_timeout=30),
        Leases(lease_seconds=10, heartbeat_seconds=5, heartbeat_busy_timeout=1),
    ],
)
def test_a_worker_refuses_lease_timings_under_which_it_could_lose_a_claim_it_still_needs(make_worker, leases):
    with pytest.raises(ValueError, match="too short"):
        make_worker(leases=leases)


def test_the_default_leases_hold_the_invariant():
    LEASES.check()
    assert 2 * LEASES.heartbeat_seconds + LEASES.heartbeat_busy_timeout < LEASES.lease_seconds


RESET_SECONDS = 90.0  # far from the 10 s hold used when BigCommerce names no reset time


def events(db, store_hash=STORE_HASH):
    return {row["order_id"]: row for row in db.query("SELECT * FROM events WHERE store_hash = ?", [store_hash])}


def other_store_event(db, now):
    data = {"type": "order", "id": 5, "status": {"previous_status_id": 0, "new_status_id": 11}}
    other = Envelope(scope="store/order/statusUpdated", store_hash="zzz999", data=data, created_at=1_790_000_000, order_id=5)
    record_event(db, other, "{}", known_store=True, now=now)


def test_a_bigcommerce_429_holds_the_store_until_its_reset_time(client, worker, bigcommerce, refersion, db, clock):
    first = bigcommerce.add(load_fixture("manual_discount"), id=301)
    second = bigcommerce.add(load_fixture("manual_discount"), id=302)
    for order_id in (first, second):
        assert post_webhook(client, status_updated(order_id, 11)).status_code == 200
    bigcommerce.fail_next(429, headers={"X-Rate-Limit-Time-Reset-Ms": str(int(RESET_SECONDS * 1000))}, body='{"title": "Too many"}')

    assert worker.run_once() is True
    held = events(db)[first]
    assert (held["state"], held["attempts"]) == ("pending", 0)  # the quota, not the order: no attempt burnt
    assert held["due_at"] - clock.now == pytest.approx(RESET_SECONDS)
    (hold,) = db.query("SELECT * FROM holds")
    assert (hold["store_hash"], hold["service"]) == (STORE_HASH, "bigcommerce")
    assert hold["until"] - clock.now == pytest.approx(RESET_SECONDS)

    # Another store's work goes on meanwhile; this store's other order waits, unread.
    other_store_event(db, clock.now)
    calls = bigcommerce.calls()
    assert worker.run_once() is True
    assert events(db, "zzz999")[5]["state"] == "ignored"  # claimed and settled (the bridge has no credentials for it)
    assert worker.run_until_idle() == 0
    clock.advance(RESET_SECONDS - 1)
    assert worker.run_until_idle() == 0
    assert bigcommerce.calls() == calls
    assert {row["state"] for row in events(db).values()} == {"pending"}

    clock.advance(1.5)
    assert worker.run_until_idle() > 0
    assert sorted(refersion.order_ids) == [str(first), str(second)]
    assert {row["state"] for row in events(db).values()} == {"done"}


def test_a_429_that_says_reset_now_backs_off_instead_of_spinning(client, worker, bigcommerce, db, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    bigcommerce.fail_next(429, headers={"X-Rate-Limit-Time-Reset-Ms": "0"}, times=40)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle(limit=30)  # the clock does not move: nothing more may be due
    assert bigcommerce.calls(order_id) == 1
    waits = []
    for _ in range(4):
        until = next(db.query("SELECT until FROM holds"))["until"]
        waits.append(round(until - clock.now, 1))
        clock.advance(until - clock.now + 0.01)
        worker.run_until_idle(limit=30)
    assert waits == [1.0, 2.0, 4.0, 8.0]  # doubled for every 429 in a row
    assert next(db.query("SELECT attempts FROM events"))["attempts"] == 0


@pytest.mark.parametrize(("reset_ms", "held"), [("99999999999", 300.0), ("20000", 20.0)])
def test_a_reset_time_is_believed_up_to_five_minutes(client, worker, bigcommerce, db, clock, reset_ms, held):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    bigcommerce.fail_next(429, headers={"X-Rate-Limit-Time-Reset-Ms": reset_ms})
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert next(db.query("SELECT until FROM holds"))["until"] - clock.now == pytest.approx(held)


def test_a_429_while_re_reading_before_a_send_holds_the_store_and_burns_no_attempt(client, worker, bigcommerce, refersion, db, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    refersion.answer_next(503)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    bigcommerce.fail_next(429, headers=RESET)
    clock.advance(3600)
    worker.run_until_idle()
    row = next(db.query("SELECT * FROM deliveries"))
    assert (row["state"], row["attempts"], row["due_at"] - clock.now) == ("pending", 1, pytest.approx(20))
    assert [hold["service"] for hold in db.query("SELECT service FROM holds")] == ["bigcommerce"]
    clock.advance(21)
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]
