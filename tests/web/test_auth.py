"""Sign-in, sessions, bearer tokens, CSRF and the security headers (bridge/web/auth.py)."""

from __future__ import annotations

import base64
import hmac
import logging
import zlib

import pytest
from flask import g, jsonify
from freezegun import freeze_time

from bridge.config import ConfigError
from bridge.storage.db import immediate
from bridge.web import auth
from bridge.web.app import create_app
from tests.conftest import install_store, store_user_client

ADMIN_TOKEN = "admin-token-5f1c9e7a2b3d4c6e"
SESSION_SECRET = "session-secret-8d7c6b5a4f3e2d1c"
COOKIE = auth.SESSION_COOKIE
CSP = (
    "default-src 'self'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'self' https://*.bigcommerce.com https://*.mybigcommerce.com"
)


def _private_json():
    return jsonify(viewer={"is_admin": g.viewer.is_admin, "all_stores": g.viewer.stores is None})


def _private_page():
    return "<p>private</p>"


def build(make_settings, **overrides):
    """The app signed in with the admin token, plus two test-only views behind require_viewer."""
    options = {"server_admin_token": ADMIN_TOKEN, "server_session_secret": SESSION_SECRET, **overrides}
    app = create_app(make_settings(**options))
    app.config["TESTING"] = True
    app.add_url_rule("/api/test-private", view_func=auth.require_viewer(json=True)(_private_json), methods=["GET", "POST", "DELETE"])
    app.add_url_rule("/test-page", view_func=auth.require_viewer(json=False)(_private_page))
    return app


@pytest.fixture
def app(make_settings):
    return build(make_settings)


@pytest.fixture
def client(app):
    return app.test_client()


def sign_in(client, token=ADMIN_TOKEN, **data):
    return client.post("/login", data={"token": token, **data})


def csrf_of(client) -> str:
    """The form token the signed-in page would put in its forms."""
    with client.session_transaction() as session:
        return session["csrf"]


def test_the_login_page_is_a_plain_form(client):
    response = client.get("/login")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'name="token"' in page and 'type="password"' in page
    assert "<style" not in page and "<script" not in page and "style=" not in page  # the CSP allows neither
    assert 'href="/static/bridge.css"' in page
    assert response.headers.get("Set-Cookie") is None  # no cookie before anyone signs in


def test_the_stylesheet_is_served(client):
    response = client.get("/static/bridge.css")
    assert response.status_code == 200 and response.mimetype == "text/css"
    response.close()


def test_the_right_token_signs_in_and_redirects_home(client):
    assert client.get("/api/test-private").status_code == 401
    response = sign_in(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert client.get("/api/test-private").get_json() == {"viewer": {"is_admin": True, "all_stores": True}}
    assert client.get("/test-page").status_code == 200


def test_a_wrong_token_is_refused_and_sets_no_session(client):
    response = sign_in(client, token=ADMIN_TOKEN[:-1] + "x")
    assert response.status_code == 401
    assert "That is not the admin token." in response.get_data(as_text=True)
    assert response.headers.get("Set-Cookie") is None
    assert client.get("/api/test-private").status_code == 401


def test_the_token_is_compared_in_constant_time(client, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert sign_in(client, token="not-it").status_code == 401
    assert sign_in(client).status_code == 303
    assert (b"not-it", ADMIN_TOKEN.encode()) in compared
    assert (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode()) in compared
    compared.clear()
    assert client.get("/api/test-private", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
    assert (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode()) in compared


def test_sign_in_is_rate_limited_per_address_and_says_when_to_retry(app, client, clock):
    app.extensions["bridge_login_limiter"].clock = clock
    for _ in range(auth.MAX_FAILURES):
        assert sign_in(client, token="guess").status_code == 401
        clock.advance(1)
    refused = sign_in(client)  # even the right token: guessing must stop
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "55"  # the first failure, 5 s ago, leaves the window in 55 s
    assert "Try again in 55 seconds" in refused.get_data(as_text=True)
    assert client.get("/api/test-private").status_code == 401

    other = app.test_client()
    assert other.post("/login", data={"token": ADMIN_TOKEN}, environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 303

    clock.advance(54)
    assert sign_in(client).status_code == 429
    clock.advance(1)
    assert sign_in(client).status_code == 303


def test_a_successful_sign_in_clears_the_failures(app, client, clock):
    app.extensions["bridge_login_limiter"].clock = clock
    for _ in range(auth.MAX_FAILURES - 1):
        sign_in(client, token="typo")
    assert sign_in(client).status_code == 303
    later = app.test_client()  # signed out, from the same address
    for _ in range(auth.MAX_FAILURES - 1):
        assert sign_in(later, token="typo").status_code == 401


def test_the_limiter_forgets_old_addresses_when_full():
    now = [0.0]
    limiter = auth.FailureLimiter(limit=2, window=60, clock=lambda: now[0], max_clients=3)
    for client in ("a", "b", "c", "d"):
        limiter.fail(client)
        limiter.fail(client)
    assert limiter.retry_after("a") == 0  # dropped to make room
    assert limiter.retry_after("d") == 60
    now[0] = 61
    limiter.fail("e")
    assert limiter.retry_after("b") == 0 and len(limiter._failures) == 1


@pytest.mark.parametrize("target", ["/api/test-private", "/test-page?a=1&b=%2F", "/orders/1042#story"])
def test_sign_in_returns_to_a_path_on_this_site(client, target):
    response = sign_in(client, next=target)
    assert response.status_code == 303 and response.headers["Location"] == target


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "javascript:alert(1)",
        "http:/evil.example",
        "evil.example",
        "/" + "a" * 5000,
    ],
)
def test_open_redirects_are_refused(client, target):
    assert 'name="next"' not in client.get("/login", query_string={"next": target}).get_data(as_text=True)
    response = sign_in(client, next=target)
    assert response.status_code == 303 and response.headers["Location"] == "/"


def test_a_page_without_a_viewer_sends_to_the_login_form_and_back(client):
    response = client.get("/test-page?a=1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/test-page?a%3D1"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'name="next" value="/test-page?a=1"' in page
    assert sign_in(client, next="/test-page?a=1").headers["Location"] == "/test-page?a=1"


def test_the_session_cookie_works_in_a_cross_site_frame(client):
    cookie = sign_in(client).headers["Set-Cookie"]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
    assert cookie.startswith(f"{COOKIE}=")
    assert {"secure", "httponly", "partitioned"} <= attributes.keys()
    assert attributes["samesite"] == "SameSite=None"
    assert attributes["path"] == "Path=/"
    assert "expires" in attributes  # a 12-hour cookie, not one that lives as long as the browser


def test_the_session_holds_no_secret(client):
    sign_in(client)
    value = client.get_cookie(COOKIE).value
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    text = (zlib.decompress(raw) if value.startswith(".") else raw).decode()
    assert '"admin":true' in text.replace(" ", "")
    assert ADMIN_TOKEN not in text and SESSION_SECRET not in text


def test_logout_needs_the_form_token_and_clears_the_session(client):
    sign_in(client)
    refused = client.post("/logout")
    assert refused.status_code == 400
    assert auth.CSRF_MESSAGE in refused.get_data(as_text=True)
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/api/test-private").status_code == 200

    response = client.post("/logout", data={"csrf_token": csrf_of(client)})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    cleared = response.headers["Set-Cookie"]
    assert cleared.startswith(f"{COOKIE}=;") and "Partitioned" in cleared and "Expires=Thu, 01 Jan 1970" in cleared
    assert client.get("/api/test-private").status_code == 401


def test_the_signed_in_login_page_offers_sign_out_with_its_form_token(client):
    sign_in(client)
    page = client.get("/login").get_data(as_text=True)
    assert f'name="csrf_token" value="{csrf_of(client)}"' in page
    assert 'action="/logout"' in page


def test_a_bearer_token_opens_json_views_without_a_form_token(client):
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert client.get("/api/test-private", headers=bearer).get_json() == {"viewer": {"is_admin": True, "all_stores": True}}
    assert client.post("/api/test-private", headers=bearer).status_code == 200
    assert client.delete("/api/test-private", headers={"Authorization": f"bearer   {ADMIN_TOKEN} "}).status_code == 200


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", f"Basic {ADMIN_TOKEN}", "Bearer", f"Bearer {ADMIN_TOKEN}x", "Bearer é🙂\x00", ADMIN_TOKEN]
)
def test_json_views_answer_401_without_a_viewer(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/api/test-private", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json() == {"error": "sign in first, or send Authorization: Bearer <admin token>"}


def test_wrong_bearer_tokens_count_as_failed_sign_ins(app, client, clock):
    app.extensions["bridge_login_limiter"].clock = clock
    for _ in range(auth.MAX_FAILURES):
        assert client.get("/api/test-private", headers={"Authorization": "Bearer guess"}).status_code == 401
    refused = client.get("/api/test-private", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert refused.get_json() == {"error": "too many failed attempts from your address; retry in 60 seconds"}
    assert sign_in(client).status_code == 429  # the form and the API share the count
    clock.advance(60)
    assert client.get("/api/test-private", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200


def test_a_wrong_bearer_token_never_falls_back_to_the_session(client):
    sign_in(client)
    assert client.get("/api/test-private", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_session_posts_need_the_form_token_in_a_field_or_header(client):
    sign_in(client)
    refused = client.post("/api/test-private")
    assert refused.status_code == 400
    assert refused.get_json() == {"error": auth.CSRF_MESSAGE}
    assert client.post("/api/test-private", headers={"X-CSRF-Token": "nope"}).status_code == 400
    assert client.post("/api/test-private", headers={"X-CSRF-Token": csrf_of(client)}).status_code == 200
    assert client.post("/api/test-private", data={"csrf_token": csrf_of(client)}).status_code == 200
    assert client.delete("/api/test-private", headers={"X-CSRF-Token": csrf_of(client)}).status_code == 200


def test_webhooks_are_exempt_from_the_form_token(client):
    sign_in(client)
    response = client.post("/webhooks/bigcommerce", data="{}", content_type="application/json")
    assert response.status_code == 401  # its own secret decides, not the session's form token


def test_each_sign_in_gets_a_fresh_form_token(client):
    sign_in(client)
    first = csrf_of(client)
    sign_in(client, csrf_token=first)
    assert csrf_of(client) != first


@pytest.mark.parametrize("value", ["garbage", "", "a.b.c", "eyJ2aWV3ZXIiOnsiYWRtaW4iOnRydWV9fQ.AAAA.BBBB", "." + "x" * 3000, "é🙂"])
def test_a_garbled_session_cookie_is_signed_out_never_500(client, value):
    client.set_cookie(COOKIE, value)
    assert client.get("/api/test-private").status_code == 401
    assert client.get("/test-page").status_code == 302
    assert client.get("/login").status_code == 200
    assert client.post("/logout").status_code == 303
    assert client.post("/api/test-private").status_code == 401


def test_a_session_signed_with_another_secret_is_signed_out(make_settings):
    other = build(make_settings, server_session_secret="another-secret-0a9b8c7d6e5f").test_client()
    sign_in(other)
    client = build(make_settings).test_client()
    client.set_cookie(COOKIE, other.get_cookie(COOKIE).value)
    assert client.get("/api/test-private").status_code == 401


def test_a_session_ends_after_12_hours(client):
    with freeze_time("2026-03-01 08:00:00") as frozen:
        sign_in(client)
        frozen.tick(11 * 3600)
        assert client.get("/api/test-private").status_code == 200
        frozen.tick(3600)
        assert client.get("/api/test-private").status_code == 401
        assert client.post("/api/test-private").status_code == 401  # stale: a 401, not a form-token 400


def test_changing_the_admin_token_signs_everyone_out(make_settings):
    before = build(make_settings).test_client()
    sign_in(before)
    after = build(make_settings, server_admin_token="a-new-admin-token-77aa88bb99").test_client()
    after.set_cookie(COOKIE, before.get_cookie(COOKIE).value)
    assert after.get("/api/test-private").status_code == 401


def test_session_contents_of_the_wrong_shape_are_nobody(client):
    for contents in ({"viewer": {"admin": True}, "at": "soon"}, {"viewer": ["admin"], "at": 1}, {"viewer": {"stores": []}}, {"at": True}):
        with client.session_transaction() as session:
            session.clear()
            session.update(contents)
        assert client.get("/api/test-private").status_code == 401


@pytest.fixture
def store_user(app, settings):
    """A client signed in as user 31 of the installed store app456."""
    return store_user_client(app, settings, "app456", 31)


def test_a_store_scoped_session_sees_only_its_stores(store_user):
    client = store_user
    assert client.get("/api/test-private").get_json() == {"viewer": {"is_admin": False, "all_stores": False}}
    assert client.post("/api/test-private").status_code == 400  # a session: the form token is needed
    viewer = auth.Viewer(is_admin=False, stores=frozenset({"app456"}), user_id=31)
    assert viewer.can_see("app456") and not viewer.can_see("def456")
    assert auth.ADMIN.can_see("anything")


def test_a_store_session_ends_when_the_user_is_removed_or_the_app_uninstalled(store_user, settings, db):
    from bridge.storage import stores

    client = store_user
    assert client.get("/api/test-private").status_code == 200
    with immediate(db):
        stores.remove_user(db, store_hash="app456", user_id=31)
    assert client.get("/api/test-private").status_code == 401
    install_store(settings, "app456", user_id=31)
    assert client.get("/api/test-private").status_code == 200  # the cookie was kept; the user is back
    with immediate(db):
        stores.uninstall(db, store_hash="app456", now=1.0)
    assert client.get("/api/test-private").status_code == 401


@pytest.mark.parametrize(
    "who",
    [
        auth.Viewer(is_admin=False, stores=None),
        auth.Viewer(is_admin=True, stores=frozenset({"a"})),
        auth.Viewer(is_admin=False, stores=frozenset({"a"})),  # a store's session names its user
        auth.Viewer(is_admin=False, stores=frozenset({"a", "b"}), user_id=1),
    ],
)
def test_a_session_is_either_the_admins_or_some_stores(app, who):
    with app.test_request_context(), pytest.raises(ValueError):
        auth.start_session(who)


def test_pages_carry_the_security_headers(client):
    for response in (client.get("/login"), client.get("/no-such-page"), client.get("/test-page"), sign_in(client, token="x")):
        assert response.headers["Content-Security-Policy"] == CSP
        assert "X-Frame-Options" not in response.headers
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
    sign_in(client)
    assert client.get("/test-page").headers["Cache-Control"] == "no-store"


def test_configured_frame_ancestors_join_the_control_panel(make_settings):
    client = build(make_settings, server_frame_ancestors="https://*.example.com, http://localhost:9000").test_client()
    assert client.get("/login").headers["Content-Security-Policy"] == CSP + " https://*.example.com http://localhost:9000"


def test_without_an_admin_token_the_login_page_points_to_the_control_panel(make_settings):
    client = build(make_settings, server_admin_token=None, server_session_secret=None).test_client()
    response = client.get("/login")
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert "BigCommerce control panel" in page and 'name="token"' not in page
    assert client.post("/login", data={"token": "anything"}).status_code == 404
    assert client.get("/api/test-private", headers={"Authorization": "Bearer anything"}).status_code == 401
    assert client.get("/test-page").headers["Location"] == "/login?next=/test-page"


def test_an_admin_token_without_a_session_secret_stops_start_up(make_settings):
    with pytest.raises(ConfigError) as raised:
        create_app(make_settings(server_admin_token=ADMIN_TOKEN))
    assert "config error: server.session_secret: Required when server.admin_token is set" in str(raised.value)
    assert ADMIN_TOKEN not in str(raised.value)


def test_short_secrets_stop_start_up(make_settings):
    with pytest.raises(ConfigError, match=r"server\.session_secret: Must be at least 16"):
        create_app(make_settings(server_admin_token=ADMIN_TOKEN, server_session_secret="short-secret"))
    with pytest.raises(ConfigError, match=r"server\.admin_token: Must be at least 16"):
        create_app(make_settings(server_admin_token="short-token", server_session_secret=SESSION_SECRET))


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_wrong_methods_on_login_are_405(client, method):
    assert client.open("/login", method=method).status_code == 405


def test_hostile_sign_in_requests_get_a_clear_4xx(app, client):
    app.extensions["bridge_login_limiter"].limit = 100
    answers = [
        client.post("/login", data={"token": "x" * 200_000}),  # over the body limit
        client.post("/login", data={"token": "x" * 5_000}),  # under it, over any sane token
        client.post("/login", data={"token": "\x00\u202e\ufeff🙂é"}),
        client.post("/login", data={"token": ["a", "b"]}),
        client.post("/login", data=b"\xff\xfe\x00token=%ff%fe", content_type="application/x-www-form-urlencoded"),
        client.post("/login", data={"file": (__import__("io").BytesIO(b"x" * 1000), "f.txt")}),
        client.post("/login", json={"token": ADMIN_TOKEN}),  # the form, not JSON
        client.post("/login", data="token", content_type="text/plain"),
        client.get("/login", query_string={"next": "/" + "é" * 50_000}),
        client.get("/logout"),
        client.get("/api/test-private", headers={"Authorization": "Bearer " + "t" * 100_000}),
        client.get("/api/test-private", headers={"Authorization": "Bearer \u00ff\u00fe"}),
    ]
    codes = [response.status_code for response in answers]
    assert codes == [413, 401, 401, 401, 401, 401, 401, 401, 200, 405, 401, 401]


def test_no_secret_in_any_response_or_log_line(app, client, caplog):
    caplog.set_level(logging.DEBUG)
    answers = [
        client.get("/login"),
        sign_in(client, token=ADMIN_TOKEN[:-1]),
        client.get("/api/test-private", headers={"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}),
        client.get("/api/test-private", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
        sign_in(client),
        client.get("/login"),
        client.get("/test-page"),
        client.post("/logout"),
        client.post("/logout", data={"csrf_token": csrf_of(client)}),
    ]
    assert [response.status_code for response in answers] == [200, 401, 401, 200, 303, 200, 200, 400, 303]
    assert "Failed sign-in from 127.0.0.1" in caplog.text and "Admin signed in from 127.0.0.1" in caplog.text
    seen = caplog.text + "".join(f"{response.headers}{response.get_data(as_text=True)}" for response in answers)
    for secret in (ADMIN_TOKEN, ADMIN_TOKEN[:-1], SESSION_SECRET):
        assert secret not in seen


# --- One-time sign-in links (bridge demo) ----------------------------------------------------------

ONE_TIME_CODE = "once-4f9a1c7e2b8d6a3f5e0c"


def test_a_one_time_link_signs_the_admin_in_once(app, client):
    app.config[auth.ONE_TIME_CODES] = {ONE_TIME_CODE}
    response = client.get(f"/login/once/{ONE_TIME_CODE}")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert client.get("/api/test-private").get_json() == {"viewer": {"is_admin": True, "all_stores": True}}

    again = app.test_client().get(f"/login/once/{ONE_TIME_CODE}")  # another browser, the same link
    assert again.status_code == 403
    assert "used already or is not valid" in again.get_data(as_text=True)
    assert client.get(f"/login/once/{ONE_TIME_CODE}").status_code == 403  # nor twice in one browser
    assert app.config[auth.ONE_TIME_CODES] == set()


def test_without_one_time_codes_the_link_signs_nobody_in(app, client):
    """Only ``bridge demo`` puts codes in the app's config: no setting or variable can."""
    for code in (ONE_TIME_CODE, "x"):
        response = client.get(f"/login/once/{code}")
        assert response.status_code == 403
        assert "bridge_session" not in response.headers.get("Set-Cookie", "")
    assert client.get("/api/test-private").status_code == 401


def test_wrong_one_time_codes_count_as_failed_sign_ins(app, client, clock):
    app.extensions["bridge_login_limiter"].clock = clock
    app.config[auth.ONE_TIME_CODES] = {ONE_TIME_CODE}
    for _ in range(auth.MAX_FAILURES):
        assert client.get("/login/once/guess").status_code == 403
    refused = client.get(f"/login/once/{ONE_TIME_CODE}")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert app.config[auth.ONE_TIME_CODES] == {ONE_TIME_CODE}  # not spent by a refused attempt
