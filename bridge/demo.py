"""``bridge demo``: the whole bridge on this machine, against the sandbox, with sample orders.

Everything runs in this one process: the sandbox BigCommerce and Refersion, the web app
(werkzeug's threaded server) and the worker (a thread), on a fresh temporary database and
settings built in memory with random secrets. The sample orders reach the bridge the way real
ones do: the sandbox store fires its webhooks at the running web app, and the worker reads
each order back from the sandbox and reports it to the sandbox Refersion.
"""

from __future__ import annotations

import json
import logging
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from bridge.config import load_settings
from bridge.sandbox import Sandbox
from bridge.storage import db as database
from bridge.storage.inbox import CART_CONVERTED, ORDER_SCOPES
from bridge.web.app import create_app
from bridge.web.auth import ONE_TIME_CODES
from bridge.web.refersion_hooks import signature
from bridge.worker.loop import Worker

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
STATUS_UPDATED = "store/order/statusUpdated"
MUG = {"sku": "MUG-01", "name": "Enamel mug", "qty": 2, "price": "12.50"}
GIFT_CERTIFICATE = {"sku": "GIFT-50", "name": "$50 gift certificate", "qty": 1, "price": "50.00", "type": "giftcertificate"}

# The sample orders, one per outcome.
REPORTED, FREE, CANCELLED, DECLINED, GIFT_CARD, MARKETPLACE = 101, 102, 103, 104, 105, 106
PENDING, RETRIED, REFUSED, NO_CART_ID = 107, 108, 109, 110
SPARE = 120  # in the store, never announced: for "try this next"
PAYMENT_DELAY = 4.0  # seconds before the pending order's payment is captured
STEP_TIMEOUT = 10.0  # seconds to wait for Refersion to see each failing order
DEMO_PROMOTION = 1  # the sandbox's first promotion: the coupon template's promotion_id


def _secret() -> str:
    return secrets.token_hex(24)


class _QuietHandler(WSGIRequestHandler):
    """No access log: the terminal keeps the demo's own lines."""

    def log_request(self, *args, **kwargs) -> None:
        pass


class Demo:
    """The sandbox, the web app and the worker, started together and stopped together."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.stop_event = threading.Event()
        self.login_code = secrets.token_urlsafe(32)
        self._workdir = tempfile.TemporaryDirectory(prefix="bridge-demo-")
        self.config_path = Path(self._workdir.name) / "bridge.toml"
        self.sandbox = Sandbox(
            access_token=_secret(), public_key=f"pub_demo_{secrets.token_hex(6)}", secret_key=_secret(), require_https_destinations=False
        )
        self._server = None
        self._threads: list[threading.Thread] = []

    # --- Start and stop -------------------------------------------------------------------------

    def start(self) -> Demo:
        """Start everything; the web app listens on ``port`` when this returns."""
        try:
            self.sandbox.start()
            self.settings = load_settings(None, environ=self._environ())
            database.connect(self.settings.database.path).close()
            app = create_app(self.settings)
            app.config[ONE_TIME_CODES] = {self.login_code}
            self._server = make_server(HOST, self.port, app, threaded=True, request_handler=_QuietHandler)
            self._thread(self._server.serve_forever, "demo-web")
            self._thread(self._work, "demo-worker")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the web app, let the worker finish its item, stop the sandbox, delete the files."""
        self.stop_event.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=30)
        self.sandbox.stop()
        self._workdir.cleanup()

    def _thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        worker = Worker(self.settings)
        try:
            worker.run(self.stop_event)
        finally:
            worker.close()

    def _environ(self) -> dict[str, str]:
        """The demo's settings as ``BRIDGE_*`` variables; also written to ``config_path`` for the
        commands of "try this next" (the file goes with the temporary folder)."""
        values = {
            **self.sandbox.urls,
            "bigcommerce.store_hash": self.sandbox.store_hash,
            "bigcommerce.access_token": self.sandbox.access_token,
            "refersion.public_key": self.sandbox.refersion.public_key,
            "refersion.secret_key": self.sandbox.refersion.secret_key,
            "database.path": str(Path(self._workdir.name) / "bridge.sqlite3"),
            "server.host": HOST,
            "server.port": str(self.port),
            "server.admin_token": _secret(),
            "server.session_secret": _secret(),
            "webhooks.secret": _secret(),
            "rules.channel_ids": "1",  # the storefront only: a marketplace order is skipped
            "rules.dry_run": "false",
            "worker.retry_schedule": "2,5,10",  # a failed report recovers within seconds
            "worker.reconcile_interval": "0",  # only webhooks: the spare order waits for "try this next"
            "refersion.webhook_secret": _secret(),  # Refersion's coupon trigger below is signed with it
            "coupons.promotion_id": str(DEMO_PROMOTION),
        }
        sections: dict[str, list[str]] = {}
        for name, value in values.items():
            section, key = name.split(".")
            sections.setdefault(section, []).append(f'{key} = "{value}"')
        text = "".join(f"[{section}]\n" + "\n".join(lines) + "\n\n" for section, lines in sections.items())
        self.config_path.touch(mode=0o600)
        self.config_path.write_text("# Written by `bridge demo` for this run only; deleted when it stops.\n\n" + text)
        return {f"BRIDGE_{name.replace('.', '_').upper()}": value for name, value in values.items()}

    # --- The sample orders ------------------------------------------------------------------

    def run_scenario(self) -> None:
        """Register the webhooks, add the sample orders and fire their events at the bridge.

        The two orders Refersion fails go first, one at a time, so each failure hits its own
        order; the pending order is paid a few seconds later, in the background.
        """
        self._register_hooks()
        bc, refersion = self.sandbox.bigcommerce, self.sandbox.refersion
        bc.add_order(REPORTED, lines=[MUG], coupons=[{"code": "AFFILIATE10", "discount": "2.50"}], shipping="5.00")
        bc.add_order(FREE, lines=[{"sku": "STICKER", "name": "Free sticker", "qty": 1, "price": "0.00"}])
        bc.add_order(CANCELLED, status_id=5, lines=[MUG])
        bc.add_order(DECLINED, payment_status="declined", lines=[MUG])
        bc.add_order(GIFT_CARD, lines=[GIFT_CERTIFICATE])
        bc.add_order(MARKETPLACE, channel_id=2, lines=[MUG])
        bc.add_order(PENDING, status_id=7, lines=[MUG])
        bc.add_order(RETRIED, lines=[MUG])
        bc.add_order(REFUSED, lines=[MUG])
        bc.add_order(NO_CART_ID, cart_id=None, lines=[MUG])
        bc.add_order(SPARE, lines=[{"sku": "TEE-M", "name": "T-shirt (M)", "qty": 1, "price": "22.00"}])

        refersion.reject(400, "Invalid field items")
        self._fire(REFUSED)
        self._wait(lambda: refersion.attempts() >= 1)
        refersion.unavailable(times=1, retry_after="2")
        self._fire(RETRIED)
        self._wait(lambda: refersion.attempts() >= 2)
        for order_id in (REPORTED, FREE, CANCELLED, DECLINED, GIFT_CARD, MARKETPLACE, PENDING, NO_CART_ID):
            self._fire(order_id)
        self._thread(self._capture_payment, "demo-payment")
        self._push_coupon()

    def _push_coupon(self) -> None:
        """Refersion's "New Conversion Trigger" webhook for an affiliate's code: the worker creates it."""
        promotion = self.sandbox.bigcommerce.add_promotion("Affiliate codes")
        if promotion != DEMO_PROMOTION:  # pragma: no cover - the demo's sandbox starts empty
            log.warning("The demo's coupon promotion is %s, not %s: its code will fail", promotion, DEMO_PROMOTION)
        body = json.dumps({"id": 1097, "affiliate_id": 42, "trigger": "ANNA-10", "type": "COUPON"}).encode()
        headers = {
            "Refersion-Signature": signature(self.settings.refersion.webhook_secret, body),
            "Refersion-Topic": "NEW_CONVERSION_TRIGGER",
            "Content-Type": "application/json",
        }
        response = requests.post(f"{self.url}/webhooks/refersion", data=body, headers=headers, timeout=10)
        if response.status_code != 200:
            log.warning("The bridge did not take Refersion's coupon trigger: %s", response.status_code)

    def _capture_payment(self) -> None:
        if not self.stop_event.wait(PAYMENT_DELAY):
            self.sandbox.bigcommerce.update_order(PENDING, status_id=11, payment_status="captured")
            self._fire(PENDING)

    def _register_hooks(self) -> None:
        """What ``bridge hooks register`` does, against the sandbox store's ``/v3/hooks``."""
        bc = self.sandbox.bigcommerce
        for scope in (*ORDER_SCOPES, CART_CONVERTED):  # the hooks `bridge hooks register` makes
            response = requests.post(
                f"{bc.url}/stores/{self.sandbox.store_hash}/v3/hooks",
                json={
                    "scope": scope,
                    "destination": f"{self.url}/webhooks/bigcommerce",
                    "is_active": True,
                    "headers": {"X-Bridge-Token": self.settings.webhooks.secret},
                },
                headers={"X-Auth-Token": self.sandbox.access_token, "Accept": "application/json"},
                timeout=10,
            )
            response.raise_for_status()

    def _fire(self, order_id: int) -> None:
        for result in self.sandbox.bigcommerce.fire(STATUS_UPDATED, order_id):
            if result["status"] != 200:
                log.warning("The bridge did not take the webhook of order #%s: %s", order_id, result["status"] or result["error"])

    def _wait(self, condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        while not condition() and time.monotonic() < deadline and not self.stop_event.is_set():
            time.sleep(0.05)
