"""The storefront's cart id through the worker: used only when it names one of the order's own
carts, shown in the order's story either way; and the chore that reads each store's domains."""

from __future__ import annotations

import html
import json

import pytest

from bridge.storage import storefront
from bridge.storage.history import order_story, storefront_script_health
from bridge.web.app import create_app
from tests.conftest import STORE_HASH, envelope, post_webhook, status_updated
from tests.fakes import load_fixture

SHOP = "https://shop.test"
ORDER_CART = "d30016e2-23c0-4a90-884f-2e92ac135476"  # the fixture order's own cart_id
CONVERTED_CART = "5e1c0a77-aaaa-4bbb-8ccc-0123456789ab"
FORGED_CART = "66666666-7777-4888-8999-aaaaaaaaaaaa"


@pytest.fixture
def shop(make_settings, make_worker):
    settings = make_settings(storefront_allowed_origins=SHOP)
    app = create_app(settings)
    return app.test_client(), make_worker(settings)


def claim(web, order_id: int, cart_id: str):
    """The storefront script's post; the bridge has heard of the order before (an earlier order's webhook)."""
    post_webhook(web, envelope("store/order/created", {"type": "order", "id": order_id - 1}))
    body = {"store_hash": STORE_HASH, "order_id": order_id, "cart_id": cart_id}
    return web.post("/storefront/cart", json=body, headers={"Origin": SHOP})


def story(db, order_id):
    return order_story(db, store_hash=STORE_HASH, order_id=order_id)


def test_a_claim_naming_the_orders_cart_is_used_and_marked_confirmed(shop, bigcommerce, refersion, db):
    web, worker = shop
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    assert claim(web, order_id, ORDER_CART.upper()).status_code == 202
    post_webhook(web, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.received[0].body["cart_id"] == ORDER_CART
    told = story(db, order_id)
    assert told["cart_id_source"] == "storefront"
    assert told["storefront"]["matched"] is True
    assert told["storefront"]["text"] == "Cart id confirmed by the storefront script."
    assert storefront.find_claim(db, store_hash=STORE_HASH, order_id=order_id)["matched"] == 1


def test_the_storefront_picks_which_of_two_server_known_carts_is_reported(shop, bigcommerce, refersion, db):
    web, worker = shop
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(web, envelope("store/cart/converted", {"type": "cart", "id": CONVERTED_CART, "orderId": order_id}))
    claim(web, order_id, ORDER_CART)  # the cart the browser had: the one Refersion's tracker was told
    post_webhook(web, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.received[0].body["cart_id"] == ORDER_CART


def test_a_forged_claim_for_another_order_is_ignored_and_the_order_keeps_its_own_cart(shop, bigcommerce, refersion, db, caplog):
    web, worker = shop
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    assert claim(web, order_id, FORGED_CART).status_code == 202  # the forger's own cart, carrying their click
    post_webhook(web, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.received[0].body["cart_id"] == ORDER_CART
    told = story(db, order_id)
    assert told["cart_id_source"] == "order"
    assert (told["storefront"]["matched"], told["storefront"]["cart_id"]) == (False, FORGED_CART)
    assert told["storefront"]["text"] == "The storefront reported a cart id that does not match the order's cart: ignored."
    assert "does not match" in caplog.text
    # Nor can it be attached afterwards: the report is built.
    assert claim(web, order_id, ORDER_CART).status_code == 409


def test_a_forger_who_pre_claims_an_order_neither_blocks_nor_spoils_the_shoppers_claim(shop, bigcommerce, refersion, db):
    web, worker = shop
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    assert claim(web, order_id, FORGED_CART).status_code == 202  # the next order, before its shopper
    far = {"store_hash": STORE_HASH, "order_id": order_id + 500, "cart_id": FORGED_CART}
    assert web.post("/storefront/cart", json=far, headers={"Origin": SHOP}).status_code == 404  # far ahead: not taken
    assert claim(web, order_id, ORDER_CART).status_code == 202  # the shopper's own page
    post_webhook(web, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.received[0].body["cart_id"] == ORDER_CART
    told = story(db, order_id)
    assert told["cart_id_source"] == "storefront"
    assert (told["storefront"]["matched"], told["storefront"]["cart_id"]) == (True, ORDER_CART)
    assert told["storefront"]["text"] == "Cart id confirmed by the storefront script."
    checked = {row["cart_id"]: row["matched"] for row in storefront.find_claims(db, store_hash=STORE_HASH, order_id=order_id)}
    assert checked == {FORGED_CART: 0, ORDER_CART: 1}


def test_an_order_without_a_server_known_cart_ignores_any_claim(shop, bigcommerce, refersion, db):
    web, worker = shop
    order_id = bigcommerce.add(load_fixture("manual_discount"), cart_id=None)
    claim(web, order_id, FORGED_CART)
    post_webhook(web, status_updated(order_id, 11))
    worker.run_until_idle()
    sent = refersion.received[0].body["cart_id"]
    assert sent != FORGED_CART and sent.startswith("bcnocart-")
    assert story(db, order_id)["storefront"]["matched"] is False


def test_a_reported_order_the_script_never_posted_for_says_so(shop, bigcommerce, refersion, db):
    web, worker = shop
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    pending = bigcommerce.add(load_fixture("manual_discount"), id=order_id + 1, status_id=1, payment_status="pending")
    post_webhook(web, status_updated(order_id, 11))
    post_webhook(web, status_updated(pending, 1))
    worker.run_until_idle()
    assert story(db, order_id)["storefront"] == {
        "reported": False,
        "cart_id": None,
        "origin": None,
        "claimed_at": None,
        "matched": None,
        "text": "The storefront script did not report this order: check Script Manager.",
    }
    assert story(db, pending)["storefront"]["text"] is None  # not reportable yet: nothing to say


def test_the_status_page_and_story_show_the_storefront_script(shop, bigcommerce, refersion, db, make_settings):
    web, worker = shop
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    claim(web, order_id, ORDER_CART)
    post_webhook(web, status_updated(order_id, 11))
    worker.run_until_idle()
    health = storefront_script_health(db, STORE_HASH)
    assert health["last_report_at"] is not None and "Last reported an order's cart id" in health["detail"]
    assert json.dumps(story(db, order_id))  # plain JSON for /api/orders/<id>
    admin_token, session_secret = "adm-7f3c9b2e4d1a8f6c5b0e9d2a41c7", "ses-1b9e4c7a2f5d8e3b6a0c9f2d7e4b"
    settings = make_settings(storefront_allowed_origins=SHOP, server_admin_token=admin_token, server_session_secret=session_secret)
    page = create_app(settings).test_client()
    assert page.post("/login", data={"token": admin_token}).status_code in (302, 303)
    shown = html.unescape(page.get("/").get_data(as_text=True))
    assert "Storefront script" in shown and "Last reported an order's cart id" in shown
    assert "Cart id confirmed by the storefront script." in html.unescape(page.get(f"/orders/{order_id}").get_data(as_text=True))


def test_the_chore_reads_the_store_domains_daily_and_the_endpoint_then_accepts_them(make_settings, make_worker, clock, bigcommerce, db):
    settings = make_settings()  # no allowed_origins: the store's own domains
    worker = make_worker(settings)
    web = create_app(settings).test_client()
    origin = f"https://{STORE_HASH}.sandbox.example"
    body = {"store_hash": STORE_HASH, "order_id": 5, "cart_id": ORDER_CART}
    assert web.post("/storefront/cart", json=body, headers={"Origin": origin}).status_code == 403
    worker.run_until_idle()
    assert bigcommerce.recorded(r"/v2/store$") == []  # first run one interval after scheduling
    clock.advance(601)
    worker.run_until_idle()
    assert len(bigcommerce.recorded(r"/v2/store$")) == 1
    row = storefront.origins_row(db, STORE_HASH)
    assert row["origins"] == [origin, f"https://store-{STORE_HASH}.mybigcommerce.com"]
    post_webhook(web, envelope("store/order/created", {"type": "order", "id": 5}))
    assert web.post("/storefront/cart", json=body, headers={"Origin": origin}).status_code == 202
    clock.advance(601)
    worker.run_until_idle()
    assert len(bigcommerce.recorded(r"/v2/store$")) == 1  # read once a day, not at every look
    clock.advance(86_400)
    worker.run_until_idle()
    assert len(bigcommerce.recorded(r"/v2/store$")) == 2


def test_a_token_without_the_information_scope_is_told_the_fix_and_nothing_is_paused(make_settings, make_worker, clock, bigcommerce, db):
    token = "bc-token-orders-only-0123456789"
    bigcommerce.add_token(STORE_HASH, token, scopes=["store_v2_orders_read_only"])
    settings = make_settings(bigcommerce_access_token=token)
    worker = make_worker(settings)
    worker.run_until_idle()
    clock.advance(601)
    worker.run_until_idle()
    row = storefront.origins_row(db, STORE_HASH)
    assert row["origins"] == [] and "storefront.allowed_origins" in row["error"] and "Information & Settings" in row["error"]
    assert db.execute("SELECT count(*) FROM pauses").fetchone()[0] == 0
    assert storefront_script_health(db, STORE_HASH)["origins_problem"] == row["error"]


def test_with_configured_origins_the_chore_is_off(make_settings, make_worker, clock, bigcommerce):
    worker = make_worker(make_settings(storefront_allowed_origins=SHOP))
    worker.run_until_idle()
    clock.advance(86_400 * 2)
    worker.run_until_idle()
    assert bigcommerce.recorded(r"/v2/store$") == []
