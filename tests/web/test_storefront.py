"""``GET /storefront/refersion-cart.js`` and ``POST /storefront/cart`` against hostile input:
wrong or missing origins, unknown stores, reported orders, garbage, floods."""

from __future__ import annotations

import json
import time

import pytest

from bridge.storage import storefront
from bridge.storage.db import connect, immediate
from bridge.storage.storefront import MAX_CLAIMS
from bridge.storage.stores import StoreRegistry
from bridge.web.app import create_app
from bridge.web.storefront import MAX_BODY_BYTES, ORDERS_AHEAD
from tests.conftest import STORE_HASH, envelope, hook_token_of, install_store, post_webhook, queue_delivery, status_updated

SHOP = "https://shop.test"
CART = "0b3e5a34-6c8f-4b5e-9d0a-2f1e7c9b8a61"


@pytest.fixture
def shop_settings(make_settings):
    return make_settings(storefront_allowed_origins=SHOP)


@pytest.fixture
def web(shop_settings):
    app = create_app(shop_settings)
    app.config["TESTING"] = True
    client = app.test_client()
    hear_of(client, 1042)
    return client


def hear_of(web, order_id, store_hash=STORE_HASH):
    """BigCommerce's webhook for the order reaches the bridge (stored; no worker runs here)."""
    assert post_webhook(web, status_updated(order_id, 11, store_hash=store_hash), token=hook_token_of(store_hash)).status_code == 200


def post(web, body, *, origin: str | None = SHOP, ip: str = "203.0.113.7", content_type="application/json", headers=None):
    sent = dict(headers or {})
    if origin is not None:
        sent["Origin"] = origin
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return web.post("/storefront/cart", data=data, content_type=content_type, headers=sent, environ_base={"REMOTE_ADDR": ip})


def claim(order_id=1042, cart_id=CART, store_hash=STORE_HASH):
    return {"store_hash": store_hash, "order_id": order_id, "cart_id": cart_id}


def stored(settings, order_id=1042, store_hash=STORE_HASH):
    db = connect(settings.database.path)
    try:
        return storefront.find_claim(db, store_hash=store_hash, order_id=order_id)
    finally:
        db.close()


def test_the_script_is_served_as_javascript_with_caching_headers(web):
    response = web.get("/storefront/refersion-cart.js")
    assert response.status_code == 200
    assert response.mimetype == "application/javascript"
    assert "max-age=3600" in response.headers["Cache-Control"] and "public" in response.headers["Cache-Control"]
    assert b"sendCheckoutEvent" in response.data and b"_addCart" in response.data
    assert web.get("/storefront/refersion-cart.js", headers={"If-None-Match": response.headers["ETag"]}).status_code == 304


def test_a_claim_from_the_store_origin_is_stored_once_and_a_few_different_values_are_kept(web, shop_settings):
    first = post(web, claim(cart_id=f"  {CART.upper()} "))
    assert first.status_code == 202 and first.get_json()["status"] == "stored"
    assert first.headers["Access-Control-Allow-Origin"] == SHOP and first.headers["Vary"] == "Origin"
    assert stored(shop_settings)["cart_id"] == CART  # trimmed, in BigCommerce's lower case
    again = post(web, claim())
    assert again.status_code == 202 and again.get_json()["status"] == "same"
    others = [f"11111111-2222-4333-8444-55555555555{n}" for n in range(MAX_CLAIMS)]
    assert [post(web, claim(cart_id=other)).get_json()["status"] for other in others[:-1]] == ["stored"] * (MAX_CLAIMS - 1)
    full = post(web, claim(cart_id=others[-1]))
    assert full.status_code == 409 and f"already has {MAX_CLAIMS} different cart ids" in full.get_json()["error"]
    assert full.headers["Access-Control-Allow-Origin"] == SHOP
    assert all_claims(shop_settings) == [CART, *others[:-1]]


def all_claims(settings, order_id=1042):
    db = connect(settings.database.path)
    try:
        return [row["cart_id"] for row in storefront.find_claims(db, store_hash=STORE_HASH, order_id=order_id)]
    finally:
        db.close()


def test_a_claim_for_an_order_the_bridge_never_heard_of_is_not_stored(web, shop_settings):
    far = post(web, claim(order_id=987654))  # a future order id: ids are sequential
    assert far.status_code == 404
    assert far.get_json()["error"] == f"Store {STORE_HASH} has no order 987654 that the bridge has heard of."
    assert stored(shop_settings, 987654) is None
    # The shopper's page may beat its order's webhook: the next few ids are taken.
    assert post(web, claim(order_id=1042 + ORDERS_AHEAD)).status_code == 202
    assert post(web, claim(order_id=1042 + ORDERS_AHEAD + 1)).status_code == 404


def test_a_store_the_bridge_has_no_webhook_from_takes_no_claim(make_settings):
    settings = make_settings(storefront_allowed_origins=SHOP)
    web = create_app(settings).test_client()
    assert post(web, claim()).status_code == 404
    assert stored(settings) is None
    hear_of(web, 1042)
    assert post(web, claim()).status_code == 202


def test_a_claim_naming_a_cart_bigcommerce_linked_to_the_order_is_taken_even_when_forgers_filled_it(web, shop_settings):
    for n in range(MAX_CLAIMS):
        assert post(web, claim(cart_id=f"66666666-7777-4888-8999-aaaaaaaaaaa{n}"), ip=f"198.51.100.{n}").status_code == 202
    assert post(web, claim(cart_id="66666666-7777-4888-8999-bbbbbbbbbbbb")).status_code == 409
    converted = {"type": "cart", "id": CART.upper(), "orderId": 1042}
    assert post_webhook(web, envelope("store/cart/converted", converted)).status_code == 200
    assert post(web, claim()).status_code == 202
    assert CART in all_claims(shop_settings)


def test_a_preflight_is_answered_for_an_allowed_origin_only(web):
    allowed = web.options("/storefront/cart", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == SHOP
    assert allowed.headers["Access-Control-Allow-Headers"] == "Content-Type" and allowed.headers["Vary"] == "Origin"
    for origin in ("https://evil.test", "null", "https://shop.test.evil.test", "http://shop.test"):
        refused = web.options("/storefront/cart", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert refused.status_code == 403, origin
        assert "Access-Control-Allow-Origin" not in refused.headers


@pytest.mark.parametrize("origin", [None, "", "https://evil.test", "null", "https://shop.test:8443", "javascript:alert(1)"])
def test_a_post_from_another_or_no_origin_is_refused_without_a_cors_grant(web, shop_settings, origin):
    response = post(web, claim(), origin=origin)
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "error" in response.get_json()
    assert stored(shop_settings) is None


def test_unknown_and_uninstalled_stores_get_404(web, shop_settings):
    assert post(web, claim(store_hash="nosuchstore")).status_code == 404
    install_store(shop_settings, "appstore1")
    hear_of(web, 1042, "appstore1")
    assert post(web, claim(store_hash="appstore1")).status_code == 202
    db = connect(shop_settings.database.path)
    try:
        with immediate(db):
            StoreRegistry(shop_settings).uninstall(db, store_hash="appstore1", now=time.time())
    finally:
        db.close()
    response = post(web, claim(order_id=7, store_hash="appstore1"))
    assert response.status_code == 404 and "appstore1" in response.get_json()["error"]
    assert stored(shop_settings, 7, "appstore1") is None


def test_an_order_whose_report_is_built_gets_409_and_nothing_is_stored(web, shop_settings):
    db = connect(shop_settings.database.path)
    try:
        queue_delivery(db, 1042, time.time())
    finally:
        db.close()
    response = post(web, claim())
    assert response.status_code == 409
    assert response.get_json()["error"] == "Order 1042 is already reported: nothing changes."
    assert stored(shop_settings) is None


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        ("{not json", "application/json", 400, "not valid JSON"),
        (b"\xff\xfe", "application/json", 400, "not valid JSON"),
        ("[1, 2]", "application/json", 400, "JSON object"),
        ("[" * 5000 + "]" * 5000, "application/json", 413, "over"),
        ("[" * 400 + "]" * 400, "application/json", 400, "JSON object"),
        (claim(order_id="1042"), "application/json", 400, "order_id"),
        (claim(order_id=True), "application/json", 400, "order_id"),
        (claim(order_id=10.5), "application/json", 400, "order_id"),
        (claim(order_id=0), "application/json", 400, "order_id"),
        (claim(order_id=2**31), "application/json", 400, "order_id"),
        (claim(cart_id=123), "application/json", 400, "cart_id"),
        (claim(cart_id=None), "application/json", 400, "cart_id"),
        (claim(cart_id="not-a-uuid"), "application/json", 400, "cart_id"),
        (claim(cart_id=CART + "0"), "application/json", 400, "cart_id"),
        (claim(cart_id="x" * 300), "application/json", 400, "cart_id"),
        (claim(store_hash="abc/../x"), "application/json", 400, "store_hash"),
        ({**claim(), "affiliate_id": 9}, "application/json", 400, "affiliate_id"),
        ({"store_hash": STORE_HASH, "order_id": 1042}, "application/json", 400, "cart_id"),
        ({**claim(), "pad": "x" * MAX_BODY_BYTES}, "application/json", 413, "over 1024 bytes"),
        (claim(), "text/plain", 415, "must be JSON"),
        ("store_hash=abc123", "application/x-www-form-urlencoded", 415, "must be JSON"),
    ],
)
def test_bad_bodies_get_a_clear_4xx_and_nothing_is_stored(web, shop_settings, body, content_type, status, words):
    response = post(web, body, content_type=content_type)
    assert response.status_code == status, response.get_json()
    assert words in response.get_json()["error"]
    assert response.headers["Access-Control-Allow-Origin"] == SHOP  # the page's own script may read why
    assert stored(shop_settings) is None


def test_a_flood_from_one_address_gets_429_with_retry_after_and_other_addresses_are_unaffected(web):
    answers = [post(web, claim(order_id=n), ip="198.51.100.1").status_code for n in range(1, 11)]
    assert answers == [202] * 10
    flooded = post(web, claim(order_id=11), ip="198.51.100.1")
    assert flooded.status_code == 429
    assert 1 <= int(flooded.headers["Retry-After"]) <= 60
    assert "Too many requests" in flooded.get_json()["error"]
    assert post(web, claim(order_id=12), ip="198.51.100.2").status_code == 202
    # X-Forwarded-For is the client's word unless a trusted proxy wrote it: it does not open a new bucket.
    spoofed = post(web, claim(order_id=13), ip="198.51.100.1", headers={"X-Forwarded-For": "192.0.2.99"})
    assert spoofed.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_address_is_limited(make_settings):
    web = create_app(make_settings(storefront_allowed_origins=SHOP, storefront_trusted_proxies="1")).test_client()
    hear_of(web, 1042)
    proxy = "10.0.0.5"
    for n in range(10):
        assert post(web, claim(order_id=n + 1), ip=proxy, headers={"X-Forwarded-For": "1.1.1.1, 192.0.2.10"}).status_code == 202
    assert post(web, claim(order_id=20), ip=proxy, headers={"X-Forwarded-For": "192.0.2.10"}).status_code == 429
    assert post(web, claim(order_id=21), ip=proxy, headers={"X-Forwarded-For": "192.0.2.11"}).status_code == 202


def test_until_the_store_domains_are_known_posts_are_refused_naming_the_fix(make_settings):
    settings = make_settings()  # no storefront.allowed_origins: the store's domains, read by the worker
    web = create_app(settings).test_client()
    hear_of(web, 1042)
    response = post(web, claim(), origin="https://abc123.sandbox.example")
    assert response.status_code == 403
    assert "storefront.allowed_origins" in response.get_json()["error"] and "first read" in response.get_json()["error"]
    db = connect(settings.database.path)
    try:
        with immediate(db):
            storefront.record_origins(db, store_hash=STORE_HASH, origins=["https://abc123.sandbox.example"], now=time.time())
            storefront.record_origins(db, store_hash="otherstore", origins=["https://other.test"], now=time.time())
    finally:
        db.close()
    assert post(web, claim(), origin="https://abc123.sandbox.example").status_code == 202
    # Another store's origin passes the preflight (it names no store) but may not post for this store.
    assert web.options("/storefront/cart", headers={"Origin": "https://other.test"}).status_code == 204
    refused = post(web, claim(order_id=5), origin="https://other.test")
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers
