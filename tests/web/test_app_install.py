"""The BigCommerce app callbacks (bridge/web/app_install.py) against the sandbox's login server
and API: install, load, uninstall, remove-user, and the store/app/uninstalled webhook."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import uuid
import warnings
from urllib.parse import parse_qs

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from bridge.core.hooks import HEADER
from bridge.sandbox._server import json_response
from bridge.sandbox.bigcommerce import INFO_READ, MARKETING_MODIFY, ORDERS_READ
from bridge.storage import outbox, stores
from bridge.storage.db import immediate
from bridge.storage.stores import StoreRegistry
from bridge.storage.vault import Vault
from tests.conftest import (
    ENCRYPTION_KEY,
    STORE_HASH,
    WEBHOOK_SECRET,
    envelope,
    hook_token_of,
    install_store,
    post_webhook,
    queue_delivery,
    status_updated,
)
from tests.fakes import load_fixture

APP_STORE = "app456"
PUBLIC_URL = "https://bridge.example.com"
CALLBACK = f"{PUBLIC_URL}/bigcommerce/auth"
DESTINATION = f"{PUBLIC_URL}/webhooks/bigcommerce"
SESSION_SECRET = "session-secret-8d7c6b5a4f3e2d1c"
SCOPES = [ORDERS_READ, INFO_READ, "store_v2_transactions_read_only", MARKETING_MODIFY]
APP_HOOK_SCOPES = {
    "store/order/statusUpdated",
    "store/order/created",
    "store/order/updated",
    "store/order/refund/created",
    "store/cart/converted",
    "store/app/uninstalled",
}
USER_ID = 31
INVALID_PAGE = "This link is invalid or expired. Open the app again from the BigCommerce control panel (Apps › My Apps)."


@pytest.fixture
def app_settings(make_settings, bigcommerce):
    """Settings of a bridge that serves app installs through the sandbox's login server."""

    def make(**overrides):
        options = {
            "bigcommerce_client_id": bigcommerce.client_id,
            "bigcommerce_client_secret": bigcommerce.client_secret,
            "bigcommerce_login_url": bigcommerce.url,
            "server_public_url": PUBLIC_URL,
            "server_session_secret": SESSION_SECRET,
            **overrides,
        }
        return make_settings(**options)

    return make


@pytest.fixture
def settings(app_settings):
    return app_settings()


@pytest.fixture
def app_store(bigcommerce):
    """The store that installs the app, known to the sandbox (with no token yet)."""
    bigcommerce.add_store(APP_STORE)
    return APP_STORE


def install(client, bigcommerce, scopes=SCOPES, *, store_hash=APP_STORE, **code_options):
    code = bigcommerce.issue_code(store_hash, scopes, **{"redirect_uri": CALLBACK, **code_options})
    return client.get("/bigcommerce/auth", query_string=auth_query(code, scopes, store_hash))


def auth_query(code, scopes=SCOPES, store_hash=APP_STORE) -> dict:
    return {"code": code, "scope": " ".join(scopes), "context": f"stores/{store_hash}", "account_uuid": str(uuid.uuid4())}


def store_row(db, store_hash=APP_STORE) -> dict | None:
    found = list(db.query("SELECT * FROM stores WHERE store_hash = ?", [store_hash]))
    return found[0] if found else None


def users(db, store_hash=APP_STORE) -> list[tuple]:
    return [
        (row["user_id"], row["email"], row["is_owner"]) for row in db.query("SELECT * FROM store_users WHERE store_hash = ?", [store_hash])
    ]


def issued_tokens(bigcommerce, store_hash=APP_STORE) -> list[str]:
    return [token for token in bigcommerce.stores[store_hash].tokens if token.startswith("sbx-")]


def page(response) -> str:
    return response.get_data(as_text=True)


def signed_in(client) -> bool:
    return client.get("/api/status").status_code == 200


def nothing_stored(db, bigcommerce) -> bool:
    return store_row(db) is None and not users(db) and not bigcommerce.hooks(APP_STORE)


# --- Install: success ---------------------------------------------------------------------------


def test_an_install_stores_the_encrypted_token_and_user_registers_hooks_and_says_what_is_left(
    client, db, bigcommerce, app_store, settings, caplog
):
    caplog.set_level(logging.DEBUG)
    response = install(client, bigcommerce, user_id=USER_ID, user_email="owner@shop.test")
    assert response.status_code == 200, page(response)
    (token,) = issued_tokens(bigcommerce)

    # What was asked of the login server: the documented fields, form-encoded.
    (exchange,) = bigcommerce.recorded("/oauth2/token", "POST")
    sent = {name: values[0] for name, values in parse_qs(exchange.body.decode()).items()}
    assert sent["grant_type"] == "authorization_code"
    assert sent["redirect_uri"] == CALLBACK
    assert sent["context"] == f"stores/{APP_STORE}"
    assert (sent["client_id"], sent["client_secret"]) == (bigcommerce.client_id, bigcommerce.client_secret)

    row = store_row(db)
    assert row["mode"] == "app" and row["uninstalled_at"] is None
    assert row["access_token"] != token and token not in row["access_token"]
    assert Vault([ENCRYPTION_KEY]).decrypt(row["access_token"]) == token
    assert row["scopes"] == " ".join(SCOPES) and row["installed_by"] == "owner@shop.test"
    assert users(db) == [(USER_ID, "owner@shop.test", 1)]
    assert StoreRegistry(settings).get(db, APP_STORE).access_token == token

    hooks = bigcommerce.hooks(APP_STORE)
    assert {hook["scope"] for hook in hooks} == APP_HOOK_SCOPES
    own_token = hook_token_of(APP_STORE)  # the store's own X-Bridge-Token, not webhooks.secret
    assert own_token != WEBHOOK_SECRET
    assert all(hook["destination"] == DESTINATION and hook["headers"] == {HEADER: own_token} and hook["is_active"] for hook in hooks)

    text = page(response)
    assert f"installed on store {APP_STORE}" in text
    assert "Orders: read-only (<code>store_v2_orders_read_only</code>)" in text
    assert DESTINATION in text and "store/app/uninstalled created" in text
    assert 'href="/settings"' in text and "Refersion API key pair" in text and 'href="/"' in text
    assert "could not be registered" not in text
    for secret in (token, bigcommerce.client_secret, sent["code"], WEBHOOK_SECRET, own_token):
        assert secret not in text and secret not in caplog.text
    assert f"Store {APP_STORE} installed the app" in caplog.text
    assert signed_in(client)  # the links work inside the iframe


def test_an_install_without_the_recommended_scopes_is_kept_and_says_which_features_are_off(client, db, bigcommerce, app_store):
    response = install(client, bigcommerce, [ORDERS_READ])
    assert response.status_code == 200
    assert store_row(db) is not None
    text = page(response)
    assert "Not granted, so these features stay off" in text
    assert "store_v2_transactions_read_only" in text and "store_v2_information_read_only" in text and "store_v2_marketing" in text


def test_the_modify_orders_scope_is_enough(client, db, bigcommerce, app_store):
    assert install(client, bigcommerce, ["store_v2_orders"]).status_code == 200
    assert store_row(db)["scopes"] == "store_v2_orders"


def test_a_reinstall_takes_the_new_token_keeps_the_settings_and_frees_the_held_work(client, db, bigcommerce, app_store, settings):
    assert install(client, bigcommerce).status_code == 200
    registry = StoreRegistry(settings)
    with immediate(db):
        registry.save_settings(db, store_hash=APP_STORE, now=time.time(), dry_run=True, excluded_coupons=["STAFF"])
    queue_delivery(db, 7001, time.time(), APP_STORE)
    with immediate(db):
        stores.uninstall(db, store_hash=APP_STORE, now=time.time())
    assert not claimable(db)

    assert install(client, bigcommerce).status_code == 200
    first, second = issued_tokens(bigcommerce)
    row = store_row(db)
    assert row["uninstalled_at"] is None
    assert Vault([ENCRYPTION_KEY]).decrypt(row["access_token"]) == second != first
    store = registry.get(db, APP_STORE)
    assert (store.dry_run, store.excluded_coupons) == (True, ("STAFF",))
    assert claimable(db) == [7001]
    assert len(bigcommerce.hooks(APP_STORE)) == len(APP_HOOK_SCOPES)  # registered once, found fine the second time


def claimable(db) -> list[int]:
    """The order ids of deliveries a worker could claim now (claimed, then given back)."""
    db.conn.execute("SAVEPOINT peek")
    try:
        with_claims = []
        while (row := outbox.deliveries.claim(db, owner="peek", now=time.time() + 1)) is not None:
            with_claims.append(row["order_id"])
        return with_claims
    finally:
        db.conn.execute("ROLLBACK TO peek")
        db.conn.execute("RELEASE peek")


# --- Install: refused ---------------------------------------------------------------------------------


def test_an_answer_for_another_store_is_refused(client, db, bigcommerce, app_store):
    other = {
        "access_token": "sbx-other-store-token-0123456789",
        "scope": " ".join(SCOPES),
        "user": {"id": USER_ID, "email": "owner@shop.test"},
        "owner": {"id": USER_ID, "email": "owner@shop.test"},
        "context": "stores/zzz999",
    }
    bigcommerce.respond_next(lambda request: json_response(other), path="^/oauth2/token$")
    response = install(client, bigcommerce)
    assert response.status_code == 502
    assert "stores/zzz999" in page(response) and "Nothing was installed" in page(response)
    assert "sbx-other-store-token" not in page(response)
    assert nothing_stored(db, bigcommerce)


def test_missing_scopes_are_named_and_nothing_is_stored(client, db, bigcommerce, app_store):
    response = install(client, bigcommerce, [INFO_READ, MARKETING_MODIFY])
    assert response.status_code == 400
    text = page(response)
    assert "Orders: read-only (store_v2_orders_read_only)" in text
    assert "Developer Portal" in text and "install" in text and "Nothing was stored" in text
    assert nothing_stored(db, bigcommerce)
    assert not signed_in(client)


@pytest.mark.parametrize(
    ("inject", "status", "said"),
    [
        (
            {"status": 400, "body": {"error": "Invalid authorization code"}},
            400,
            "BigCommerce refused this install (400: Invalid authorization code)",
        ),
        ({"status": 500, "body": "<html>oops</html>"}, 502, "BigCommerce&#39;s login server answered 500"),
        ({"status": 200, "body": "this is not JSON"}, 502, "an answer the bridge cannot use"),
        ({"status": 200, "body": {"access_token": "", "scope": "x", "context": "stores/app456"}}, 502, "access_token, owner, user"),
    ],
    ids=["400", "500", "garbage", "wrong-shape"],
)
def test_a_failed_exchange_gets_a_clear_page_and_stores_nothing(client, db, bigcommerce, app_store, inject, status, said):
    bigcommerce.fail_next(inject["status"], body=inject["body"], path="^/oauth2/token$")
    response = install(client, bigcommerce)
    assert response.status_code == status
    assert said in page(response) and "Nothing was installed" in page(response)
    assert nothing_stored(db, bigcommerce)
    assert not signed_in(client)


def test_a_used_code_is_refused(client, db, bigcommerce, app_store):
    code = bigcommerce.issue_code(APP_STORE, SCOPES, redirect_uri=CALLBACK)
    assert client.get("/bigcommerce/auth", query_string=auth_query(code)).status_code == 200
    again = client.get("/bigcommerce/auth", query_string=auth_query(code))
    assert again.status_code == 400
    assert "Invalid authorization code" in page(again) and code not in page(again)


def test_a_redirect_uri_mismatch_points_at_the_public_url(client, db, bigcommerce, app_store):
    code = bigcommerce.issue_code(APP_STORE, SCOPES, redirect_uri="https://elsewhere.example.com/bigcommerce/auth")
    response = client.get("/bigcommerce/auth", query_string=auth_query(code))
    assert response.status_code == 400
    assert "Invalid redirect_uri" in page(response) and "server.public_url must be the address" in page(response)
    assert nothing_stored(db, bigcommerce)


def test_wrong_client_credentials_name_the_settings_not_the_secret(app_settings, db, bigcommerce, app_store):
    from bridge.web.app import create_app

    wrong = "a-wrong-client-secret-0123456789abcdef"
    client = create_app(app_settings(bigcommerce_client_secret=wrong)).test_client()
    response = install(client, bigcommerce)
    assert response.status_code == 502
    text = page(response)
    assert "bigcommerce.client_id" in text and "bigcommerce.client_secret" in text and "401" in text
    assert wrong not in text
    assert nothing_stored(db, bigcommerce)


def test_a_slow_login_server_times_out(app_settings, db, bigcommerce, app_store):
    from bridge.web.app import create_app

    client = create_app(app_settings(bigcommerce_timeout="0.3")).test_client()
    bigcommerce.slow_next(1.5, path="^/oauth2/token$")
    started = time.monotonic()
    response = install(client, bigcommerce)
    assert time.monotonic() - started < 1.4
    assert response.status_code == 502
    assert "did not answer in time (no answer within 0.3 s)" in page(response)
    assert nothing_stored(db, bigcommerce)


def test_an_unreachable_login_server_is_named(app_settings, db, bigcommerce, app_store):
    from bridge.web.app import create_app

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    client = create_app(app_settings(bigcommerce_login_url=f"http://127.0.0.1:{port}")).test_client()
    response = install(client, bigcommerce)
    assert response.status_code == 502
    assert f"could not reach BigCommerce&#39;s login server (http://127.0.0.1:{port})" in page(response)
    assert "Connection refused" in page(response)
    assert nothing_stored(db, bigcommerce)


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("server_public_url", "server.public_url"),
        ("server_encryption_key", "server.encryption_key"),
        ("bigcommerce_client_id", "bigcommerce.client_id"),
        ("bigcommerce_client_secret", "bigcommerce.client_secret"),
        ("server_session_secret", "server.session_secret"),
    ],
)
def test_an_unset_setting_is_named_for_the_operator_and_the_code_is_not_spent(
    app_settings, db, bigcommerce, app_store, caplog, setting, named
):
    from bridge.web.app import create_app

    client = create_app(app_settings(**{setting: None})).test_client()
    response = install(client, bigcommerce)
    assert response.status_code == 503
    assert named in page(response) and "not set" in page(response)
    assert any(named in record.getMessage() for record in caplog.records if record.levelno == logging.ERROR)
    assert not bigcommerce.recorded("/oauth2/token")
    assert nothing_stored(db, bigcommerce)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"scope": ORDERS_READ, "context": f"stores/{APP_STORE}"}, "lacks code"),
        ({"code": "c"}, "lacks scope, context"),
        ({"code": "c", "scope": ORDERS_READ, "context": APP_STORE}, "context: Must look like stores/&lt;store_hash&gt;"),
        ({"code": "c", "scope": ORDERS_READ, "context": "stores/a-b"}, "context: A store hash is letters and digits only"),
    ],
)
def test_an_incomplete_install_link_gets_400_naming_what_is_missing(client, bigcommerce, query, named):
    response = client.get("/bigcommerce/auth", query_string=query)
    assert response.status_code == 400
    assert named in page(response)
    assert not bigcommerce.recorded("/oauth2/token")


def test_a_database_failure_is_a_503_page(client, db, bigcommerce, app_store):
    db.execute("DROP TABLE store_users")
    response = install(client, bigcommerce)
    assert response.status_code == 503
    assert "could not store the install" in page(response)
    assert store_row(db) is None  # the transaction was rolled back


# --- Install: hooks --------------------------------------------------------------------------------


def test_hooks_refused_one_by_one_keep_the_install_and_the_page_says_how_to_retry(client, db, bigcommerce, app_store):
    bigcommerce.fail_next(422, body={"status": 422, "title": "Destination refused"}, path="/v3/hooks$", method="POST", times=6)
    response = install(client, bigcommerce)
    assert response.status_code == 200
    text = page(response)
    assert "webhooks could not be registered: the store/order/statusUpdated hook: BigCommerce answered 422: Destination refused" in text
    assert f"bridge hooks register --store {APP_STORE}" in text and "Open the app again" in text
    assert store_row(db)["access_token"] and users(db)
    assert signed_in(client)


def test_an_unreachable_api_keeps_the_install_and_opening_the_app_registers_the_hooks(client, db, bigcommerce, app_store):
    bigcommerce.fail_next(503, path="/v3/hooks$", method="GET")  # BigCommerce is down: registering stops at once
    response = install(client, bigcommerce, user_id=USER_ID)
    assert response.status_code == 200
    assert "webhooks could not be registered: BigCommerce answered 503" in page(response)
    assert not bigcommerce.hooks(APP_STORE) and store_row(db)["access_token"]

    loaded = client.get("/bigcommerce/load", query_string={"signed_payload_jwt": signed(bigcommerce)})
    assert loaded.status_code == 303
    assert {hook["scope"] for hook in bigcommerce.hooks(APP_STORE)} == APP_HOOK_SCOPES


def test_a_public_url_bigcommerce_cannot_send_to_is_said_without_a_call(app_settings, db, bigcommerce, app_store):
    from bridge.web.app import create_app

    client = create_app(app_settings(server_public_url="http://bridge.example.com:8000")).test_client()
    response = install(client, bigcommerce, redirect_uri="http://bridge.example.com:8000/bigcommerce/auth")
    assert response.status_code == 200
    assert "server.public_url must be https on port 443" in page(response)
    assert not bigcommerce.recorded("/v3/hooks")


# --- Signed payloads ----------------------------------------------------------------------------------


def signed(bigcommerce, *, key=None, algorithm="HS256", drop=(), store_hash=APP_STORE, user_id=USER_ID, owner_id=USER_ID, **changes) -> str:
    """A ``signed_payload_jwt`` as BigCommerce makes it (reference 4.2), with changes."""
    now = int(time.time())
    claims = {
        "aud": bigcommerce.client_id,
        "iss": "bc",
        "iat": now,
        "nbf": now,
        "exp": now + 86400,
        "jti": str(uuid.uuid4()),
        "sub": f"stores/{store_hash}",
        "user": {"id": user_id, "email": f"user{user_id}@shop.test", "locale": "en-US"},
        "owner": {"id": owner_id, "email": f"user{owner_id}@shop.test"},
        "url": "/",
        "channel_id": None,
        **changes,
    }
    for name in drop:
        claims.pop(name)
    with warnings.catch_warnings():
        # HS512 wants a 64-byte key; the test signs with the app's (shorter) secret all the same.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, key or bigcommerce.client_secret, algorithm=algorithm)


def unsigned(bigcommerce) -> str:
    """The same claims with ``alg: none`` and no signature."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = jwt.decode(signed(bigcommerce), options={"verify_signature": False})
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.fixture
def installed(settings, app_store):
    install_store(settings, APP_STORE, user_id=USER_ID)
    return APP_STORE


def load(client, token):
    return client.get("/bigcommerce/load", query_string={"signed_payload_jwt": token})


def test_a_valid_load_opens_the_stores_status_page_in_a_session(client, db, bigcommerce, installed):
    response = load(client, signed(bigcommerce, user_id=77, owner_id=USER_ID))
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert client.get("/api/status").status_code == 200
    assert (77, "user77@shop.test", 0) in users(db)  # a user other than the owner, recorded as such
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    ("url", "location"), [("/orders/1042", "/orders/1042"), ("https://evil.example.com/", "/"), ("//evil.example.com", "/")]
)
def test_the_deep_link_is_followed_only_on_this_site(client, bigcommerce, installed, url, location):
    assert load(client, signed(bigcommerce, url=url)).headers["Location"] == location


def test_a_load_within_the_clock_leeway_is_accepted(client, bigcommerce, installed):
    now = int(time.time())
    assert load(client, signed(bigcommerce, iat=now + 30, nbf=now + 30)).status_code == 303
    assert load(client, signed(bigcommerce, exp=now - 30)).status_code == 303


def refusals(bigcommerce) -> dict[str, str]:
    now = int(time.time())
    return {
        "wrong audience": signed(bigcommerce, aud="another-app"),
        "wrong secret": signed(bigcommerce, key="another-secret-of-32-bytes-or-more-0123"),
        "alg none": unsigned(bigcommerce),
        "HS512": signed(bigcommerce, algorithm="HS512"),
        "expired": signed(bigcommerce, exp=now - 120),
        "nbf in the future": signed(bigcommerce, nbf=now + 300),
        "iat in the future": signed(bigcommerce, iat=now + 300),
        "unknown store": signed(bigcommerce, store_hash="zzz999"),
        "missing sub": signed(bigcommerce, drop=("sub",)),
        "sub not stores/x": signed(bigcommerce, sub=APP_STORE),
        "missing exp": signed(bigcommerce, drop=("exp",)),
        "missing aud": signed(bigcommerce, drop=("aud",)),
        "missing jti": signed(bigcommerce, drop=("jti",)),
        "issued before the install": signed(bigcommerce, iat=now - 3600, nbf=now - 3600),
        "user id a string": signed(bigcommerce, user={"id": "31", "email": "a@shop.test"}),
        "missing user": signed(bigcommerce, drop=("user",)),
        "not a JWT": "not.a.jwt",
        "empty": "",
    }


REFUSALS = [
    "wrong audience",
    "wrong secret",
    "alg none",
    "HS512",
    "expired",
    "nbf in the future",
    "iat in the future",
    "unknown store",
    "missing sub",
    "sub not stores/x",
    "missing exp",
    "missing aud",
    "missing jti",
    "issued before the install",
    "user id a string",
    "missing user",
    "not a JWT",
    "empty",
]


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_load_is_a_401_page_saying_only_invalid_or_expired(client, db, bigcommerce, installed, caplog, case):
    token = refusals(bigcommerce)[case]
    caplog.set_level(logging.INFO)
    response = load(client, token)
    assert response.status_code == 401
    assert f"<p>{INVALID_PAGE}</p>" in page(response)
    for detail in ("audience", "signature", "algorithm", "claim", "sub", "store zzz999"):
        assert detail not in page(response)
    assert "Set-Cookie" not in response.headers and not signed_in(client)
    assert users(db) == [(USER_ID, "owner@shop.test", 1)]
    refused = [record.getMessage() for record in caplog.records if "load callback refused" in record.getMessage()]
    assert len(refused) == 1  # the log says which check failed ...
    assert all(token not in record.getMessage() for record in caplog.records if token)  # ... never the token


def test_the_log_says_which_check_refused_a_load(client, bigcommerce, installed, caplog):
    caplog.set_level(logging.WARNING, logger="bridge.web.app_install")
    for case, expected in [
        ("HS512", "InvalidAlgorithmError"),
        ("expired", "ExpiredSignatureError"),
        ("unknown store", "not installed"),
        ("issued before the install", "issued before the store's latest install"),
    ]:
        caplog.clear()
        load(client, refusals(bigcommerce)[case])
        assert expected in caplog.text, case


def test_a_load_for_an_uninstalled_store_is_refused(client, db, bigcommerce, installed):
    with immediate(db):
        stores.uninstall(db, store_hash=APP_STORE, now=time.time())
    response = load(client, signed(bigcommerce))
    assert response.status_code == 401 and INVALID_PAGE in page(response)


def test_a_load_without_a_session_secret_names_the_setting(app_settings, bigcommerce, installed):
    from bridge.web.app import create_app

    client = create_app(app_settings(server_session_secret=None)).test_client()
    response = load(client, signed(bigcommerce))
    assert response.status_code == 503 and "server.session_secret" in page(response)


@pytest.mark.parametrize("setting", ["bigcommerce_client_id", "bigcommerce_client_secret"])
def test_callbacks_with_a_payload_name_the_credentials_the_bridge_lacks_to_verify_it(app_settings, bigcommerce, installed, setting):
    from bridge.web.app import create_app

    client = create_app(app_settings(**{setting: None})).test_client()
    named = setting.replace("_", ".", 1)
    response = load(client, signed(bigcommerce))
    assert response.status_code == 503 and named in page(response)
    for path in ("/bigcommerce/uninstall", "/bigcommerce/remove-user"):
        response = client.get(path, query_string={"signed_payload_jwt": signed(bigcommerce)})
        assert response.status_code == 503 and named in response.get_json()["error"]
    # Without a payload it is only a bad link: nothing is said about the configuration.
    assert load(client, "").status_code == 401 and named not in page(load(client, ""))
    assert client.get("/bigcommerce/uninstall").get_json() == {"error": "invalid or expired"}


def test_a_load_when_the_database_fails_is_a_503_page(client, db, bigcommerce, installed):
    db.execute("DROP TABLE store_users")
    response = load(client, signed(bigcommerce))
    assert response.status_code == 503 and "database" in page(response)


def test_callback_pages_may_be_framed_by_the_control_panel(client, bigcommerce, installed):
    for response in (load(client, "x"), client.get("/bigcommerce/auth")):
        assert "X-Frame-Options" not in response.headers
        assert "frame-ancestors 'self' https://*.bigcommerce.com https://*.mybigcommerce.com" in response.headers["Content-Security-Policy"]


# --- Uninstall and remove-user -------------------------------------------------------------------------


def uninstall(client, token):
    return client.get("/bigcommerce/uninstall", query_string={"signed_payload_jwt": token})


def test_uninstalling_the_app_from_the_configured_store_keeps_it_served(client, db, bigcommerce, settings, worker, refersion):
    """Both modes on one store hash: the config's API account keeps serving it after the app goes."""
    install_store(settings, STORE_HASH, user_id=USER_ID)
    assert uninstall(client, signed(bigcommerce, store_hash=STORE_HASH)).status_code == 200
    assert store_row(db, STORE_HASH)["access_token"] is None and store_row(db, STORE_HASH)["uninstalled_at"] is None
    assert users(db, STORE_HASH) == []
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    assert post_webhook(client, status_updated(order_id, 11)).status_code == 200
    worker.run_until_idle()
    assert refersion.attempts == [str(order_id)]


def test_uninstall_forgets_the_token_holds_the_work_and_ignores_the_stores_webhooks(
    client, db, bigcommerce, refersion, installed, settings, make_worker
):
    queue_delivery(db, 7001, time.time(), APP_STORE)
    queue_delivery(db, 7002, time.time(), STORE_HASH)

    response = uninstall(client, signed(bigcommerce))
    assert response.status_code == 200 and response.get_json() == {"uninstalled": APP_STORE}
    row = store_row(db)
    assert row["access_token"] is None and row["uninstalled_at"] is not None
    assert StoreRegistry(settings).get(db, APP_STORE) is None
    assert users(db) == []

    assert (
        post_webhook(client, envelope("store/order/statusUpdated", {"type": "order", "id": 7001}, store_hash=APP_STORE)).status_code == 200
    )
    (event,) = db.query("SELECT state, outcome FROM events WHERE store_hash = ?", [APP_STORE])
    assert (event["state"], event["outcome"]) == ("ignored", "unknown_store")

    make_worker().run_until_idle()
    assert refersion.attempts == ["7002"]  # the other store's report went out
    (held,) = db.query("SELECT state, attempts FROM deliveries WHERE store_hash = ?", [APP_STORE])
    assert (held["state"], held["attempts"]) == ("pending", 0)

    assert load(client, signed(bigcommerce)).status_code == 401
    assert uninstall(client, signed(bigcommerce)).get_json() == {"uninstalled": APP_STORE}  # BigCommerce may call twice


def test_uninstall_ends_every_session_of_the_store(client, bigcommerce, installed):
    assert load(client, signed(bigcommerce)).status_code == 303 and signed_in(client)
    uninstall(client, signed(bigcommerce))
    assert not signed_in(client)


@pytest.mark.parametrize("path", ["/bigcommerce/uninstall", "/bigcommerce/remove-user", "/bigcommerce/remove_user"])
@pytest.mark.parametrize("case", ["wrong secret", "HS512", "expired", "missing sub", "not a JWT"])
def test_refused_server_callbacks_are_401_json_and_change_nothing(client, db, bigcommerce, installed, path, case):
    response = client.get(path, query_string={"signed_payload_jwt": refusals(bigcommerce)[case]})
    assert response.status_code == 401 and response.get_json() == {"error": "invalid or expired"}
    assert store_row(db)["access_token"] and users(db)


@pytest.mark.parametrize("path", ["/bigcommerce/remove-user", "/bigcommerce/remove_user"])
def test_remove_user_ends_that_users_session_only(app, db, bigcommerce, installed, path):
    owner, clerk = app.test_client(), app.test_client()
    assert load(owner, signed(bigcommerce)).status_code == 303
    assert load(clerk, signed(bigcommerce, user_id=77)).status_code == 303
    response = clerk.get(path, query_string={"signed_payload_jwt": signed(bigcommerce, user_id=77)})
    assert response.status_code == 200 and response.get_json() == {"store_hash": APP_STORE, "removed_user": 77}
    assert not signed_in(clerk) and signed_in(owner)
    assert [user[0] for user in users(db)] == [USER_ID]


def test_a_payload_works_once_on_one_callback(app, db, bigcommerce, installed, caplog):
    """BigCommerce signs load, uninstall and remove-user payloads alike: a user's load link must not uninstall the app."""
    caplog.set_level(logging.WARNING)
    token = signed(bigcommerce, user_id=77)
    assert load(app.test_client(), token).status_code == 303
    again = app.test_client()
    assert load(again, token).status_code == 401 and not signed_in(again)
    for path in ("/bigcommerce/uninstall", "/bigcommerce/remove-user"):
        response = app.test_client().get(path, query_string={"signed_payload_jwt": token})
        assert response.status_code == 401 and response.get_json() == {"error": "invalid or expired"}
    assert store_row(db)["access_token"] and store_row(db)["uninstalled_at"] is None
    assert 77 in [user[0] for user in users(db)]
    assert "was used before" in caplog.text and token not in caplog.text


def test_an_uninstall_payload_from_before_a_reinstall_changes_nothing(client, db, bigcommerce, app_store, settings):
    assert install(client, bigcommerce).status_code == 200
    old = signed(bigcommerce, iat=int(time.time()) - 600, nbf=int(time.time()) - 600)
    assert uninstall(client, old).status_code == 401
    assert store_row(db)["uninstalled_at"] is None and StoreRegistry(settings).get(db, APP_STORE) is not None


def test_uninstall_when_the_database_fails_is_a_503(client, db, bigcommerce, installed):
    db.execute("DROP TABLE store_users")
    response = uninstall(client, signed(bigcommerce))
    assert response.status_code == 503 and "database" in response.get_json()["error"]


# --- The store/app/uninstalled webhook -----------------------------------------------------------------


def test_the_app_uninstalled_webhook_uninstalls_the_app_store(client, db, settings, installed):
    body = envelope("store/app/uninstalled", {"type": "store"}, store_hash=APP_STORE, created_at=int(time.time()) + 1)
    assert post_webhook(client, body, token=hook_token_of(APP_STORE)).status_code == 200
    (event,) = db.query("SELECT state, outcome FROM events")
    assert (event["state"], event["outcome"]) == ("done", "uninstalled")
    assert store_row(db)["access_token"] is None and store_row(db)["uninstalled_at"] is not None
    assert StoreRegistry(settings).get(db, APP_STORE) is None and users(db) == []


def test_an_uninstall_webhook_older_than_a_reinstall_changes_nothing(client, db, settings, installed):
    body = envelope("store/app/uninstalled", {"type": "store"}, store_hash=APP_STORE, created_at=int(time.time()) - 3600)
    assert post_webhook(client, body, token=hook_token_of(APP_STORE)).status_code == 200
    (event,) = db.query("SELECT state, outcome FROM events")
    assert (event["state"], event["outcome"]) == ("ignored", "stale_uninstall")
    assert StoreRegistry(settings).get(db, APP_STORE) is not None


def test_the_app_uninstalled_webhook_for_the_configured_store_only_records_it(client, db, settings):
    body = envelope("store/app/uninstalled", {"type": "store"}, created_at=int(time.time()) + 1)
    assert post_webhook(client, body).status_code == 200
    (event,) = db.query("SELECT state, outcome FROM events")
    assert (event["state"], event["outcome"]) == ("ignored", "not_app_install")
    assert StoreRegistry(settings).get(db, STORE_HASH) is not None
