"""The status page in real Chromium, framed by a page of another site, as the BigCommerce
control panel frames it: sign in inside the frame, see the orders, read an order's story,
retry a dead delivery and see it re-queued, then sent.

The bridge is served over HTTPS (its session cookie is Secure) with a throwaway
self-signed certificate; the parent page is ``https://store-abc.mybigcommerce.com`` (mapped
to 127.0.0.1 by Chromium's host resolver rules), a different site from
``https://127.0.0.1``, so the session cookie only works when it is
``SameSite=None; Secure; Partitioned``.

Set ``BRIDGE_UPDATE_SCREENSHOT=1`` to also write ``docs/status-page.png`` for the README.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bridge.web.app import create_app
from tests.browser.framing import PARENT_HOST, chromium_in_a_frame, free_port, open_control_panel
from tests.conftest import STORE_HASH
from tests.web import status_data
from tests.web.test_pages import ADMIN_TOKEN, SECRETS, SESSION_SECRET

pytestmark = pytest.mark.browser

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"


def test_sign_in_read_and_retry_inside_a_cross_site_frame(tmp_path, make_settings, make_worker, clock, bigcommerce, refersion, certificate):
    parent_port = free_port(443)
    parent_origin = f"https://{PARENT_HOST}" + ("" if parent_port == 443 else f":{parent_port}")
    extra = {} if parent_port == 443 else {"server_frame_ancestors": parent_origin}  # CSP host sources without a port mean 443
    settings = make_settings(server_admin_token=ADMIN_TOKEN, server_session_secret=SESSION_SECRET, **extra)
    app = create_app(settings)
    worker = make_worker(settings)
    ids = status_data.month(
        app.test_client(), worker, clock, bigcommerce, refersion, make_worker(make_settings(rules_dry_run="true", **extra))
    )
    with chromium_in_a_frame(app, certificate, parent_port) as (browser, bridge_url):
        _drive(browser, tmp_path, parent_origin, bridge_url, ids, worker, clock)


def _drive(browser, tmp_path, parent_origin, bridge_url, ids, worker, clock):
    context, page, frame, console = open_control_panel(browser, parent_origin)

    # Sign in inside the frame: the Partitioned session cookie must come back on the next request.
    frame.locator("#token").fill(ADMIN_TOKEN)
    frame.get_by_role("button", name="Sign in").click()
    frame.locator("table.orders").wait_for()
    (bridge_frame,) = [f for f in page.frames if f.url.startswith(bridge_url)]
    assert bridge_frame.url == f"{bridge_url}/"
    cookies = context.cookies(bridge_url)
    assert [(c["secure"], c["sameSite"]) for c in cookies] == [(True, "None")]

    # The orders table, with every decision.
    dead_row = frame.locator(f'tr[data-order="{ids["dead"]}"]')
    assert dead_row.locator(".badge").inner_text() == "Dead"
    assert "Missing required field: items" in dead_row.inner_text()
    for name, badge in (("reported", "Reported"), ("free", "Skipped"), ("retrying", "Retrying"), ("dry_run", "Dry run")):
        assert frame.locator(f'tr[data-order="{ids[name]}"] .badge').inner_text() == badge
    assert frame.locator("svg.chart rect.bar-reported").count() > 10
    html = bridge_frame.content()
    assert not any(secret in html for secret in SECRETS)
    page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
    if os.environ.get("BRIDGE_UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)

    # Search an order and read its story.
    frame.locator("#order-search").fill(f"#{ids['dead']}")
    frame.get_by_role("button", name="Show its story").click()
    frame.get_by_role("heading", name=f"Order #{ids['dead']}").wait_for()
    assert bridge_frame.url == f"{bridge_url}/orders/{ids['dead']}"
    story = frame.locator("main").inner_text()
    assert "Deliveries to Refersion" in story and "HTTP 400" in story and "Missing required field: items" in story
    assert "store/order/statusUpdated" in story

    # Retry the dead delivery: re-queued, then sent by the worker.
    frame.get_by_role("button", name=f"Retry order {ids['dead']}").click()
    frame.locator(".flash-ok").wait_for()
    assert f"Order #{ids['dead']}: re-queued 1 delivery" in frame.locator(".flash-ok").inner_text()
    assert frame.locator(".story-head .badge").inner_text() == "Waiting"
    page.screenshot(path=str(tmp_path / "order-retried.png"), full_page=True)
    clock.now = max(clock.now, time.time()) + 1  # the retry was stamped with the real time, however long the browser took
    worker.run_until_idle()
    bridge_frame.goto(f"{bridge_url}/orders/{ids['dead']}?store={STORE_HASH}")
    assert frame.locator(".story-head .badge").inner_text() == "Reported"

    # A phone: the frame 390 px wide; nothing but the orders table scrolls sideways.
    page.set_viewport_size({"width": 565, "height": 1500})
    bridge_frame.goto(f"{bridge_url}/")
    frame.locator("table.orders").wait_for()
    page.screenshot(path=str(tmp_path / "status-page-phone.png"), full_page=True)
    wide = bridge_frame.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1"
        " && !e.closest('.table-scroll')).map(e => e.tagName + '.' + e.className)"
    )
    assert wide == []
    assert bridge_frame.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert bridge_frame.evaluate("(() => { const s = document.querySelector('.table-scroll'); return s.scrollWidth > s.clientWidth; })()")
    assert [text for text in console if "Content Security Policy" in text] == []
    context.close()
