"""What the browser tests share: Chromium driven by Playwright, and the bridge served over
HTTPS inside a page of another site (the "control panel") that frames it.

The parent page is ``https://store-abc.mybigcommerce.com`` (mapped to 127.0.0.1 by
Chromium's host resolver rules), a different site from ``https://127.0.0.1``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from werkzeug.serving import make_server

PARENT_HOST = "store-abc.mybigcommerce.com"
CHROMIUM = os.environ.get("BRIDGE_CHROMIUM", "/usr/bin/chromium")
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


def browser_or_skip():
    """Playwright's sync API, or a loud skip saying why the browser cannot run here."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"BROWSER TEST NOT RUN: no Chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver; .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:  # pragma: no cover - the test extra installs it
        pytest.skip(f"BROWSER TEST NOT RUN: Playwright is not installed ({error}); pip install -e '.[test]'")
    return sync_playwright


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


def parent_page(bridge_url: str, path: str = "/login"):
    """The "control panel": a page of another site that frames the bridge at ``path``."""
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>Store control panel</title>
<style>body{{margin:0;font:14px system-ui,sans-serif;background:#f6f7f9}}
header{{height:48px;background:#313440;color:#fff;display:flex;align-items:center;padding:0 16px;font-weight:600}}
nav{{position:absolute;top:48px;left:0;width:150px;bottom:0;background:#fff;border-right:1px solid #d9dce9;
padding:12px;color:#5e637a;line-height:2}}
iframe{{position:absolute;top:48px;left:175px;width:calc(100% - 175px);height:1480px;border:0}}</style></head>
<body><header>store-abc · Control panel › Apps › Refersion bridge</header>
<nav>Home<br>Orders<br>Products<br>Customers<br>Storefront<br>Marketing<br>Analytics<br><b>Apps</b><br>Settings</nav>
<iframe id="bridge" title="Refersion bridge" src="{bridge_url}{path}"></iframe></body></html>"""

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [html.encode()]

    return app


def free_port(preferred: int) -> int:
    """``preferred`` (443, the control panel's own port, so its CSP rule applies as is) when it can be bound,
    else (or for 0) a free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_certificate(folder: Path) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1 and the parent's name, in ``folder``."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", f"subjectAltName=IP:127.0.0.1,DNS:{PARENT_HOST}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@contextmanager
def chromium_in_a_frame(app, certificate, parent_port: int, path: str = "/login") -> Iterator[tuple[object, str]]:
    """Serve ``app`` and a parent page on ``parent_port`` framing it at ``path``; yield a launched
    Chromium and the bridge's URL (skips loudly when Chromium or Playwright is missing)."""
    sync_playwright = browser_or_skip()
    bridge = Served(app, certificate)
    bridge_url = f"https://127.0.0.1:{bridge.port}"
    parent = Served(parent_page(bridge_url, path), certificate, port=parent_port)
    try:
        with sync_playwright() as playwright:
            try:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, timeout=15_000)
            except Exception as error:
                pytest.skip(f"BROWSER TEST NOT RUN: Chromium at {CHROMIUM} would not start: {error}")
            try:
                yield browser, bridge_url
            finally:
                browser.close()
    finally:
        parent.stop()
        bridge.stop()


def open_control_panel(browser, parent_origin: str):
    """The parent page in a fresh browser context: (context, page, the frame's locator, console messages).

    A style or script the CSP blocks shows only as a console message, so they are all collected.
    """
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1360, "height": 1528})
    page = context.new_page()
    page.set_default_timeout(8_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"{parent_origin}/")
    return context, page, page.frame_locator("#bridge"), console
