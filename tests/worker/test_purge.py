"""The daily purge: customer data leaves stored events, report copies and Refersion's echoes
after ``database.retention_days``; decisions, amounts and answers stay; work in hand is never
touched; stores uninstalled for longer than the retention period lose their history.

Real intake, real worker (the purge runs as its chore), real SQLite file, sandbox servers.
"""

from __future__ import annotations

import io
import json
import logging
import time
from decimal import Decimal
from pathlib import Path

from bridge.logs import RedactSecrets
from bridge.storage import outbox
from bridge.storage import purge as retention
from bridge.storage import stores as store_rows
from bridge.storage.db import immediate
from bridge.storage.inbox import Envelope, record_event
from bridge.worker import chores
from bridge.worker.purge import PURGE
from tests.conftest import STORE_HASH, envelope, install_store, post_webhook, status_updated
from tests.fakes import load_fixture

DAY = 86_400.0
ADA = ("ada@example.com", "Ada", "Lovelace", "203.0.113.24")


def report_order(client, worker, bigcommerce, fixture: str = "coupons_one_excluded") -> int:
    order_id = bigcommerce.add(load_fixture(fixture))
    assert post_webhook(client, status_updated(order_id, 11)).status_code == 200
    worker.run_until_idle()
    return order_id


def delivery(db, order_id: int) -> dict:
    return next(db.query("SELECT * FROM deliveries WHERE order_id = ?", [order_id]))


def file_bytes(settings) -> bytes:
    """Everything SQLite keeps on disk for the database: the file and its WAL."""
    path = Path(settings.database.path)
    return b"".join(candidate.read_bytes() for candidate in (path, Path(f"{path}-wal")) if candidate.exists())


def test_the_purge_is_a_daily_chore_of_the_whole_deployment():
    assert PURGE in chores.CHORES
    assert (PURGE.per_store, PURGE.interval(None)) == (False, 86_400.0)


def test_after_the_retention_period_customer_data_is_gone_and_the_report_it_was_part_of_stays(
    client, worker, bigcommerce, refersion, db, clock, settings
):
    order_id = report_order(client, worker, bigcommerce)
    before = delivery(db, order_id)
    sent = json.loads(before["payload"], parse_float=Decimal)
    assert sent["customer"]["email"] == "ada@example.com"
    decisions = list(db.query("SELECT * FROM decisions"))

    clock.advance(89 * DAY)
    worker.run_until_idle()  # the chore ran (due a day after scheduling) but nothing is old enough
    assert delivery(db, order_id)["payload"] == before["payload"]

    clock.advance(2 * DAY)
    worker.run_until_idle()
    after = delivery(db, order_id)
    kept = json.loads(after["payload"], parse_float=Decimal)
    assert kept == {key: value for key, value in sent.items() if key != "customer"}
    assert after["purged_at"] == clock.now
    assert (after["state"], after["response"], after["last_status"]) == ("done", before["response"], 200)
    assert list(db.query("SELECT * FROM decisions")) == decisions
    assert next(db.query("SELECT purged_at FROM events"))["purged_at"] == clock.now
    # Nowhere on disk either: not in freed space of the file, nor in the WAL.
    on_disk = file_bytes(settings)
    for value in ADA:
        assert value.encode() not in on_disk, value


def test_an_ipv6_address_goes_too(client, worker, bigcommerce, refersion, db, clock):
    order_id = report_order(client, worker, bigcommerce, "ipv6_only_customer")
    address = json.loads(delivery(db, order_id)["payload"])["customer"]["ip_address"]
    assert ":" in address
    clock.advance(91 * DAY)
    worker.run_until_idle()
    assert address not in delivery(db, order_id)["payload"]


def test_work_in_hand_keeps_its_customer_data_until_it_is_settled(client, worker, bigcommerce, refersion, db, clock):
    refersion.answer_next(401, times=1)  # the keys are refused: the report waits (pending), paused
    order_id = report_order(client, worker, bigcommerce)
    assert delivery(db, order_id)["state"] == "pending"
    clock.advance(91 * DAY)
    assert retention.purge(db, now=clock.now, retention_days=90)[0].payloads == 0
    assert "ada@example.com" in delivery(db, order_id)["payload"]

    with immediate(db):
        db.execute("DELETE FROM pauses")  # as new keys would
    refersion.reset()
    worker.run_until_idle()
    assert delivery(db, order_id)["state"] == "done"
    assert refersion.received[0].body["customer"]["email"] == "ada@example.com"  # sent whole
    retention.purge(db, now=clock.now, retention_days=90)  # if the worker's own chore has not yet
    assert "ada@example.com" not in delivery(db, order_id)["payload"]


def test_refersion_s_answers_are_kept_without_the_customer_values_they_echo(client, worker, bigcommerce, refersion, db, clock):
    echo = '{"error": "Invalid field customer: Ada Lovelace <ada@example.com> from 203.0.113.24"}'
    refersion.answer_next(422, body=echo)
    order_id = report_order(client, worker, bigcommerce)
    row = delivery(db, order_id)
    assert (row["state"], row["response"]) == ("dead", echo)
    clock.advance(91 * DAY)
    retention.purge(db, now=clock.now, retention_days=90)
    row = delivery(db, order_id)
    assert row["response"] == '{"error": "Invalid field customer: [removed] [removed] <[removed]> from [removed]"}'
    assert "Ada" not in row["last_error"] and "ada@example.com" not in row["last_error"]
    assert "HTTP 422" in row["last_error"]


def test_a_hostile_event_body_keeps_only_the_envelope_and_the_ids(client, db, clock):
    body = envelope("store/customer/created", {"type": "customer", "id": 7, "email": "eve@example.org", "name": "Eve Hacker"})
    body["scope"] = "store/customer/created eve@example.org"
    assert post_webhook(client, body).status_code == 200
    cart = "d30016e2-23c0-4a90-884f-2e92ac135476"
    converted = envelope("store/cart/converted", {"type": "cart", "id": cart, "orderId": 12, "ip": "198.51.100.7", "note": {"n": "Eve"}})
    assert post_webhook(client, converted).status_code == 200
    clock.advance(91 * DAY)
    (figures,) = retention.purge(db, now=clock.now, retention_days=90)
    assert figures.events == 2
    stored = {row["id"]: row for row in db.query("SELECT * FROM events ORDER BY id")}
    first, second = stored.values()
    assert json.loads(first["body"])["data"] == {"type": "customer", "id": 7}
    assert first["scope"] == json.loads(first["body"])["scope"] == "store/customer/created [removed]"
    assert json.loads(second["body"]) == {
        "scope": "store/cart/converted",
        "store_id": "1025646",
        "producer": f"stores/{STORE_HASH}",
        "hash": converted["hash"],
        "created_at": converted["created_at"],
        "data": {"type": "cart", "id": cart, "orderId": 12},
    }


def test_a_second_purge_finds_nothing_and_rewrites_nothing(client, worker, bigcommerce, refersion, db, clock):
    order_id = report_order(client, worker, bigcommerce)
    clock.advance(91 * DAY)
    first = retention.purge(db, now=clock.now, retention_days=90)
    assert (first[0].events, first[0].payloads) == (1, 1)
    purged_at = delivery(db, order_id)["purged_at"]
    clock.advance(DAY)
    assert [(entry.events, entry.payloads) for entry in retention.purge(db, now=clock.now, retention_days=90)] == []
    assert delivery(db, order_id)["purged_at"] == purged_at


def _history_of(db, store_hash: str, now: float) -> None:
    """An event, a delivery and a decision of ``store_hash``, as the worker leaves them."""
    with immediate(db):
        outbox.enqueue(
            db, key=outbox.paid_key(store_hash, 1), kind=outbox.PAID, store_hash=store_hash, order_id=1,
            payload='{"order_id":"1","customer":{"email":"buyer@example.com"}}', now=now,
        )  # fmt: skip
        db.execute("UPDATE deliveries SET state = 'done', done_at = ? WHERE store_hash = ?", [now, store_hash])
        db.execute("INSERT INTO decisions (store_hash, order_id, verdict, reasons, at) VALUES (?, 1, 'report', '[]', ?)", [store_hash, now])
    data = {"type": "order", "id": 1}
    record_event(db, Envelope(scope="store/order/created", store_hash=store_hash, data=data, order_id=1), "{}", known_store=True, now=now)


def counts(db, store_hash: str) -> dict[str, int]:
    return {
        table: db.execute(f"SELECT count(*) FROM {table} WHERE store_hash = ?", [store_hash]).fetchone()[0]
        for table in ("events", "deliveries", "decisions")
    }


def test_a_store_uninstalled_longer_than_the_retention_period_loses_its_whole_history(settings, db):
    now = time.time()
    install_store(settings, "gone1", email="owner@gone.test")
    for store_hash in ("gone1", STORE_HASH):
        _history_of(db, store_hash, now - 200 * DAY)
    with immediate(db):
        store_rows.uninstall(db, store_hash="gone1", now=now - 89 * DAY)

    retention.purge(db, now=now, retention_days=90)
    assert counts(db, "gone1") == {"events": 1, "deliveries": 1, "decisions": 1}  # not yet: uninstalled 89 days ago

    (gone,) = retention.purge(db, now=now + 2 * DAY, retention_days=90)
    assert gone.store_hash == "gone1"
    assert gone.deleted == {"events": 1, "deliveries": 1, "decisions": 1}
    assert counts(db, "gone1") == {"events": 0, "deliveries": 0, "decisions": 0}
    assert counts(db, STORE_HASH) == {"events": 1, "deliveries": 1, "decisions": 1}
    (install,) = store_rows.installs(db)
    assert install["installed_by"] is None  # the installer's email goes with the history; the settings row stays


def test_the_plan_counts_what_the_purge_then_does_and_changes_nothing(client, worker, bigcommerce, refersion, db, clock):
    report_order(client, worker, bigcommerce)
    clock.advance(10 * DAY)
    later = report_order(client, worker, bigcommerce, "manual_discount")
    clock.advance(85 * DAY)  # the first report is 95 days old, the second 85
    (planned,) = retention.plan(db, now=clock.now, retention_days=90)
    # Both events were received at the real time the test started (the intake's clock), 95 days before.
    assert (planned.events, planned.payloads) == (2, 1)
    assert planned.oldest_kept == delivery(db, later)["created_at"]
    assert next(db.query("SELECT count(*) AS n FROM deliveries WHERE purged_at IS NOT NULL"))["n"] == 0
    (done,) = retention.purge(db, now=clock.now, retention_days=90)
    assert (done.events, done.payloads, done.oldest_kept) == (2, 1, planned.oldest_kept)


def test_no_log_line_carries_an_email_or_ip_address_refersion_echoed(client, worker, bigcommerce, refersion):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets([]))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        refersion.answer_next(503, body='{"error": "busy with ada@example.com from 203.0.113.24 and 2001:db8::24"}')
        report_order(client, worker, bigcommerce)
    finally:
        root.removeHandler(handler)
    written = stream.getvalue()
    assert "Delivery of order" in written and "[removed]" in written
    for value in ("ada@example.com", "203.0.113.24", "2001:db8::24"):
        assert value not in written


def test_a_purge_out_of_time_stops_and_says_what_is_left(client, worker, bigcommerce, refersion, db, clock):
    """The chore's time budget: a first purge of a large database is done over several runs, other work in between."""
    report_order(client, worker, bigcommerce)
    clock.advance(91 * DAY)
    assert retention.left_to_purge(db, now=clock.now, retention_days=90)
    assert retention.purge(db, now=clock.now, retention_days=90, budget_seconds=0) == []  # out of time before the first batch
    assert retention.left_to_purge(db, now=clock.now, retention_days=90)
    assert [(entry.events, entry.payloads) for entry in retention.purge(db, now=clock.now, retention_days=90, budget_seconds=5)] == [(1, 1)]
    assert not retention.left_to_purge(db, now=clock.now, retention_days=90)
