"""The lean WSGI path for valid webhooks: it answers exactly as the Flask view would, and hands the view
everything else untouched (nothing is stored twice, nothing is answered by both)."""

from __future__ import annotations

import pytest

from tests.conftest import WEBHOOK_SECRET, post_webhook, status_updated


@pytest.fixture
def through_flask(app):
    """How many requests reached Flask's request handling (before_request runs for each)."""
    seen: list[str] = []
    app.before_request(lambda: seen.append("flask") and None)
    return seen


def _events(db) -> int:
    return db.execute("SELECT count(*) FROM events").fetchone()[0]


def test_a_valid_webhook_is_stored_without_flask_and_answered_with_the_usual_headers(client, db, through_flask):
    response = post_webhook(client, status_updated(250, 11))
    assert (response.status_code, response.data) == (200, b"")
    assert through_flask == []
    assert _events(db) == 1
    flask_answer = client.get("/healthz")
    for name in ("Content-Security-Policy", "Referrer-Policy", "X-Content-Type-Options", "Cache-Control"):
        assert response.headers[name] == flask_answer.headers[name]


@pytest.mark.parametrize(
    ("options", "status"),
    [
        ({"data": b"{not json", "content_type": "application/json"}, 400),
        ({"data": b'{"scope": "store/order/statusUpdated"}', "content_type": "application/json"}, 400),
        ({"data": b"{}", "content_type": "text/plain"}, 415),
        ({"data": b"x" * (64 * 1024 + 1), "content_type": "application/json"}, 413),
    ],
    ids=["not-json", "not-a-webhook", "not-json-type", "too-big"],
)
def test_anything_else_goes_to_the_view_which_answers_and_stores_nothing(client, db, through_flask, options, status):
    response = client.post("/webhooks/bigcommerce", headers={"X-Bridge-Token": WEBHOOK_SECRET}, **options)
    assert response.status_code == status
    assert "error" in response.get_json()
    assert through_flask == ["flask"]
    assert _events(db) == 0


def test_a_token_the_store_does_not_send_is_refused_by_the_view_and_nothing_is_stored(client, db, through_flask):
    response = post_webhook(client, status_updated(250, 11), token=WEBHOOK_SECRET + "x")
    assert response.status_code == 401
    assert through_flask == ["flask"]
    assert _events(db) == 0


def test_other_routes_are_untouched(client, through_flask):
    assert client.get("/healthz").status_code in (200, 503)
    assert client.post("/webhooks/bigcommerce/other", json={}, headers={"X-Bridge-Token": WEBHOOK_SECRET}).status_code == 404
    assert through_flask == ["flask", "flask"]
