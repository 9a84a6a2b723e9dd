"""GET /healthz and the error pages."""

import time

import pytest

from bridge.storage import hook_checks, pauses
from bridge.storage.db import immediate
from tests.conftest import install_store, post_webhook, queue_delivery, status_updated


def test_health_reports_database_and_queues(client, db):
    post_webhook(client, status_updated(250, 11))
    queue_delivery(db, 9, now=1.0)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["queue_depth"] == {"events": 1, "deliveries": 1}
    assert body["oldest_pending_delivery_age_seconds"] > 1_000_000  # created at t=1
    assert body["paused"] == []


def test_health_on_an_empty_database(client):
    body = client.get("/healthz").get_json()
    assert body["queue_depth"] == {"events": 0, "deliveries": 0}
    assert body["oldest_pending_delivery_age_seconds"] is None


def test_health_is_503_when_the_database_cannot_be_read(client, settings):
    with open(settings.database.path, "wb") as handle:
        handle.write(b"this is not a database" * 100)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "failing", "database": "unreachable", "problems": ["the database cannot be read"]}


@pytest.mark.parametrize(("accept", "kind"), [("text/html", "text/html"), ("application/json", "application/json")])
def test_unknown_pages_get_a_404_in_the_asked_for_format(client, accept, kind):
    response = client.get("/no-such-page", headers={"Accept": accept})
    assert response.status_code == 404
    assert response.mimetype == kind


def test_health_is_degraded_while_anything_is_dead_or_paused(client, db):
    assert client.get("/healthz").get_json()["status"] == "ok"
    queue_delivery(db, 10, now=1.0)
    with immediate(db):
        db.execute("UPDATE deliveries SET state = 'dead'")
    body = client.get("/healthz").get_json()
    assert (body["status"], body["dead"]) == ("degraded", {"events": 0, "deliveries": 1})
    assert body["problems"] == ["1 dead item(s) need attention (replay them once the cause is fixed)"]

    with immediate(db):
        db.execute("DELETE FROM deliveries")
        pauses.pause(db, store_hash="abc123", service="refersion", fingerprint="f", reason="Refersion refused the API keys.", now=1)
    response = client.get("/healthz")
    assert response.status_code == 200  # degraded is still up: a load balancer must keep sending webhooks
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["paused"] == [{"store_hash": "abc123", "service": "refersion", "reason": "Refersion refused the API keys."}]


def test_a_store_held_back_for_minutes_by_a_rate_limit_makes_health_degraded(client, db):
    with immediate(db):
        pauses.hold(db, store_hash="abc123", service="bigcommerce", until=time.time() + 240, reason="429")
        pauses.hold(db, store_hash="def456", service="bigcommerce", until=time.time() + 5, reason="429")
    body = client.get("/healthz").get_json()
    assert body["status"] == "degraded"
    assert [problem for problem in body["problems"] if "rate" in problem] == [
        "store abc123 is held back by a bigcommerce rate limit for another 4 min"
    ]
    assert {row["store_hash"] for row in body["held"]} == {"abc123", "def456"}


def test_health_is_degraded_while_a_stores_last_hook_check_found_a_hook_missing_or_off(client, db, settings):
    with immediate(db):
        hook_checks.record(db, store_hash="abc123", checked_at=1.0, wanted=6, problems={}, down_since=None)
    assert client.get("/healthz").get_json()["status"] == "ok"
    with immediate(db):
        problems = {"store/order/created": ["missing"], "store/order/updated": ["inactive"]}
        hook_checks.record(db, store_hash="abc123", checked_at=2.0, wanted=6, problems=problems, down_since=1.0)
    body = client.get("/healthz").get_json()
    assert body["status"] == "degraded"
    assert body["problems"] == ["store abc123 webhooks: store/order/created missing; store/order/updated deactivated by BigCommerce"]
    assert body["hooks"] == [{"store_hash": "abc123", "problems": problems}]

    # An uninstalled app's hooks are gone on purpose: its last check is no problem of the bridge.
    install_store(settings, "gone456")
    with immediate(db):
        hook_checks.record(db, store_hash="abc123", checked_at=3.0, wanted=6, problems={}, down_since=None)
        hook_checks.record(
            db, store_hash="gone456", checked_at=3.0, wanted=7, problems={"store/app/uninstalled": ["missing"]}, down_since=1.0
        )
        db.execute("UPDATE stores SET uninstalled_at = 4.0 WHERE store_hash = 'gone456'")
    assert client.get("/healthz").get_json()["status"] == "ok"
