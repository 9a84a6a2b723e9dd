"""The settings page in real Chromium, inside the cross-site frame the BigCommerce control
panel opens it in: a store's owner enters a key pair, saves, and sees the saved line and
the stored secret as ``sec_…last4`` only; at desktop and phone widths nothing overflows.

Set ``BRIDGE_UPDATE_SCREENSHOT=1`` to also write ``docs/settings-page.png`` for the README.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flask import redirect

from bridge.storage import pauses
from bridge.storage.db import immediate
from bridge.web.app import create_app
from bridge.web.auth import Viewer, start_session
from tests.browser.framing import PARENT_HOST, chromium_in_a_frame, free_port, open_control_panel
from tests.conftest import install_store
from tests.web.test_pages import ADMIN_TOKEN, SECRETS, SESSION_SECRET

pytestmark = pytest.mark.browser

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "settings-page.png"
STORE = "storea1"
USER = 41
PUBLIC_KEY = "pub_storea1_5d6e7f"
SECRET_KEY = "sec_storea1_k3y-0123456789wxyz"
OVERFLOWING = (
    "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
    ".map(e => e.tagName + '.' + e.className)"
)


def test_a_store_owner_saves_a_key_pair_inside_a_cross_site_frame(tmp_path, make_settings, db, certificate):
    parent_port = free_port(0)  # not 443: the status page's browser test may hold it (xdist)
    parent_origin = f"https://{PARENT_HOST}:{parent_port}"
    settings = make_settings(
        server_admin_token=ADMIN_TOKEN,
        server_session_secret=SESSION_SECRET,
        rules_excluded_coupons="HOLIDAY5,SITEWIDE",
        server_frame_ancestors=parent_origin,
    )
    install_store(settings, STORE, user_id=USER)
    with immediate(db):  # Refersion refused the default keys for this store: the page shows it
        reason = "Refersion refused the store's keys (HTTP 401): check the key pair on the settings page."
        pauses.pause(db, store_hash=STORE, service="refersion", fingerprint="0" * 16, reason=reason, now=1.0)
    app = create_app(settings)

    @app.get("/test-only/open-from-control-panel")
    def open_from_control_panel():  # what the load callback does: a session for this store's user
        start_session(Viewer(is_admin=False, stores=frozenset({STORE}), user_id=USER))
        return redirect("/settings", 303)

    with chromium_in_a_frame(app, certificate, parent_port, "/test-only/open-from-control-panel") as (browser, bridge_url):
        _drive(browser, tmp_path, parent_origin, bridge_url)
    assert pauses.pauses(db) == []  # the new pair resumed the store's reports


def _drive(browser, tmp_path, parent_origin, bridge_url):
    context, page, frame, console = open_control_panel(browser, parent_origin)
    frame.get_by_role("heading", name="Settings").wait_for()
    (bridge_frame,) = [f for f in page.frames if f.url.startswith(bridge_url)]
    assert bridge_frame.url == f"{bridge_url}/settings"
    assert "Paused" in frame.locator(".refersion-state").inner_text()
    assert frame.get_by_role("link", name="Settings").get_attribute("aria-current") == "page"

    frame.get_by_label("Public key").fill(PUBLIC_KEY)
    frame.get_by_label("Secret key").fill(SECRET_KEY)
    frame.get_by_label("This store's own list, below").check()
    frame.locator("#excluded_coupons").fill("HOLIDAY5\nSITEWIDE\nspring-sale")
    frame.get_by_role("button", name="Save settings").click()

    # The session cookie came back to the cross-site frame: the saved line is shown.
    saved = frame.locator(".flash-ok")
    saved.wait_for()
    assert bridge_frame.url == f"{bridge_url}/settings?store={STORE}"
    line = saved.inner_text()
    assert line.startswith(f"Saved. Refersion keys: public key {PUBLIC_KEY} with secret key sec_…wxyz")
    assert "the paused reports to Refersion are sent again now" in line
    assert "sec_…wxyz" in frame.locator(".now").inner_text()
    assert frame.get_by_label("Secret key").input_value() == ""
    assert frame.get_by_label("Public key").input_value() == PUBLIC_KEY
    html = bridge_frame.content()
    assert SECRET_KEY not in html and SECRET_KEY[:-4] not in html
    assert not any(secret in html for secret in SECRETS)

    assert bridge_frame.evaluate(OVERFLOWING) == []
    page.screenshot(path=str(tmp_path / "settings-page.png"), full_page=True)
    if os.environ.get("BRIDGE_UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)

    # A phone: the frame 375 px wide; nothing scrolls sideways, the inputs fit.
    page.set_viewport_size({"width": 550, "height": 1500})
    bridge_frame.goto(f"{bridge_url}/settings")
    frame.get_by_role("heading", name="Settings").wait_for()
    assert bridge_frame.evaluate("window.innerWidth") == 375
    page.screenshot(path=str(tmp_path / "settings-page-phone.png"), full_page=True)
    assert bridge_frame.evaluate(OVERFLOWING) == []
    assert bridge_frame.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert [text for text in console if "Content Security Policy" in text] == []
    context.close()
