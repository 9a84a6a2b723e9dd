"""Delivering to Refersion: every outcome class, the schedule, pause and resume."""

import socket

import pytest

from bridge.storage import outbox, pauses
from bridge.storage.db import immediate
from tests.conftest import queue_delivery


def delivery(db, order_id=501):
    return next(db.query("SELECT * FROM deliveries WHERE order_id = ?", [order_id]))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Each case: how Refersion answers -> (state, failed attempts, seconds until the next try, paused?)
OUTCOMES = {
    "200": (dict(status=200, body='{"status":"success"}'), ("done", 0, None, False)),
    "201": (dict(status=201, body="{}"), ("done", 0, None, False)),
    "400": (dict(status=400, body='{"error":"Missing required field items"}'), ("dead", 1, None, False)),
    "401": (dict(status=401, body='{"error":"Invalid API credentials (error 2)."}'), ("pending", 0, 0, True)),
    "403": (dict(status=403, body='{"error":"Forbidden"}'), ("pending", 0, 0, True)),
    "408": (dict(status=408, body=""), ("pending", 1, 5, False)),
    "429 with Retry-After": (dict(status=429, headers={"Retry-After": "120"}, body=""), ("pending", 1, 120, False)),
    "429 without Retry-After": (dict(status=429, body=""), ("pending", 1, 60, False)),
    "500": (dict(status=500, body="oops"), ("pending", 1, 5, False)),
    "503 with Retry-After": (dict(status=503, headers={"Retry-After": "30"}, body=""), ("pending", 1, 30, False)),
    "timeout": (dict(status=200, delay=1.0), ("pending", 1, 60, False)),
}


@pytest.mark.parametrize("case", list(OUTCOMES))
def test_delivery_outcome_table(case, make_settings, make_worker, refersion, db, clock, queue_report):
    answer, (state, attempts, wait, paused) = OUTCOMES[case]
    worker = make_worker(make_settings(refersion_timeout="0.3"))
    refersion.answer_next(**answer)
    queue_report(501, clock.now)
    assert worker.deliver_next() is True

    row = delivery(db)
    assert (row["state"], row["attempts"]) == (state, attempts)
    if wait is not None:
        assert row["due_at"] - clock.now == pytest.approx(wait)
    assert bool(list(db.query("SELECT * FROM pauses WHERE service = 'refersion'"))) is paused
    if state != "done":
        assert row["last_error"]
    if case not in ("timeout",):
        assert row["last_status"] == answer["status"]
    if case == "400":
        assert row["response"] == '{"error":"Missing required field items"}'  # kept for the status page


def test_connection_refused_is_retried(make_settings, make_worker, db, clock, queue_report):
    worker = make_worker(make_settings(refersion_orders_url=f"http://127.0.0.1:{closed_port()}/tracker/orders/paid"))
    queue_report(501, clock.now)
    worker.deliver_next()
    row = delivery(db)
    assert (row["state"], row["attempts"], row["last_status"]) == ("pending", 1, None)
    assert row["due_at"] - clock.now == pytest.approx(5)
    assert "could not reach Refersion" in row["last_error"]


def test_a_retry_waits_for_its_time_then_succeeds(worker, refersion, db, clock, queue_report):
    refersion.answer_next(500)
    queue_report(501, clock.now)
    worker.deliver_next()
    assert worker.deliver_next() is False  # not due yet
    clock.advance(4.9)
    assert worker.deliver_next() is False
    clock.advance(0.2)
    assert worker.deliver_next() is True
    assert delivery(db)["state"] == "done"
    assert refersion.attempts == ["501", "501"]


def test_a_delivery_is_dead_when_the_schedule_runs_out(make_settings, make_worker, refersion, db, clock, queue_report):
    worker = make_worker(make_settings(worker_retry_schedule="[5, 10]"))
    refersion.answer_next(502, times=5)
    queue_report(501, clock.now)
    for _ in range(3):
        clock.advance(11)
        worker.deliver_next()
    row = delivery(db)
    assert (row["state"], row["attempts"]) == ("dead", 3)
    assert len(refersion.attempts) == 3
    clock.advance(10**6)
    assert worker.deliver_next() is False


def test_jitter_spreads_retries(make_settings, make_worker, refersion, db, clock, queue_report):
    worker = make_worker(rng=lambda: 0.0)
    refersion.answer_next(500)
    queue_report(501, clock.now)
    worker.deliver_next()
    assert delivery(db)["due_at"] - clock.now == pytest.approx(4.0)  # 5 s - 20 %


def test_refused_keys_pause_the_store_without_burning_attempts_until_the_keys_change(
    make_settings, make_worker, refersion, db, clock, queue_report
):
    refersion.secret_key = "sec_rotated_in_refersion"
    worker = make_worker()
    queue_report(501, clock.now)
    queue_report(502, clock.now)
    worker.deliver_next()
    clock.advance(7 * 86400)
    assert worker.deliver_next() is False  # the whole store waits, for as long as it takes
    worker.resume_changed_credentials()
    assert worker.deliver_next() is False  # same keys: still paused
    assert [delivery(db, n)["attempts"] for n in (501, 502)] == [0, 0]
    assert refersion.attempts == ["501"]

    fixed = make_worker(make_settings(refersion_secret_key="sec_rotated_in_refersion"))
    fixed.resume_changed_credentials()
    assert fixed.run_until_idle() == 2
    assert sorted(refersion.order_ids) == ["501", "502"]
    assert list(db.query("SELECT * FROM pauses")) == []


def test_a_pause_for_one_store_does_not_hold_back_another(settings, make_worker, refersion, db, clock, queue_report):
    worker = make_worker()
    with immediate(db):
        pauses.pause(db, store_hash="otherstore", service="refersion", fingerprint="0123456789abcdef", reason="refused", now=0)
    queue_delivery(db, 601, clock.now, store_hash="otherstore")
    queue_report(602, clock.now)
    worker.run_until_idle()
    assert refersion.order_ids == ["602"]
    assert delivery(db, 601)["state"] == "pending"


def test_the_secret_key_never_reaches_the_stored_response(worker, refersion, db, clock, queue_report):
    refersion.answer_next(400, body='{"error": "bad key sec_test_9f8e7d6c5b4a"}')
    queue_report(501, clock.now)
    worker.deliver_next()
    row = delivery(db)
    assert "sec_test_9f8e7d6c5b4a" not in row["response"]
    assert "[redacted]" in row["response"]


def test_enqueueing_twice_is_a_no_op(db, clock):
    key = outbox.paid_key("abc123", 7)
    with immediate(db):
        assert outbox.enqueue(db, key=key, kind=outbox.PAID, store_hash="abc123", order_id=7, payload="{}", now=clock.now) is True
        assert (
            outbox.enqueue(db, key=key, kind=outbox.PAID, store_hash="abc123", order_id=7, payload='{"other": 1}', now=clock.now) is False
        )
    assert [row["payload"] for row in db.query("SELECT payload FROM deliveries")] == ["{}"]


def test_an_echoed_secret_key_is_redacted_even_where_the_kept_answer_is_cut(worker, refersion, db, clock, queue_report):
    body = "x" * 1995 + "key=sec_test_9f8e7d6c5b4a" + "y" * 100
    refersion.answer_next(400, body=body)
    queue_report(501, clock.now)
    worker.deliver_next()
    response = delivery(db)["response"]
    assert "sec_te" not in response
    assert len(response) == 2000


def test_an_unreadable_retry_after_falls_back_to_the_schedule(worker, refersion, db, clock, queue_report):
    refersion.answer_next(503, headers={"Retry-After": "²"})
    queue_report(501, clock.now)
    worker.deliver_next()
    row = delivery(db)
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert row["due_at"] - clock.now == pytest.approx(5)


def test_dry_run_turned_on_after_a_report_was_queued_sends_nothing(settings, worker, refersion, db, clock, queue_report):
    """Running beside another reporter: a report queued before dry run is switched on must not go out."""
    import time

    from bridge.storage.stores import StoreRegistry
    from tests.conftest import STORE_HASH

    queue_report(4101, clock.now)
    with immediate(db):
        StoreRegistry(settings).save_settings(db, store_hash=STORE_HASH, now=time.time(), dry_run=True)
    worker.run_until_idle()
    assert refersion.attempts == []
    row = outbox.find(db, outbox.paid_key(STORE_HASH, 4101))
    assert (row["state"], row["outcome"]) == (outbox.DRY_RUN, "dry_run")
