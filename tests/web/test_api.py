"""``/api/status``, ``/api/orders/<id>`` and ``/api/orders/<id>/replay``: shapes and status codes
(SPEC section 3), over a database filled by the real pipeline."""

import pytest

from bridge.web.app import create_app
from tests.conftest import STORE_HASH, post_webhook, status_updated, store_user_client
from tests.fakes import load_fixture

ADMIN_TOKEN = "adm-7f3c9b2e4d1a8f6c5b0e9d2a41c7"
SESSION_SECRET = "ses-1b9e4c7a2f5d8e3b6a0c9f2d7e4b"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def api(make_settings):
    app = create_app(make_settings(server_admin_token=ADMIN_TOKEN, server_session_secret=SESSION_SECRET))
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def orders(client, worker, bigcommerce, refersion):
    reported = bigcommerce.add(load_fixture("manual_discount"))
    dead = bigcommerce.add(load_fixture("odd_cents"))
    post_webhook(client, status_updated(reported, 11))
    worker.run_until_idle()
    refersion.answer_next(400, body='{"error": "Missing required field: items"}')
    post_webhook(client, status_updated(dead, 11))
    worker.run_until_idle()
    return {"reported": reported, "dead": dead}


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/status"), ("GET", "/api/orders/1"), ("POST", "/api/orders/1/replay")])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": ADMIN_TOKEN}])
def test_every_api_route_answers_401_json_without_a_session_or_the_admin_token(api, method, path, headers):
    response = api.open(path, method=method, headers=headers)
    assert response.status_code == 401
    assert response.is_json and response.get_json()["error"]
    assert ADMIN_TOKEN not in response.get_data(as_text=True)


def test_status_has_the_spec_shape(api, orders):
    response = api.get("/api/status", headers=BEARER)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"stores", "counts", "skipped_by_reason", "recent", "coverage"}  # SPEC section 3, and webhook coverage
    (store,) = body["stores"]
    assert (store["store_hash"], store["mode"]) == (STORE_HASH, "api_account")
    assert store["refersion"]["ok"] is True and store["bigcommerce"]["ok"] is True
    assert body["counts"]["received"] == 2
    assert (body["counts"]["reported"], body["counts"]["dead"]) == (1, 1)
    assert {row["order_id"]: row["decision"] for row in body["recent"]} == {orders["reported"]: "reported", orders["dead"]: "dead"}


def test_an_orders_story_has_the_spec_shape(api, orders):
    response = api.get(f"/api/orders/{orders['dead']}", headers=BEARER)
    assert response.status_code == 200
    story = response.get_json()
    assert {"store_hash", "order_id", "decision", "reasons", "decisions", "events", "deliveries"} <= set(story)
    assert (story["store_hash"], story["order_id"], story["decision"]) == (STORE_HASH, orders["dead"], "dead")
    assert set(story["deliveries"][0]) >= {"kind", "state", "attempts", "last_status", "last_answer", "next_attempt_at"}
    assert set(story["decisions"][0]) == {"at", "decision", "reasons"}
    assert set(story["events"][0]) >= {"scope", "received_at", "state"}
    assert api.get(f"/api/orders/{orders['dead']}?store={STORE_HASH}", headers=BEARER).status_code == 200


@pytest.mark.parametrize("order_id", ["abc", "0", "-5", "1.5", "٣", "9" * 30, "12%2034"])
def test_a_malformed_order_id_is_a_400_naming_the_problem(api, order_id):
    response = api.get(f"/api/orders/{order_id}", headers=BEARER)
    assert response.status_code == 400
    assert "order number is digits only" in response.get_json()["error"]


def test_an_order_never_heard_of_is_a_404_and_a_bad_store_a_400(api, orders):
    assert api.get("/api/orders/424242", headers=BEARER).status_code == 404
    assert api.get(f"/api/orders/{orders['reported']}?store=otherstore", headers=BEARER).status_code == 404
    assert api.get(f"/api/orders/{orders['reported']}?store=not-a-hash!", headers=BEARER).status_code == 400


def test_replay_re_queues_a_dead_delivery_once(api, orders, worker, refersion):
    response = api.post(f"/api/orders/{orders['dead']}/replay", headers=BEARER)
    assert response.status_code == 202
    body = response.get_json()
    assert [row["order_id"] for row in body["requeued"]["deliveries"]] == [orders["dead"]]
    assert api.post(f"/api/orders/{orders['dead']}/replay", headers=BEARER).status_code == 409
    assert api.post(f"/api/orders/{orders['reported']}/replay", headers=BEARER).status_code == 409
    assert api.post("/api/orders/424242/replay", headers=BEARER).status_code == 404
    worker.run_until_idle()
    assert refersion.order_ids[-1] == str(orders["dead"])


@pytest.mark.parametrize(("method", "path"), [("PUT", "/api/status"), ("DELETE", "/api/orders/1"), ("GET", "/api/orders/1/replay")])
def test_wrong_methods_are_a_clear_405(api, method, path):
    response = api.open(path, method=method, headers=BEARER)
    assert response.status_code == 405
    assert response.is_json


def test_a_store_owner_never_sees_another_stores_orders_whatever_store_says(make_settings, orders):
    """An owner of one installed store asks about another store's orders."""
    settings = make_settings(server_admin_token=ADMIN_TOKEN, server_session_secret=SESSION_SECRET)
    owner = store_user_client(create_app(settings), settings, "otherstore", 77)
    assert owner.get(f"/api/orders/{orders['reported']}?store={STORE_HASH}").status_code == 404
    assert owner.get(f"/api/orders/{orders['reported']}").status_code == 404
    status = owner.get("/api/status").get_json()
    assert [(store["store_hash"], store["mode"]) for store in status["stores"]] == [("otherstore", "app")]
    assert status["recent"] == [] and status["counts"]["received"] == 0
