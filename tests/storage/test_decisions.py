"""Decisions: an append-only history, and a verdict in force that no stale or later write
can turn from reported into unreported (issue 5, defect 8)."""

import json
import threading

import pytest
from werkzeug import Response

from bridge.storage.db import immediate
from bridge.storage.decisions import OrderFacts, current_decision, history, record_decision
from tests.conftest import post_webhook, status_updated
from tests.fakes import Scripted, load_fixture

T1, T2, T3 = 1_790_000_100.0, 1_790_000_200.0, 1_790_000_300.0


def decide(db, verdict, modified, code="x", force=False):
    with immediate(db):
        return record_decision(
            db,
            store_hash="abc123",
            order_id=7,
            verdict=verdict,
            reasons=[(code, f"because {code}")],
            facts=OrderFacts(status_id=11, payment_status="captured", total="10.00", currency="USD", modified_at=modified),
            cart_id_source=None,
            note=None,
            now=(modified or T3) + 1,
            force=force,
        )


def verdict(db):
    return current_decision(db, store_hash="abc123", order_id=7)["verdict"]


def test_a_decision_on_an_older_read_of_the_order_does_not_replace_a_newer_one(db):
    assert decide(db, "wait", T2) is True
    assert decide(db, "skip", T1) is False
    assert verdict(db) == "wait"
    assert decide(db, "wait", T3) is True


def test_a_read_without_date_modified_is_not_taken_for_an_older_one(db):
    decide(db, "wait", T2)
    assert decide(db, "skip", None) is True  # nothing to compare with: the newer write wins
    assert decide(db, "wait", T1) is False  # still older than the newest read known (T2)
    assert decide(db, "wait", T3) is True


@pytest.mark.parametrize("later", ["wait", "skip"])
def test_nothing_unreports_a_reported_order_whatever_its_read(db, later):
    decide(db, "report", T2)
    assert decide(db, later, T1) is False
    assert decide(db, later, T3) is False
    assert verdict(db) == "report"


def test_only_the_explicit_drop_of_an_unsent_report_replaces_it(db):
    decide(db, "report", T2)
    assert decide(db, "skip", T3, code="no_longer_eligible", force=True) is True
    assert verdict(db) == "skip"


def test_every_decision_is_kept_in_order_with_its_reasons(db):
    decide(db, "wait", T1, code="payment_not_yet")
    decide(db, "report", T2, code="eligible")
    decide(db, "wait", T1, code="status_not_yet")  # a stale read: kept in the story, not in force
    rows = history(db, store_hash="abc123", order_id=7)
    assert [(row["verdict"], json.loads(row["reasons"])[0]["code"]) for row in rows] == [
        ("wait", "payment_not_yet"),
        ("report", "eligible"),
        ("wait", "status_not_yet"),
    ]
    assert verdict(db) == "report"


def test_a_slow_worker_with_an_older_read_cannot_overwrite_a_report(client, make_worker, bigcommerce, refersion, db):
    """Worker A reads the order while it is still pending, slowly; worker B reads it paid and
    reports it; A's late 'wait' must not claim the order is unreported."""
    fixture = load_fixture("manual_discount")
    order_id = bigcommerce.add(fixture, date_modified="Tue, 20 Oct 2026 14:10:00 +0000")
    stale = {
        **bigcommerce.orders[order_id],
        "status_id": 1,
        "payment_status": "pending",
        "date_modified": "Tue, 20 Oct 2026 14:03:11 +0000",
    }
    b_reported = threading.Event()

    def slow_stale_answer(request):
        b_reported.wait(10)
        return Response(json.dumps(stale), status=200, content_type="application/json")

    bigcommerce.script.append(Scripted(lambda r: r.path.endswith(f"/orders/{order_id}"), slow_stale_answer, times=1))
    first, second = make_worker(), make_worker()
    post_webhook(client, status_updated(order_id, 1, 0, created_at=1_790_000_001))
    slow = threading.Thread(target=first.run_once)
    slow.start()
    try:
        for _ in range(100):  # wait until A has claimed its event
            if next(db.query("SELECT state FROM events"))["state"] == "working":
                break
            threading.Event().wait(0.02)
        post_webhook(client, status_updated(order_id, 11, 1, created_at=1_790_000_002))
        second.run_until_idle()
        assert refersion.order_ids == [str(order_id)]
    finally:
        b_reported.set()
        slow.join(timeout=20)
    row = current_decision(db, store_hash="abc123", order_id=order_id)
    assert row["verdict"] == "report"
    assert [row["verdict"] for row in history(db, store_hash="abc123", order_id=order_id)] == ["report", "wait"]
