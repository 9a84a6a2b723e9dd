"""The leased queue on a real SQLite file: claims, sibling claims, settling, lease timings."""

import sqlite3

import pytest

from bridge.storage import inbox, outbox
from bridge.storage.db import immediate
from bridge.storage.inbox import Envelope, record_event
from bridge.storage.queue import Leases
from bridge.worker.loop import Worker

NOW = 1_790_000_000.0


def order_event(order_id: int, created_at: int, store_hash: str = "abc123") -> Envelope:
    data = {"type": "order", "id": order_id}
    return Envelope(scope="store/order/updated", store_hash=store_hash, data=data, created_at=created_at, order_id=order_id)


def test_every_waiting_event_of_the_order_is_claimed_with_the_first(db):
    for n in range(4):
        record_event(db, order_event(250, NOW + n), "{}", known_store=True, now=NOW + n)
    record_event(db, order_event(251, NOW), "{}", known_store=True, now=NOW)
    later = NOW + 3600  # not due yet: a sibling is claimed anyway, its order is read now
    db.execute("UPDATE events SET due_at = ? WHERE id = 4", [later])
    claimed = inbox.claim_order_events(db, owner="w", now=NOW + 5)
    assert [(row["id"], row["order_id"]) for row in claimed] == [(1, 250), (2, 250), (3, 250), (4, 250)]
    assert {row["lease_owner"] for row in claimed} == {"w"}
    assert [row["state"] for row in db.query("SELECT state FROM events ORDER BY id")] == ["working"] * 4 + ["pending"]


def test_a_claim_outside_a_transaction_is_refused(db):
    with pytest.raises(RuntimeError):
        outbox.deliveries.claim(db, owner="w", now=NOW)


def test_settling_writes_every_column_given_and_drops_the_lease(db):
    with immediate(db):
        outbox.enqueue(db, key="k", kind=outbox.PAID, store_hash="abc123", order_id=7, payload="{}", now=NOW)
        row = outbox.deliveries.claim(db, owner="w", now=NOW)
    assert outbox.deliveries.settle(db, [row["id"]], owner="w", state="pending", attempts=1, due_at=NOW + 5, last_error="x") == 1
    settled = next(db.query("SELECT * FROM deliveries"))
    assert (settled["state"], settled["attempts"], settled["due_at"], settled["last_error"]) == ("pending", 1, NOW + 5, "x")
    assert (settled["lease_owner"], settled["lease_until"]) == (None, None)


@pytest.mark.parametrize(
    ("lease", "heartbeat", "busy", "accepted"),
    [
        (15.0, 5.0, 2.0, True),  # the defaults
        (12.1, 5.0, 2.0, True),
        (12.0, 5.0, 2.0, False),  # two missed renewals and one lock wait use up the whole lease
        (10.5, 5.0, 0.5, False),
        (1.0, 0.2, 0.1, True),
        (1.0, 0.45, 0.1, False),
    ],
)
def test_a_worker_refuses_lease_timings_that_could_lose_a_live_lease(settings, lease, heartbeat, busy, accepted):
    leases = Leases(lease_seconds=lease, heartbeat_seconds=heartbeat, heartbeat_busy_timeout=busy)
    if accepted:
        Worker(settings, leases=leases).close()
    else:
        with pytest.raises(ValueError, match=f"lease of {lease} s is too short for a heartbeat every {heartbeat} s"):
            Worker(settings, leases=leases)


def test_dead_events_are_put_back_due_now_with_fresh_attempts_for_one_store_or_order(db):
    for order_id, store_hash in ((11, "abc123"), (12, "abc123"), (13, "other1")):
        record_event(db, order_event(order_id, 1_790_000_000, store_hash), "{}", known_store=True, now=1.0)
    with immediate(db):
        db.execute("UPDATE events SET state = 'dead', attempts = 9, last_error = 'gone', finished_at = 5")
        assert [row["order_id"] for row in inbox.replay(db, store_hash="abc123", order_id=12, now=100.0)] == [12]
        assert [row["order_id"] for row in inbox.replay(db, store_hash="other1", now=100.0)] == [13]
        assert inbox.replay(db, store_hash="other1", now=100.0) == []  # nothing dead is left there
    rows = {row["order_id"]: row for row in db.query("SELECT * FROM events")}
    assert (rows[12]["state"], rows[12]["attempts"], rows[12]["due_at"], rows[12]["last_error"], rows[12]["finished_at"]) == (
        "pending",
        0,
        100.0,
        None,
        None,
    )
    assert (rows[11]["state"], rows[11]["attempts"]) == ("dead", 9)


def test_any_due_sees_a_due_item_or_a_lapsed_lease_and_nothing_else(db):
    from bridge.storage import outbox
    from bridge.storage.db import immediate

    assert outbox.deliveries.any_due(db, now=1000.0) is False
    with immediate(db):
        outbox.enqueue(db, key="paid:abc123:1", kind=outbox.PAID, store_hash="abc123", order_id=1, payload="{}", now=1000.0)
    assert outbox.deliveries.any_due(db, now=999.0) is False  # not due yet
    assert outbox.deliveries.any_due(db, now=1000.0) is True
    with immediate(db):
        outbox.deliveries.claim(db, owner="w", now=1000.0, lease=15)
    assert outbox.deliveries.any_due(db, now=1010.0) is False  # leased
    assert outbox.deliveries.any_due(db, now=1016.0) is True  # the lease ran out


def test_a_claim_leaves_the_stores_and_orders_it_is_told_to_skip(db):
    for store_hash, order_id in [("full01", 1), ("abc123", 2), ("abc123", 3), ("other2", 4)]:
        record_event(db, order_event(order_id, NOW + order_id, store_hash), "{}", known_store=True, now=NOW + order_id)
    claimed = inbox.claim_order_events(db, owner="w", now=NOW + 10, skip_stores=["full01"], skip_orders=[("abc123", 2)])
    assert [(row["store_hash"], row["order_id"]) for row in claimed] == [("abc123", 3)]
    claimed = inbox.claim_order_events(db, owner="w", now=NOW + 10, skip_stores=["full01", "abc123"], skip_orders=[])
    assert [(row["store_hash"], row["order_id"]) for row in claimed] == [("other2", 4)]
    assert inbox.claim_order_events(db, owner="w", now=NOW + 10, skip_stores=["full01"], skip_orders=[("abc123", 2)]) == []
    claimed = inbox.claim_order_events(db, owner="w", now=NOW + 10)
    assert [(row["store_hash"], row["order_id"]) for row in claimed] == [("full01", 1)]


def test_claims_skipping_any_number_of_stores_and_orders_share_one_prepared_statement(db):
    """The worker's dispatcher claims with lists of every length: one SQL text keeps one
    prepared statement (tens of KiB) on its connection instead of one per length."""
    try:
        db.execute("SELECT count(*) FROM sqlite_stmt").fetchone()
    except sqlite3.OperationalError:
        pytest.skip("this SQLite is built without the sqlite_stmt table")
    for n in range(12):
        with immediate(db):
            outbox.deliveries.claim(
                db, owner="w", now=NOW, skip_stores=[f"store{i}" for i in range(n)], skip_orders=[(f"store{i}", i) for i in range(n % 5)]
            )
    prepared = [sql for (sql,) in db.execute("SELECT sql FROM sqlite_stmt").fetchall() if "sqlite_stmt" not in sql]
    claims = [sql for sql in prepared if "UPDATE deliveries" in sql and "SET state = :working" in sql]
    assert len(claims) == 1
