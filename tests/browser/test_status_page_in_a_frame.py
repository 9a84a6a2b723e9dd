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
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from bridge.web.app import create_app
from tests.conftest import STORE_HASH
from tests.web import status_data
from tests.web.test_pages import ADMIN_TOKEN, SECRETS, SESSION_SECRET

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("BRIDGE_CHROMIUM", "/usr/bin/chromium")
PARENT_HOST = "store-abc.mybigcommerce.com"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
    "--host-resolver-rules=MAP *.mybigcommerce.com 127.0.0.1",
]


def _browser_or_skip():
    """Playwright's sync API, or a loud skip saying why the browser cannot run here."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"BROWSER TEST NOT RUN: no Chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:  # pragma: no cover - the test extra installs it
        pytest.skip(f"BROWSER TEST NOT RUN: Playwright is not installed ({error}); pip install -e '.[test]'")
    return sync_playwright


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 and the parent's name."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", f"subjectAltName=IP:127.0.0.1,DNS:{PARENT_HOST}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


class Served:
    """A WSGI app on a real HTTPS port, in a thread."""

    def __init__(self, app, certificate, port: int = 0):
        self.server = make_server("127.0.0.1", port, app, threaded=True, ssl_context=certificate)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parent_page(bridge_url: str):
    """The "control panel": a page of another site that frames the bridge."""
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>Store control panel</title>
<style>body{{margin:0;font:14px system-ui,sans-serif;background:#f6f7f9}}
header{{height:48px;background:#313440;color:#fff;display:flex;align-items:center;padding:0 16px;font-weight:600}}
nav{{position:absolute;top:48px;left:0;width:150px;bottom:0;background:#fff;border-right:1px solid #d9dce9;
padding:12px;color:#5e637a;line-height:2}}
iframe{{position:absolute;top:48px;left:175px;width:calc(100% - 175px);height:1480px;border:0}}</style></head>
<body><header>store-abc · Control panel › Apps › Refersion bridge</header>
<nav>Home<br>Orders<br>Products<br>Customers<br>Storefront<br>Marketing<br>Analytics<br><b>Apps</b><br>Settings</nav>
<iframe id="bridge" title="Refersion bridge" src="{bridge_url}/login"></iframe></body></html>"""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [html.encode()]

    return app


def _free_port(preferred: int) -> int:
    """``preferred`` (443, the control panel's own port, so its CSP rule applies as is) when it can be bound."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]


def test_sign_in_read_and_retry_inside_a_cross_site_frame(tmp_path, make_settings, make_worker, clock, bigcommerce, refersion, certificate):
    sync_playwright = _browser_or_skip()
    parent_port = _free_port(443)
    parent_origin = f"https://{PARENT_HOST}" + ("" if parent_port == 443 else f":{parent_port}")
    extra = {} if parent_port == 443 else {"server_frame_ancestors": parent_origin}  # CSP host sources without a port mean 443
    settings = make_settings(server_admin_token=ADMIN_TOKEN, server_session_secret=SESSION_SECRET, **extra)
    app = create_app(settings)
    worker = make_worker(settings)
    ids = status_data.month(
        app.test_client(), worker, clock, bigcommerce, refersion, make_worker(make_settings(rules_dry_run="true", **extra))
    )
    bridge = Served(app, certificate)
    bridge_url = f"https://127.0.0.1:{bridge.port}"
    parent = Served(parent_page(bridge_url), certificate, port=parent_port)
    try:
        with sync_playwright() as playwright:
            try:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=15_000)
            except Exception as error:
                pytest.skip(f"BROWSER TEST NOT RUN: Chromium at {CHROMIUM} would not start: {error}")
            try:
                _drive(browser, tmp_path, parent_origin, bridge_url, ids, worker, clock)
            finally:
                browser.close()
    finally:
        parent.stop()
        bridge.stop()


def _drive(browser, tmp_path, parent_origin, bridge_url, ids, worker, clock):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1360, "height": 1528})
    page = context.new_page()
    page.set_default_timeout(8_000)
    # A style or script the CSP blocks shows only as a console message: collect them all.
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"{parent_origin}/")
    frame = page.frame_locator("#bridge")

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
    # The web re-queued it at the real time; the worker's clock may have fallen behind that.
    clock.now = max(clock.now, time.time()) + 1
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
