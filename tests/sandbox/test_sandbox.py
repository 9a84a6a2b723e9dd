"""The sandbox servers over real HTTP, driven by the bridge's own clients where it has them."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
import requests
from werkzeug import Response

from bridge.clients.bigcommerce import BigCommerceClient, BigCommerceError, OrderSchema
from bridge.clients.refersion import RefersionClient
from bridge.sandbox import Sandbox, SandboxBigCommerce
from bridge.sandbox._server import LocalServer, json_response
from tests.conftest import BC_TOKEN, REFERSION_PUBLIC, REFERSION_SECRET, STORE_HASH, WEBHOOK_SECRET, post_webhook
from tests.fakes import load_fixture


def bc_client(sandbox, token=BC_TOKEN, store_hash=STORE_HASH) -> BigCommerceClient:
    return BigCommerceClient(api_url=sandbox.bigcommerce.url, store_hash=store_hash, access_token=token, timeout=2)


def api(sandbox, method, path, token=BC_TOKEN, **kwargs) -> requests.Response:
    return requests.request(
        method, f"{sandbox.bigcommerce.url}/stores/{STORE_HASH}/{path}", headers={"X-Auth-Token": token}, timeout=5, **kwargs
    )


def refersion_client(sandbox, secret=REFERSION_SECRET) -> RefersionClient:
    return RefersionClient(orders_url=sandbox.refersion.orders_url, public_key=REFERSION_PUBLIC, secret_key=secret, timeout=2)


PAID = {"cart_id": "c-1", "order_id": "101", "currency_code": "USD", "items": [{"sku": "A", "quantity": 1, "price": 10.0}]}


# --- BigCommerce: orders ------------------------------------------------------------------


def test_the_client_reads_an_order_its_lines_and_coupons(sandbox):
    bc = sandbox.bigcommerce
    bc.add_order(
        101,
        lines=[{"sku": "MUG", "name": "Mug", "qty": 2, "price": "12.50"}, {"sku": "TEE", "name": "Tee", "qty": 1, "price": "20"}],
        coupons=[{"code": "AFFILIATE10", "discount": "4.50", "type": "percentage_discount", "amount": "10"}],
        shipping="5.95",
        tax="3.10",
        cart_id="cart-abc",
    )
    client = bc_client(sandbox)
    order = client.fetch_order(101)
    assert order["total_inc_tax"] == Decimal("49.5500")  # 45.00 - 4.50 + 5.95 + 3.10
    assert (order["coupon_discount"], order["cart_id"], order["status_id"], order["payment_status"]) == (
        Decimal("4.5000"),
        "cart-abc",
        11,
        "captured",
    )
    assert order["modified_at"] == pytest.approx(time.time(), abs=5)
    assert [(p["sku"], p["quantity"], p["price_ex_tax"]) for p in client.fetch_order_products(101)] == [
        ("MUG", 2, Decimal("12.5")),
        ("TEE", 1, Decimal("20")),
    ]
    assert client.fetch_order_coupons(101) == [{"code": "AFFILIATE10", "discount": Decimal("4.5")}]
    assert client.fetch_order(999) is None

    raw = api(sandbox, "GET", "v2/orders/101").json()
    assert isinstance(raw["total_inc_tax"], str) and raw["total_inc_tax"] == "49.5500"
    assert raw["date_modified"].endswith("+0000") and raw["products"]["resource"] == "/orders/101/products"
    assert set(load_fixture("manual_discount")["order"]) <= set(raw)  # every key the fixtures have
    unknown = api(sandbox, "GET", "v2/orders/999")
    assert unknown.status_code == 404 and unknown.json()["status"] == 404


def test_lists_page_until_a_204_with_no_body(sandbox):
    lines = [{"sku": f"L{n}", "qty": 1, "price": "1"} for n in range(5)]
    sandbox.bigcommerce.add_order(101, lines=lines)
    first = api(sandbox, "GET", "v2/orders/101/products", params={"limit": 2, "page": 3})
    assert [line["sku"] for line in first.json()] == ["L4"]
    past = api(sandbox, "GET", "v2/orders/101/products", params={"limit": 2, "page": 4})
    assert (past.status_code, past.content) == (204, b"")
    assert api(sandbox, "GET", "v2/orders/101/coupons").status_code == 204
    client = bc_client(sandbox)
    assert len(client.fetch_order_products(101)) == 5
    assert client.fetch_order_coupons(101) == []
    pages = [r.query.get("page") for r in sandbox.bigcommerce.calls(r"/products$")][-2:]
    assert pages == ["1", "2"]  # the second page answered 204


def test_a_fixture_order_reads_as_in_the_fakes(sandbox):
    fixture = load_fixture("coupons_one_excluded")
    order_id = sandbox.bigcommerce.add_fixture(fixture, status_id=1)
    client = bc_client(sandbox)
    assert client.fetch_order(order_id)["status_id"] == 1
    assert [c["code"] for c in client.fetch_order_coupons(order_id)] == ["AFFILIATE10", "HOLIDAY5"]


def test_updates_move_date_modified_and_the_list_filters_and_sorts(sandbox):
    now = [1_790_000_000.0]
    bc = SandboxBigCommerce(STORE_HASH, BC_TOKEN, clock=lambda: now[0]).start()
    try:
        for order_id in (101, 102, 103):
            bc.add_order(order_id, status_id=1)
            now[0] += 60
        updated = bc.update_order(101, status_id=11, payment_status="captured")
        assert (updated["status"], updated["date_modified"]) == ("Awaiting Fulfillment", "Mon, 21 Sep 2026 14:16:20 +0000")
        url = f"{bc.url}/stores/{STORE_HASH}/v2/orders"
        get = lambda **params: requests.get(url, params=params, headers={"X-Auth-Token": BC_TOKEN}, timeout=5)  # noqa: E731
        assert [o["id"] for o in get(sort="date_modified:asc").json()] == [102, 103, 101]
        assert [o["id"] for o in get(min_date_modified="Mon, 21 Sep 2026 14:15:00 +0000", sort="date_modified:asc").json()] == [103, 101]
        assert [o["id"] for o in get(max_date_modified="2026-09-21T14:14:30Z").json()] == [102]
        assert [o["id"] for o in get(limit=2, page=2).json()] == [103]
        assert get(min_date_modified="2030-01-01T00:00:00Z").status_code == 204
        assert get(min_date_modified="not a date").status_code == 400
        assert [o["id"] for o in get(status_id=11).json()] == [101]
        body = bc.webhook_body("store/order/statusUpdated", 101)
        assert body["data"] == {"type": "order", "id": 101, "status": {"previous_status_id": 1, "new_status_id": 11}}
        assert body["producer"] == f"stores/{STORE_HASH}" and len(body["hash"]) == 40 and body["created_at"] == int(now[0])
        assert bc.webhook_body("store/cart/converted", 101)["data"]["orderId"] == 101
    finally:
        bc.stop()


def test_built_orders_load_with_the_bridge_schema(sandbox):
    order = sandbox.bigcommerce.add_order(105, status_id=7, cart_id=None, customer={"first_name": "", "email": ""})
    loaded = OrderSchema().load(order)
    assert (loaded["status"], loaded["payment_status"], loaded["cart_id"]) == ("Awaiting Payment", "pending", "")


# --- BigCommerce: auth, scopes, store, rate limits, failures ---------------------------------


def test_a_wrong_token_is_401_and_a_missing_scope_403_naming_it(sandbox):
    sandbox.bigcommerce.add_order(101)
    with pytest.raises(BigCommerceError) as raised:
        bc_client(sandbox, token="wrong").fetch_order(101)
    assert raised.value.status == 401
    assert api(sandbox, "GET", "v2/orders/101", token="wrong").json()["status"] == 401
    sandbox.bigcommerce.add_token(STORE_HASH, "info-only", scopes=["store_v2_information_read_only"])
    denied = api(sandbox, "GET", "v2/orders/101", token="info-only")
    assert denied.status_code == 403 and "store_v2_orders_read_only" in denied.json()["title"]
    store = api(sandbox, "GET", "v2/store", token="info-only").json()
    assert store["id"] == STORE_HASH and store["secure_url"].startswith("https://") and {"domain", "name"} <= set(store)
    sandbox.bigcommerce.add_token(STORE_HASH, "orders-rw", scopes=["store_v2_orders"])
    assert api(sandbox, "GET", "v2/orders/101", token="orders-rw").status_code == 200  # modify covers read
    assert api(sandbox, "GET", "v3/hooks", token="info-only").status_code == 200  # hooks: default scope


def test_an_exhausted_quota_is_a_429_with_the_reset_time(sandbox):
    sandbox.bigcommerce.add_order(101)
    sandbox.bigcommerce.set_quota(STORE_HASH, 2, window_ms=20_000)
    first = api(sandbox, "GET", "v2/orders/101")
    assert first.headers["X-Rate-Limit-Requests-Left"] == "1" and first.headers["X-Rate-Limit-Requests-Quota"] == "2"
    assert first.headers["X-Rate-Limit-Time-Window-Ms"] == "20000"
    client = bc_client(sandbox)
    client.fetch_order(101)
    with pytest.raises(BigCommerceError) as raised:
        client.fetch_order(101)
    assert raised.value.status == 429 and 15 < raised.value.retry_after <= 20
    limited = api(sandbox, "GET", "v2/orders/101")
    assert limited.status_code == 429 and limited.headers["X-Rate-Limit-Requests-Left"] == "0"
    sandbox.bigcommerce.set_quota(STORE_HASH, None)
    assert api(sandbox, "GET", "v2/orders/101").status_code == 200


def test_injected_failures_and_latency(sandbox):
    bc = sandbox.bigcommerce
    bc.add_order(101)
    bc.fail_next(503, times=2, headers={"Retry-After": "7"}, path=r"/orders/101$")
    with pytest.raises(BigCommerceError) as raised:
        bc_client(sandbox).fetch_order(101)
    assert raised.value.status == 503
    second = api(sandbox, "GET", "v2/orders/101")
    assert (second.status_code, second.headers["Retry-After"]) == (503, "7")
    assert api(sandbox, "GET", "v2/orders/101").status_code == 200
    bc.fail_next(500, body="<html>oops</html>")
    assert api(sandbox, "GET", "v2/orders/101").text == "<html>oops</html>"
    bc.slow_next(0.3)
    started = time.monotonic()
    with pytest.raises(BigCommerceError) as raised:
        BigCommerceClient(api_url=bc.url, store_hash=STORE_HASH, access_token=BC_TOKEN, timeout=0.1).fetch_order(101)
    assert raised.value.failure is not None and time.monotonic() - started < 1
    bc.latency = 0.05
    started = time.monotonic()
    assert api(sandbox, "GET", "v2/orders/101").status_code == 200 and time.monotonic() - started >= 0.05


# --- BigCommerce: hooks and OAuth -----------------------------------------------------------


class Receiver(LocalServer):
    """A webhook destination that records what arrives."""

    def dispatch(self, request):
        return json_response({}, 200)


def test_hooks_crud_round_trip_and_fire():
    with Sandbox(require_https_destinations=False) as sandbox, Receiver() as receiver:
        destination = f"{receiver.url}/webhooks/bigcommerce"
        hook = {"scope": "store/order/statusUpdated", "destination": destination, "is_active": True, "headers": {"X-Bridge-Token": "s"}}
        created = api(sandbox, "POST", "v3/hooks", json=hook)
        assert created.status_code == 200
        data = created.json()["data"]
        assert {"id", "client_id", "store_hash", "created_at", "updated_at"} <= set(data) and data["store_hash"] == STORE_HASH
        assert api(sandbox, "POST", "v3/hooks", json=hook).status_code == 422  # one per scope + destination
        listed = api(sandbox, "GET", "v3/hooks").json()
        assert [h["id"] for h in listed["data"]] == [data["id"]] and listed["meta"]["pagination"]["total"] == 1
        assert api(sandbox, "GET", "v3/hooks", token="other").status_code == 401
        sandbox.bigcommerce.add_token(STORE_HASH, "other-app", client_id="another-client")
        assert api(sandbox, "GET", "v3/hooks", token="other-app").json()["data"] == []  # per client id

        sandbox.bigcommerce.add_order(101, status_id=11)
        assert [r["status"] for r in sandbox.bigcommerce.fire("store/order/statusUpdated", 101)] == [200]
        arrived = receiver.calls("/webhooks/bigcommerce")[0]
        assert arrived.headers["X-Bridge-Token"] == "s" and arrived.json["data"]["id"] == 101
        assert sandbox.bigcommerce.fire("store/order/created", 101) == []  # no hook for that scope

        sandbox.bigcommerce.deactivate_hook(data["id"])
        assert api(sandbox, "GET", f"v3/hooks/{data['id']}").json()["data"]["is_active"] is False
        assert sandbox.bigcommerce.fire("store/order/statusUpdated", 101) == []
        assert api(sandbox, "GET", "v3/hooks", params={"is_active": "false"}).json()["meta"]["pagination"]["total"] == 1
        put = api(sandbox, "PUT", f"v3/hooks/{data['id']}", json={"is_active": True})
        assert put.status_code == 200 and put.json()["data"]["is_active"] is True
        assert api(sandbox, "PUT", f"v3/hooks/{data['id']}", json={}).status_code == 422
        deleted = api(sandbox, "DELETE", f"v3/hooks/{data['id']}")
        assert deleted.status_code == 200 and deleted.json()["data"]["id"] == data["id"]
        missing = api(sandbox, "GET", f"v3/hooks/{data['id']}")
        assert missing.status_code == 404 and missing.json()["title"] == f"Webhook with id [{data['id']}] not found"


def test_hook_destinations_must_be_https_on_443_unless_allowed(sandbox):
    def create(destination):
        return api(sandbox, "POST", "v3/hooks", json={"scope": "store/order/*", "destination": destination})

    assert create("http://127.0.0.1:5000/webhooks/bigcommerce").status_code == 422
    assert create("https://bridge.example.com:8443/webhooks/bigcommerce").json()["errors"]["destination"]
    assert create("https://bridge.example.com/webhooks/bigcommerce").status_code == 200
    assert api(sandbox, "POST", "v3/hooks", json={"scope": "store/order/*"}).json()["errors"] == {"destination": "error.path.missing."}
    results = sandbox.bigcommerce.fire("store/order/created", 1)
    assert results[0]["error"] == "skipped: not a loopback destination"  # never leaves the machine


def test_oauth_code_exchange(sandbox):
    bc = sandbox.bigcommerce
    scopes = ["store_v2_orders_read_only", "store_v2_information_read_only"]
    code = bc.issue_code(STORE_HASH, scopes, redirect_uri="https://bridge.example.com/auth")
    form = {
        "client_id": bc.client_id,
        "client_secret": bc.client_secret,
        "code": code,
        "scope": " ".join(scopes),
        "grant_type": "authorization_code",
        "redirect_uri": "https://bridge.example.com/auth",
        "context": f"stores/{STORE_HASH}",
    }
    token_url = f"{bc.url}/oauth2/token"
    assert requests.post(token_url, data={**form, "client_secret": "wrong"}, timeout=5).status_code == 401
    assert requests.post(token_url, data={**form, "redirect_uri": "https://elsewhere"}, timeout=5).status_code == 400
    answer = requests.post(token_url, data=form, timeout=5)
    assert answer.status_code == 200
    granted = answer.json()
    assert granted["context"] == f"stores/{STORE_HASH}" and granted["scope"] == " ".join(scopes)
    assert {"id", "username", "email"} <= set(granted["user"])
    assert requests.post(token_url, json=form, timeout=5).status_code == 400  # a code is used once
    bc.add_order(101)
    assert bc_client(sandbox, token=granted["access_token"]).fetch_order(101)["id"] == 101
    assert api(sandbox, "PUT", "v2/orders/101", token=granted["access_token"], json={"status_id": 5}).status_code == 403


# --- Refersion ------------------------------------------------------------------------------------


def test_refersion_accepts_a_paid_order_and_refuses_wrong_keys(sandbox):
    client = refersion_client(sandbox)
    reply = client.post_paid_order(json.dumps(PAID))
    assert reply.status == 200 and json.loads(reply.body) == {"status": "success", "order_id": "101"}
    assert sandbox.refersion.order_ids == ["101"]
    assert sandbox.refersion.received[0].headers["Refersion-Public-Key"] == REFERSION_PUBLIC
    refused = refersion_client(sandbox, secret="sec_wrong").post_paid_order(json.dumps(PAID))
    assert refused.status == 401 and json.loads(refused.body) == {"error": "Invalid API credentials (error 2)."}
    missing = client.post_paid_order(json.dumps({**PAID, "cart_id": ""}))
    assert (missing.status, json.loads(missing.body)) == (400, {"error": "Missing required field cart_id"})
    assert sandbox.refersion.order_ids == ["101"] and sandbox.refersion.attempts() == 3


def test_refersion_accepts_several_key_pairs_and_records_which_each_request_carried(sandbox):
    refersion = sandbox.refersion
    other = RefersionClient(orders_url=refersion.orders_url, public_key="pub_other_77", secret_key="sec_other_0123456789", timeout=2)
    assert other.post_paid_order(json.dumps(PAID)).status == 401  # not added yet
    refersion.add_keys("pub_other_77", "sec_other_0123456789")
    assert other.post_paid_order(json.dumps({**PAID, "order_id": "102"})).status == 200
    assert refersion_client(sandbox).post_paid_order(json.dumps(PAID)).status == 200  # the first pair still works
    mixed = RefersionClient(orders_url=refersion.orders_url, public_key=REFERSION_PUBLIC, secret_key="sec_other_0123456789", timeout=2)
    assert mixed.post_paid_order(json.dumps(PAID)).status == 401  # a pair, not any public key with any secret
    assert [(r.body["order_id"], r.keys) for r in refersion.received] == [
        ("102", ("pub_other_77", "sec_other_0123456789")),
        ("101", (REFERSION_PUBLIC, REFERSION_SECRET)),
    ]
    refersion.remove_keys("pub_other_77", "sec_other_0123456789")
    assert other.post_paid_order(json.dumps(PAID)).status == 401
    refersion.add_keys("pub_other_77", "sec_other_0123456789")
    refersion.reset()
    assert other.post_paid_order(json.dumps(PAID)).status == 401  # reset keeps only the first pair
    assert refersion_client(sandbox).post_paid_order(json.dumps(PAID)).status == 200


def test_refersion_failures_and_slowness(sandbox):
    refersion = sandbox.refersion
    client = refersion_client(sandbox)
    refersion.unavailable(retry_after="120")
    busy = client.post_paid_order(json.dumps(PAID))
    assert (busy.status, busy.retry_after) == (503, "120")
    refersion.reject(400, "Missing required field: items")
    assert client.post_paid_order(json.dumps(PAID)).body == '{"error": "Missing required field: items"}'
    refersion.fail_next(401)
    assert json.loads(client.post_paid_order(json.dumps(PAID)).body) == {"error": "Invalid API credentials (error 2)."}
    refersion.slow_next(0.5)
    slow = RefersionClient(orders_url=refersion.orders_url, public_key=REFERSION_PUBLIC, secret_key=REFERSION_SECRET, timeout=0.1)
    assert slow.post_paid_order(json.dumps(PAID)).failure is not None
    assert client.post_paid_order(json.dumps(PAID)).status == 200
    statuses = [r.status for r in refersion.calls("/tracker/orders/paid")]
    assert statuses[:3] == [503, 400, 401] and statuses[-1] == 200 and len(statuses) == 5


def test_respond_next_answers_matching_requests_with_a_function(sandbox):
    bc = sandbox.bigcommerce
    bc.add_order(101)
    bc.add_order(102)
    seen = []

    def maintenance(request):
        seen.append(request.path)
        return Response("<html>maintenance</html>", 200, content_type="text/html")

    bc.respond_next(maintenance, times=2, match=lambda r: r.path.endswith("/orders/102"))
    assert api(sandbox, "GET", "v2/orders/101").json()["id"] == 101  # not matched: answered normally
    assert [api(sandbox, "GET", "v2/orders/102").text for _ in range(3)][:2] == ["<html>maintenance</html>"] * 2
    assert api(sandbox, "GET", "v2/orders/102").json()["id"] == 102  # used up
    assert seen == [f"/stores/{STORE_HASH}/v2/orders/102"] * 2


def test_reset_goes_back_to_the_state_it_was_created_in(sandbox):
    bc, refersion = sandbox.bigcommerce, sandbox.refersion
    bc.add_order(101, lines=[{"sku": f"S{n}", "qty": 1, "price": "1.00"} for n in range(5)])
    bc.max_page_size = 2
    assert len(api(sandbox, "GET", "v2/orders/101/products", params={"limit": 50}).json()) == 2
    bc.add_token(STORE_HASH, "another-token-0000")
    bc.fail_next(500, times=5)
    refersion.secret_key = "sec_rotated"
    refersion.fail_next(503, times=5)
    bc.reset()
    refersion.reset()
    assert (bc.requests, bc.injections, refersion.requests, refersion.injections) == ([], [], [], [])
    assert api(sandbox, "GET", "v2/orders/101").status_code == 404
    assert api(sandbox, "GET", "v2/orders", token="another-token-0000").status_code == 401
    bc.add_order(101, lines=[{"sku": f"S{n}", "qty": 1, "price": "1.00"} for n in range(5)])
    assert len(api(sandbox, "GET", "v2/orders/101/products", params={"limit": 50}).json()) == 5
    assert refersion_client(sandbox).post_paid_order(json.dumps(PAID)).status == 200
    assert refersion.order_ids == ["101"]


def test_refersion_rest_cancel_and_affiliate_list(sandbox):
    headers = {"Refersion-Public-Key": REFERSION_PUBLIC, "Refersion-Secret-Key": REFERSION_SECRET}
    api_url = sandbox.refersion.api_url
    listed = requests.post(f"{api_url}/affiliate/list", json={"limit": 1}, headers=headers, timeout=5)
    assert listed.status_code == 200 and listed.json()["total"] == 3 and len(listed.json()["results"]) == 1
    bad = requests.post(f"{api_url}/affiliate/list", json={"limit": 1}, headers={**headers, "Refersion-Secret-Key": "x"}, timeout=5)
    assert bad.status_code == 401
    assert requests.post(f"{api_url}/affiliate/list", headers=headers, timeout=5).json() == {"error": "Bad request, no body"}
    cancel = {"order_id": "101", "items": [{"sku": "A", "price": 10.0, "quantity": 1}]}
    unknown = requests.post(f"{api_url}/conversion/cancel", json=cancel, headers=headers, timeout=5)
    assert (unknown.status_code, unknown.json()) == (422, {"errors": ["Invalid order ID (error 5)"]})
    refersion_client(sandbox).post_paid_order(json.dumps(PAID))
    done = requests.post(f"{api_url}/conversion/cancel", json=cancel, headers=headers, timeout=5)
    assert done.status_code == 200 and done.json()["conversion_id"].isdigit()
    assert sandbox.refersion.cancellations[0].body["order_id"] == "101"


# --- The whole pipeline ---------------------------------------------------------------------------


def test_a_paid_order_goes_from_the_sandbox_store_to_the_sandbox_refersion(sandbox, client, make_worker):
    bc = sandbox.bigcommerce
    bc.add_order(
        101,
        status_id=11,
        lines=[{"sku": "MUG", "name": "Mug", "qty": 2, "price": "12.50"}],
        coupons=[{"code": "AFFILIATE10", "discount": "2.50"}],
        shipping="5.00",
        cart_id="cart-from-checkout",
    )
    body = bc.webhook_body("store/order/statusUpdated", 101, previous_status_id=0)
    assert post_webhook(client, body).status_code == 200
    assert post_webhook(client, body, token=WEBHOOK_SECRET + "x").status_code == 401
    make_worker().run_until_idle()
    assert sandbox.refersion.order_ids == ["101"]
    sent = sandbox.refersion.paid_orders()[0]
    assert sent["cart_id"] == "cart-from-checkout" and sent["items"] == [{"sku": "MUG", "name": "Mug", "quantity": 2, "price": 12.5}]
    assert (sent["shipping"], sent["discount"], sent["discount_code"]) == (5.0, 2.5, "AFFILIATE10")
    assert bc.calls(r"/v2/orders/101$")  # the worker re-read the order from the sandbox
