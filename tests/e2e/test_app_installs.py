"""Several stores in one deployment, through the real routes: two stores install the app
through OAuth (the sandbox's login server), one is the configured API account; each is read
with its own token and reported with its own Refersion key pair, each owner sees only their
store, and an uninstall stops one store without disturbing the others."""

from __future__ import annotations

import itertools
import re
import time
import uuid

import jwt
import pytest

from bridge.sandbox.bigcommerce import INFO_READ, ORDERS_READ
from tests.conftest import BC_TOKEN, REFERSION_PUBLIC, REFERSION_SECRET, STORE_HASH, hook_token_of, post_webhook, status_updated
from tests.fakes import load_fixture

PUBLIC_URL = "https://bridge.agency.test"
SESSION_SECRET = "session-secret-1f2e3d4c5b6a7988"
SCOPES = [ORDERS_READ, INFO_READ]
KEYS = {"app111": ("pub_app111_live", "sec_app111_0123456789"), "app222": ("pub_app222_live", "sec_app222_9876543210")}
OWNERS = {"app111": 111, "app222": 222}


@pytest.fixture
def settings(make_settings, bigcommerce):
    return make_settings(
        bigcommerce_client_id=bigcommerce.client_id,
        bigcommerce_client_secret=bigcommerce.client_secret,
        bigcommerce_login_url=bigcommerce.url,
        server_public_url=PUBLIC_URL,
        server_session_secret=SESSION_SECRET,
    )


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def install(app, bigcommerce, refersion, store_hash: str):
    """A store installs the app through OAuth, then its owner enters its Refersion key pair; returns the owner's browser."""
    bigcommerce.add_store(store_hash)
    owner = app.test_client()
    code = bigcommerce.issue_code(
        store_hash,
        SCOPES,
        redirect_uri=f"{PUBLIC_URL}/bigcommerce/auth",
        user_id=OWNERS[store_hash],
        user_email=f"owner@{store_hash}.test",
    )
    query = {"code": code, "scope": " ".join(SCOPES), "context": f"stores/{store_hash}", "account_uuid": str(uuid.uuid4())}
    installed = owner.get("/bigcommerce/auth", query_string=query)
    assert installed.status_code == 200, installed.get_data(as_text=True)

    public, secret = KEYS[store_hash]
    refersion.add_keys(public, secret)
    form = owner.get("/settings").get_data(as_text=True)
    saved = owner.post(
        "/settings",
        data={"csrf_token": csrf(form), "public_key": public, "secret_key": secret, "dry_run": "default", "coupons": "default"},
    )
    assert saved.status_code == 303, saved.get_data(as_text=True)
    return owner


def app_token(bigcommerce, store_hash: str) -> str:
    (token,) = [token for token in bigcommerce.stores[store_hash].tokens if token.startswith("sbx-")]
    return token


def signed_payload(bigcommerce, store_hash: str) -> str:
    now = int(time.time())
    claims = {
        "aud": bigcommerce.client_id,
        "iss": "bc",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": str(uuid.uuid4()),
        "sub": f"stores/{store_hash}",
        "user": {"id": OWNERS[store_hash], "email": f"owner@{store_hash}.test"},
        "owner": {"id": OWNERS[store_hash], "email": f"owner@{store_hash}.test"},
        "url": "/",
    }
    return jwt.encode(claims, bigcommerce.client_secret, algorithm="HS256")


@pytest.fixture
def deployment(settings, app, bigcommerce, refersion):
    owners = {store_hash: install(app, bigcommerce, refersion, store_hash) for store_hash in KEYS}
    return owners


_order_ids = itertools.count(5001)


def order_in(bigcommerce, store_hash: str, fixture: str = "manual_discount") -> int:
    """A new eligible order in ``store_hash``; ids are unique across stores, so reports can be told apart."""
    return bigcommerce.add(load_fixture(fixture), store_hash=store_hash, id=next(_order_ids))


def test_each_store_is_read_with_its_own_token_and_reported_with_its_own_keys(deployment, app, bigcommerce, refersion, worker):
    client = app.test_client()
    orders = {store_hash: order_in(bigcommerce, store_hash) for store_hash in (STORE_HASH, *KEYS)}
    for store_hash, order_id in orders.items():
        assert post_webhook(client, status_updated(order_id, 11, store_hash=store_hash), token=hook_token_of(store_hash)).status_code == 200
    worker.run_until_idle()

    expected_token = {STORE_HASH: BC_TOKEN, **{store_hash: app_token(bigcommerce, store_hash) for store_hash in KEYS}}
    for store_hash, order_id in orders.items():
        reads = bigcommerce.recorded(rf"^/stores/{store_hash}/v2/orders/{order_id}(/|$)")
        assert reads and {read.headers.get("X-Auth-Token") for read in reads} == {expected_token[store_hash]}
    keys_used = {report.body["order_id"]: report.keys for report in refersion.received}
    assert keys_used == {
        str(orders[STORE_HASH]): (REFERSION_PUBLIC, REFERSION_SECRET),
        str(orders["app111"]): KEYS["app111"],
        str(orders["app222"]): KEYS["app222"],
    }


ROUTES = [
    ("GET", "/api/orders/{order}"),
    ("GET", "/api/orders/{order}?store={store}"),
    ("POST", "/api/orders/{order}/replay?store={store}"),
    ("GET", "/orders/{order}"),
    ("GET", "/orders/{order}?store={store}"),
    ("POST", "/orders/{order}/replay?store={store}"),
    ("GET", "/orders?order={order}&store={store}"),
    ("GET", "/settings?store={store}"),
    ("POST", "/settings?store={store}"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_an_owner_gets_nothing_of_another_stores_orders_on_any_route(deployment, app, bigcommerce, refersion, worker, db, method, route):
    client = app.test_client()
    theirs = {store_hash: order_in(bigcommerce, store_hash) for store_hash in (STORE_HASH, "app222")}
    for store_hash, order_id in theirs.items():
        post_webhook(client, status_updated(order_id, 11, store_hash=store_hash), token=hook_token_of(store_hash))
    refersion.fail_next(400, times=2)  # dead deliveries: something a replay could act on
    worker.run_until_idle()
    owner = deployment["app111"]
    token = csrf(owner.get("/settings").get_data(as_text=True))

    for store_hash, order_id in theirs.items():
        path = route.format(order=order_id, store=store_hash)
        data = {"csrf_token": token, "back": "status", "public_key": "pub_stolen", "secret_key": "sec_stolen_0123456789"}
        response = owner.open(path, method=method, data=data if method == "POST" else None, follow_redirects=method == "GET")
        assert response.status_code in (403, 404), (path, response.status_code)
        body = response.get_data(as_text=True)
        assert f"#{order_id}" not in body or (response.status_code == 404 and "never heard" in body)

    # Nothing of theirs changed: the dead deliveries are still dead, app222's keys untouched.
    states = {row["store_hash"]: row["state"] for row in db.query("SELECT store_hash, state FROM deliveries")}
    assert states == {STORE_HASH: "dead", "app222": "dead"}
    assert app.config["BRIDGE_STORES"].get(db, "app222").refersion.public_key == KEYS["app222"][0]
    status = owner.get("/api/status").get_json()
    assert [store["store_hash"] for store in status["stores"]] == ["app111"] and status["counts"]["received"] == 0


def test_the_admin_token_sees_every_store(deployment, make_settings, bigcommerce, settings):
    from bridge.web.app import create_app

    admin_token = "admin-token-0123456789abcdef"
    admin_app = create_app(make_settings(server_admin_token=admin_token, **_app_options(bigcommerce)))
    status = admin_app.test_client().get("/api/status", headers={"Authorization": f"Bearer {admin_token}"}).get_json()
    assert [(store["store_hash"], store["mode"]) for store in status["stores"]] == [
        (STORE_HASH, "api_account"),
        ("app111", "app"),
        ("app222", "app"),
    ]


def _app_options(bigcommerce) -> dict:
    return {
        "bigcommerce_client_id": bigcommerce.client_id,
        "bigcommerce_client_secret": bigcommerce.client_secret,
        "bigcommerce_login_url": bigcommerce.url,
        "server_public_url": PUBLIC_URL,
        "server_session_secret": SESSION_SECRET,
    }


def test_an_uninstall_mid_stream_stops_that_store_and_disturbs_no_other(deployment, app, bigcommerce, refersion, worker, clock, db):
    client = app.test_client()
    for _ in range(2):  # a stream: orders in every store, reported at once
        for store_hash in (STORE_HASH, *KEYS):
            post_webhook(
                client, status_updated(order_in(bigcommerce, store_hash), 11, store_hash=store_hash), token=hook_token_of(store_hash)
            )
    worker.run_until_idle()
    assert len(refersion.received) == 6
    for store_hash in (STORE_HASH, *KEYS):  # more orders, whose reports Refersion refuses for now
        post_webhook(client, status_updated(order_in(bigcommerce, store_hash), 11, store_hash=store_hash), token=hook_token_of(store_hash))
    refersion.fail_next(503, times=3)
    worker.run_until_idle()
    unevaluated = order_in(bigcommerce, "app222")  # and one whose webhook is still waiting in the queue
    post_webhook(client, status_updated(unevaluated, 11, store_hash="app222"), token=hook_token_of("app222"))
    queued = {
        row["store_hash"]: row["n"]
        for row in db.query("SELECT store_hash, count(*) AS n FROM deliveries WHERE state = 'pending' GROUP BY 1")
    }
    assert queued == {STORE_HASH: 1, "app111": 1, "app222": 1}

    gone = client.get("/bigcommerce/uninstall", query_string={"signed_payload_jwt": signed_payload(bigcommerce, "app222")})
    assert gone.status_code == 200 and gone.get_json() == {"uninstalled": "app222"}
    late = order_in(bigcommerce, "app222")
    for store_hash in (STORE_HASH, "app111", "app222"):
        order_id = late if store_hash == "app222" else order_in(bigcommerce, store_hash)
        assert post_webhook(client, status_updated(order_id, 11, store_hash=store_hash), token=hook_token_of(store_hash)).status_code == 200
    reads_before = len(bigcommerce.recorded(r"^/stores/app222/"))
    clock.advance(3600)  # past every retry
    worker.run_until_idle()

    def reported(store_hash: str) -> list[str]:
        public_key = KEYS[store_hash][0] if store_hash in KEYS else REFERSION_PUBLIC
        return sorted(report.body["order_id"] for report in refersion.received if report.keys[0] == public_key)

    assert len(reported("app222")) == 2, "nothing of the uninstalled store is sent afterwards"
    assert len(bigcommerce.recorded(r"^/stores/app222/")) == reads_before, "nor is its API called"
    for store_hash in (STORE_HASH, "app111"):
        every_order = sorted(str(order_id) for order_id in bigcommerce.stores[store_hash].orders)
        assert reported(store_hash) == every_order, f"every order of {store_hash} reported, once"
    held = {
        row["store_hash"]: row["state"]
        for row in db.query("SELECT store_hash, state FROM deliveries WHERE store_hash = 'app222' AND state != 'done'")
    }
    assert held == {"app222": "pending"}, "its queued report is kept, held"
    assert next(db.query("SELECT state FROM events WHERE order_id = ?", [unevaluated]))["state"] == "pending"
    assert next(db.query("SELECT outcome FROM events WHERE order_id = ?", [late]))["outcome"] == "unknown_store"
    assert deployment["app222"].get("/api/status").status_code == 401  # the owner's session ended with the install
