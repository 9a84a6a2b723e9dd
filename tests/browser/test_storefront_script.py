"""The storefront script in real Chromium, on a fake BigCommerce order confirmation page of
another origin (``https://store-abc.mybigcommerce.com``, mapped to 127.0.0.1) with a fake
storefront order API and a fake Refersion tracker: it calls the tracker exactly once and posts
the cart id exactly once, also after a reload; a v4 tracker that loads late is waited for; a
page without any tracker still posts.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time

import pytest

from bridge.storage import storefront
from bridge.storage.db import connect
from bridge.web.app import create_app
from tests.browser.framing import CHROMIUM, CHROMIUM_FLAGS, PARENT_HOST, Served, browser_or_skip
from tests.conftest import STORE_HASH, post_webhook, status_updated

pytestmark = pytest.mark.browser

CART = "9f0c2d1e-3b4a-4c5d-8e6f-7a8b9c0d1e2f"

TRACKERS = {
    # Refersion's v4 tracker: r.sendCheckoutEvent(cart_id, rfsn_v4_id, location.href, rfsn_v4_aid, rfsn_v4_cs).
    "v4": """window.r = {sendCheckoutEvent: function () { record("v4", Array.prototype.slice.call(arguments)); }};""",
    # The same, loaded asynchronously: it appears later and announces itself with "refersion-loaded".
    "v4-late": """setTimeout(function () {
        window.r = {sendCheckoutEvent: function () { record("v4", Array.prototype.slice.call(arguments)); }};
        document.dispatchEvent(new Event("refersion-loaded"));
      }, 400);""",
    # The legacy v3 tracker: _refersion(callback) runs the callback once _rfsn is ready.
    "v3": """window._rfsn = {_addCart: function (id) { record("v3", [id]); }};
      window._refersion = function (callback) { if (callback) callback(); };""",
    "none": "",
}


class Storefront:
    """The store's confirmation pages, its storefront order API and a recorder of tracker calls."""

    def __init__(self, bridge_url: str):
        self.bridge_url = bridge_url
        self.tracker_calls: list[dict] = []
        self.order_reads: list[int] = []
        self.lock = threading.Lock()

    def page(self, order_id: int, tracker: str) -> str:
        return f"""<!doctype html><html><head><meta charset="utf-8"><title>Thank you</title>
<script>
  localStorage.setItem("rfsn_v4_id", "visit-77"); localStorage.setItem("rfsn_v4_aid", "8908369");
  localStorage.setItem("rfsn_v4_cs", "4f153d");
  function record(kind, args) {{
    fetch("/tracker-calls", {{method: "POST", body: JSON.stringify({{kind: kind, args: args}})}});
  }}
  {TRACKERS[tracker]}
</script></head><body><h1>Thank you for your order #{order_id}</h1>
<script src="{self.bridge_url}/storefront/refersion-cart.js" data-store-hash="{STORE_HASH}" data-order-id="{order_id}" async></script>
</body></html>"""

    def __call__(self, environ, start_response):
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        confirmation = re.fullmatch(r"/checkout/order-confirmation/([0-9]+)", path)
        order = re.fullmatch(r"/api/storefront/orders/([0-9]+)", path)
        if confirmation:
            tracker = environ.get("QUERY_STRING", "").removeprefix("tracker=")
            return self._answer(start_response, "200 OK", "text/html", self.page(int(confirmation[1]), tracker))
        if order and method == "GET":
            with self.lock:
                self.order_reads.append(int(order[1]))
            body = {"orderId": int(order[1]), "cartId": CART, "currency": {"code": "USD"}, "isComplete": True}
            return self._answer(start_response, "200 OK", "application/json", json.dumps(body))
        if path == "/tracker-calls" and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            with self.lock:
                self.tracker_calls.append(json.loads(environ["wsgi.input"].read(length)))
            return self._answer(start_response, "204 No Content", "text/plain", "")
        return self._answer(start_response, "404 Not Found", "text/plain", "not found")

    @staticmethod
    def _answer(start_response, status: str, content_type: str, body: str):
        start_response(status, [("Content-Type", content_type), ("Cache-Control", "no-store")])
        return [body.encode()]


class CountingPosts:
    """The bridge, counting the cart-id posts that reach it (by order id)."""

    def __init__(self, app):
        self.app = app
        self.posts: list[dict] = []
        self.unavailable = 0  # answer this many posts with 503, as a bridge being restarted would

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] == "/storefront/cart" and environ["REQUEST_METHOD"] == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            self.posts.append({"origin": environ.get("HTTP_ORIGIN"), **json.loads(body or b"{}")})
            if self.unavailable:
                self.unavailable -= 1
                start_response("503 Service Unavailable", [("Access-Control-Allow-Origin", environ["HTTP_ORIGIN"]), ("Vary", "Origin")])
                return [b'{"error": "restarting"}']
        return self.app(environ, start_response)


def wait_for(page, predicate, timeout: float = 8.0):
    """Poll ``predicate``; the page's events (console lines) are delivered only while Playwright runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        page.wait_for_timeout(50)
    raise AssertionError("timed out waiting")


@pytest.fixture(scope="module")
def browser():
    sync_playwright = browser_or_skip()
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=15_000)
        except Exception as error:
            pytest.skip(f"BROWSER TEST NOT RUN: Chromium at {CHROMIUM} would not start: {error}")
        yield launched
        launched.close()


@pytest.fixture
def site(browser, certificate, make_settings):
    """(bridge counter, storefront, the storefront's origin, a page, its console, the settings)."""
    shop = Served(lambda environ, start_response: store(environ, start_response), certificate)
    shop_origin = f"https://{PARENT_HOST}:{shop.port}"
    settings = make_settings(storefront_allowed_origins=shop_origin)
    app = create_app(settings)
    # BigCommerce told the bridge of order 100, so the next orders' confirmation pages may post.
    assert post_webhook(app.test_client(), status_updated(100, 11)).status_code == 200
    bridge = CountingPosts(app)
    served = Served(bridge, certificate)
    store = Storefront(f"https://127.0.0.1:{served.port}")
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(8_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        yield bridge, store, shop_origin, page, console, settings
    finally:
        context.close()
        served.stop()
        shop.stop()


def claim_of(settings, order_id: int):
    db = connect(settings.database.path)
    try:
        return storefront.find_claim(db, store_hash=STORE_HASH, order_id=order_id)
    finally:
        db.close()


def visit_twice(page, console, url: str, order_id: int, *, until: str):
    page.goto(url)
    wait_for(page, lambda: any(until in line for line in console))
    page.reload()
    wait_for(page, lambda: any(f"already done for order {order_id}" in line or f"already posted to the bridge for order {order_id}" in line
                         for line in console))  # fmt: skip


@pytest.mark.parametrize(("tracker", "order_id"), [("v4", 101), ("v4-late", 102), ("v3", 103)])
def test_the_script_hands_the_cart_id_to_the_tracker_once_and_posts_it_once(site, tracker, order_id):
    bridge, store, shop_origin, page, console, settings = site
    url = f"{shop_origin}/checkout/order-confirmation/{order_id}?tracker={tracker}"
    visit_twice(page, console, url, order_id, until="handed to Refersion's")
    wait_for(page, lambda: len(store.tracker_calls) >= 1 and claim_of(settings, order_id) is not None)
    page.wait_for_timeout(200)  # anything sent twice would have arrived by now
    kind = "v3" if tracker == "v3" else "v4"
    assert [call["kind"] for call in store.tracker_calls] == [kind]
    args = store.tracker_calls[0]["args"]
    if kind == "v4":
        assert args == [CART, "visit-77", url, "8908369", "4f153d"]
    else:
        assert args == [CART]
    assert bridge.posts == [{"origin": shop_origin, "store_hash": STORE_HASH, "order_id": order_id, "cart_id": CART}]
    assert claim_of(settings, order_id)["cart_id"] == CART
    assert store.order_reads == [order_id]  # the reload did not even read the order again
    assert not [line for line in console if "failed" in line or "stopped" in line]


def test_without_any_tracker_the_cart_id_is_still_posted_once(site):
    bridge, store, shop_origin, page, console, settings = site
    url = f"{shop_origin}/checkout/order-confirmation/104?tracker=none"
    visit_twice(page, console, url, 104, until="bridge answered HTTP 202")
    assert [post["order_id"] for post in bridge.posts] == [104]
    assert store.tracker_calls == []
    assert claim_of(settings, 104)["cart_id"] == CART


def test_a_post_the_bridge_could_not_take_is_sent_again_on_the_next_visit_and_the_tracker_is_not_called_again(site):
    bridge, store, shop_origin, page, console, settings = site
    bridge.unavailable = 1
    page.goto(f"{shop_origin}/checkout/order-confirmation/105?tracker=v4")
    wait_for(page, lambda: any("posting to the bridge failed" in line for line in console) and len(store.tracker_calls) == 1)
    assert claim_of(settings, 105) is None
    page.reload()
    wait_for(page, lambda: any("bridge answered HTTP 202" in line for line in console))
    assert any("already handed to Refersion's tracker for order 105" in line for line in console)
    page.wait_for_timeout(200)
    assert [post["order_id"] for post in bridge.posts] == [105, 105]
    assert len(store.tracker_calls) == 1
    assert claim_of(settings, 105)["cart_id"] == CART
