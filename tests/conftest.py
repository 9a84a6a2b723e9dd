"""Shared fixtures: settings on a temporary database, the sandbox servers (once per session),
the Flask test client, a worker on a controllable clock, and a webhook builder."""

from __future__ import annotations

import hashlib
import json
import signal
import time

import pytest

from bridge.config import Settings, load_settings
from bridge.storage import outbox
from bridge.storage.db import connect, immediate
from bridge.web.app import create_app
from bridge.worker.loop import Worker
from tests.fakes import FakeBigCommerce, FakeRefersion, load_fixture

STORE_HASH = "abc123"
BC_TOKEN = "bc-token-0123456789abcdef"
WEBHOOK_SECRET = "whsec-test-0123456789-abcdefghij"
REFERSION_PUBLIC = "pub_test_4a2b"
REFERSION_SECRET = "sec_test_9f8e7d6c5b4a"
T0 = 1_790_000_000.0  # a fixed "now" for clock-driven tests
ENCRYPTION_KEY = "dGVzdC1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg5YWI="  # Fernet: base64 of 32 bytes


@pytest.fixture(scope="session")
def bc_server() -> FakeBigCommerce:
    """The sandbox's BigCommerce, started once for the session."""
    server = FakeBigCommerce(STORE_HASH, BC_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def refersion_server() -> FakeRefersion:
    """The sandbox's Refersion, started once for the session."""
    server = FakeRefersion(REFERSION_PUBLIC, REFERSION_SECRET).start()
    yield server
    server.stop()


@pytest.fixture
def bigcommerce(bc_server) -> FakeBigCommerce:
    bc_server.reset()
    yield bc_server
    bc_server.reset()


@pytest.fixture
def refersion(refersion_server) -> FakeRefersion:
    refersion_server.reset()
    yield refersion_server
    refersion_server.reset()


def base_environ(db_path, bc_url: str, refersion_url: str) -> dict[str, str]:
    return {
        "BRIDGE_DATABASE_PATH": str(db_path),
        "BRIDGE_BIGCOMMERCE_STORE_HASH": STORE_HASH,
        "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN": BC_TOKEN,
        "BRIDGE_BIGCOMMERCE_API_URL": bc_url,
        "BRIDGE_BIGCOMMERCE_TIMEOUT": "2",
        "BRIDGE_WEBHOOKS_SECRET": WEBHOOK_SECRET,
        "BRIDGE_REFERSION_PUBLIC_KEY": REFERSION_PUBLIC,
        "BRIDGE_REFERSION_SECRET_KEY": REFERSION_SECRET,
        "BRIDGE_REFERSION_ORDERS_URL": refersion_url,
        "BRIDGE_REFERSION_TIMEOUT": "2",
        "BRIDGE_SERVER_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }


@pytest.fixture
def environ(tmp_path, bc_server, refersion_server) -> dict[str, str]:
    environ = base_environ(tmp_path / "bridge.sqlite3", bc_server.url, refersion_server.orders_url)
    return {**environ, "BRIDGE_REFERSION_API_URL": refersion_server.api_url}  # cancellations never reach the real API


@pytest.fixture
def make_settings(environ):
    """Settings from the test environment; keyword overrides name ``section_key``."""

    def make(**overrides) -> Settings:
        env = dict(environ)
        for name, value in overrides.items():
            key = f"BRIDGE_{name.upper()}"
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return load_settings(None, environ=env)

    return make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def db(settings):
    """The test database, migrated, on its own connection."""
    database = connect(settings.database.path)
    yield database
    database.close()


DELIVERY_PAYLOAD = (
    '{"cart_id":"c-1","order_id":"%s","currency_code":"USD",'
    '"items":[{"sku":"A","quantity":1,"price":10.00}],"shipping":0.00,"tax":0.00,"discount":0.00}'
)


@pytest.fixture
def queue_report(db, bigcommerce):
    """Put a paid-order report straight into the outbox, for an order BigCommerce still
    has as eligible (a send after a wait re-reads it)."""

    def queue(order_id: int, now: float, store_hash: str = STORE_HASH) -> None:
        bigcommerce.add(load_fixture("manual_discount"), id=order_id)
        queue_delivery(db, order_id, now, store_hash)

    return queue


def queue_delivery(db, order_id: int, now: float, store_hash: str = STORE_HASH) -> None:
    """Put a paid-order report straight into the outbox."""
    with immediate(db):
        outbox.enqueue(
            db,
            key=outbox.paid_key(store_hash, order_id),
            kind=outbox.PAID,
            store_hash=store_hash,
            order_id=order_id,
            payload=DELIVERY_PAYLOAD % order_id,
            now=now,
        )


@pytest.fixture
def app(settings):
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


class Clock:
    """A clock the test moves by hand; it starts at the real time, as the web intake
    stamps events with the real time."""

    def __init__(self, now: float | None = None):
        self.now = time.time() + 1 if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_worker(settings, clock):
    """Workers on the shared clock, with no jitter (rng 0.5)."""
    made = []

    def make(settings_override: Settings | None = None, **kwargs) -> Worker:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("rng", lambda: 0.5)
        worker = Worker(settings_override or settings, **kwargs)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()


@pytest.fixture
def worker(make_worker) -> Worker:
    return make_worker()


def envelope(scope: str, data: dict, *, created_at: int | None = 1_790_000_000, store_hash: str = STORE_HASH, store_id="1025646") -> dict:
    """A BigCommerce callback body as BigCommerce sends it."""
    body = {
        "scope": scope,
        "store_id": store_id,
        "data": data,
        "hash": hashlib.sha1(json.dumps(data, separators=(",", ":")).encode()).hexdigest(),
        "producer": f"stores/{store_hash}",
    }
    if created_at is not None:
        body["created_at"] = created_at
    return body


def status_updated(order_id: int, new_status: int, previous: int = 0, **kwargs) -> dict:
    data = {"type": "order", "id": order_id, "status": {"previous_status_id": previous, "new_status_id": new_status}}
    return envelope("store/order/statusUpdated", data, **kwargs)


def hook_token_of(store_hash: str) -> str:
    """The X-Bridge-Token a store's hooks send: the configured store's is webhooks.secret, an app store's its own."""
    from bridge.core.hooks import hook_token

    return hook_token(WEBHOOK_SECRET, store_hash, app=store_hash != STORE_HASH)


def post_webhook(client, body, *, token: str | None = WEBHOOK_SECRET, content_type: str = "application/json", headers: dict | None = None):
    sent = dict(headers or {})
    if token is not None:
        sent["X-Bridge-Token"] = token
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/webhooks/bigcommerce", data=data, headers=sent, content_type=content_type)


@pytest.fixture
def spawn(tmp_path, environ):
    """Start ``python -m bridge ARGS`` on the test environment; leftovers are killed at teardown."""
    from tests.processes import BridgeProcess

    started = []

    def start(args: list[str], extra_environ: dict[str, str] | None = None, name: str | None = None):
        process = BridgeProcess(args, {**environ, **(extra_environ or {})}, tmp_path / f"{name or args[0]}-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None or not process._log.closed:
            process.stop(signal.SIGKILL, timeout=10)


def install_store(
    settings: Settings, store_hash: str, *, access_token: str | None = None, user_id: int = 1001, email: str = "owner@shop.test"
):
    """Record an app install of ``store_hash`` (as the auth callback does) with one owner user."""
    from bridge.storage.stores import StoreRegistry

    database = connect(settings.database.path)
    try:
        with immediate(database):
            StoreRegistry(settings).install(
                database,
                store_hash=store_hash,
                access_token=access_token or f"app-token-{store_hash}-0123456789",
                scopes=["store_v2_orders_read_only"],
                user={"id": user_id, "email": email},
                owner={"id": user_id, "email": email},
                now=time.time(),
            )
    finally:
        database.close()


def store_user_client(app, settings: Settings, store_hash: str, user_id: int):
    """A test client of ``app`` signed in as user ``user_id`` of the app store ``store_hash`` (installed here)."""
    from bridge.web.auth import Viewer, start_session

    install_store(settings, store_hash, user_id=user_id)
    path = f"/test-only/sign-in/{store_hash}/{user_id}"

    def sign_in():
        start_session(Viewer(is_admin=False, stores=frozenset({store_hash}), user_id=user_id))
        return "signed in"

    app.add_url_rule(path, endpoint=f"test_sign_in_{store_hash}_{user_id}", view_func=sign_in)
    client = app.test_client()
    assert client.get(path).status_code == 200
    return client
