"""Who is looking: sign-in with the admin token, sessions, bearer tokens, CSRF and the
security headers every response carries.

A view asks for a viewer with ``@require_viewer(json=...)`` and reads ``flask.g.viewer``;
templates put ``{{ csrf_token() }}`` in every form that posts. The CSRF check and the
headers are app-wide hooks installed by :func:`init_app`, so every blueprint is covered.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, g, jsonify, make_response, redirect, render_template, request, session, url_for
from werkzeug.exceptions import BadRequest

from bridge.config import Settings
from bridge.storage import stores as store_records
from bridge.web.database import get_db

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

SESSION_LIFETIME = timedelta(hours=12)
SESSION_COOKIE = "bridge_session"
MAX_FAILURES = 5  # failed sign-ins per client address ...
FAILURE_WINDOW = 60.0  # ... in this many seconds
MAX_TOKEN_LENGTH = 4096
MAX_NEXT_LENGTH = 2048
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_EXEMPT_PREFIXES = ("/webhooks/",)  # authenticated by their own secrets
CSRF_MESSAGE = "missing or expired form token; reload the page"
# The app config key where ``bridge demo`` puts the one-time sign-in codes it printed (a set).
# Only code that builds the app in its own process can fill it: no setting or variable does.
ONE_TIME_CODES = "BRIDGE_ONE_TIME_CODES"
CONTROL_PANEL_ORIGINS = ("https://*.bigcommerce.com", "https://*.mybigcommerce.com")
CSP_BASE = "default-src 'self'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; base-uri 'none'"


@dataclass(frozen=True)
class Viewer:
    """Someone allowed to look: the admin (every store) or a user of one installed store."""

    is_admin: bool
    stores: frozenset[str] | None  # None: every store
    user_id: int | None = None  # the BigCommerce user a store's session belongs to

    def can_see(self, store_hash: str) -> bool:
        return self.stores is None or store_hash in self.stores


ADMIN = Viewer(is_admin=True, stores=None)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two strings (as UTF-8 bytes)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def bearer_token() -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def viewer() -> Viewer | None:
    """The current viewer: from a bearer admin token, else from the session, else None.

    A request that presents a bearer token is judged by it alone: a wrong token never
    falls back to a session cookie the browser happened to send. Wrong bearer tokens count
    as failed sign-ins, so guessing through the API is limited like the form.
    """
    if "bridge_viewer" not in g:
        token = bearer_token()
        g.bridge_viewer = _session_viewer() if token is None else _bearer_viewer(token)
    return g.bridge_viewer


def require_viewer(json: bool) -> Callable:
    """Decorate a view that needs a viewer; it finds it in ``g.viewer``.

    Without one: 401 ``{"error": ...}`` with ``WWW-Authenticate: Bearer`` when ``json``,
    else a redirect to ``/login?next=<this path>``; 429 with ``Retry-After`` for a bearer
    token from an address that has failed too often.
    """

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            current = viewer()
            if current is None:
                wait = g.get("bridge_retry_after", 0)
                if wait:
                    response = jsonify(error=f"too many failed attempts from your address; retry in {wait} seconds")
                    response.status_code = 429
                    response.headers["Retry-After"] = str(wait)
                    return response
                if json:
                    response = jsonify(error="sign in first, or send Authorization: Bearer <admin token>")
                    response.status_code = 401
                    response.headers["WWW-Authenticate"] = "Bearer"
                    return response
                here = request.full_path if request.query_string else request.path
                return redirect(url_for("auth.login", next=here))
            g.viewer = current
            return view(*args, **kwargs)

        return wrapped

    return decorate


def csrf_token() -> str:
    """This session's form token (created on first use); empty when sessions are off."""
    if not current_app.secret_key:
        return ""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Refuse (400) a state-changing request made with a session that lacks its form token.

    Bearer-token requests and ``/webhooks/*`` need none; neither do requests with no
    signed-in session, as they carry no authority a forged form could borrow.
    """
    if request.method not in UNSAFE_METHODS or request.path.startswith(CSRF_EXEMPT_PREFIXES):
        return
    if bearer_token() is not None or _session_viewer() is None:
        return
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    expected = session.get("csrf")
    if not (isinstance(expected, str) and sent and same_secret(sent, expected)):
        raise BadRequest(CSRF_MESSAGE)


def start_session(who: Viewer) -> None:
    """Sign ``who`` in for :data:`SESSION_LIFETIME`, in a fresh session with a new form token."""
    if who.is_admin != (who.stores is None) or (who.is_admin and not _server().admin_token):
        raise ValueError("a session is either the admin's (needs server.admin_token) or a store user's")
    if not who.is_admin and (len(who.stores) != 1 or who.user_id is None):
        raise ValueError("a store's session names one store and its user")
    if who.is_admin:
        record = {"admin": True, "key": _admin_key(_server().admin_token)}
    else:
        record = {"admin": False, "stores": sorted(who.stores), "user": who.user_id}
    session.clear()
    session.permanent = True
    session.update(viewer=record, at=int(time.time()), csrf=secrets.token_urlsafe(32))


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this site, else ``/`` (no open redirects)."""
    if not target or len(target) > MAX_NEXT_LENGTH or not target.startswith("/"):
        return "/"
    # Browsers read "\" as "/" and drop tabs and newlines, so "/\evil.com" is "//evil.com".
    if "\\" in target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith("//"):
        return "/"
    return target


class FailureLimiter:
    """Failed sign-ins per client address over a sliding window, in this process's memory.

    Each web process counts on its own (so N processes allow N × the limit) and a restart
    forgets; both are fine for slowing down guessing of a long random token.
    """

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW, clock=time.monotonic, max_clients: int = 10_000):
        self.limit, self.window, self.clock, self.max_clients = limit, window, clock, max_clients
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """Whole seconds ``client`` must wait before trying again; 0 when it may try now."""
        with self._lock:
            failures = self._recent(client)
            if len(failures) < self.limit:
                return 0
            return max(1, math.ceil(round(failures[0] + self.window - self.clock(), 3)))

    def fail(self, client: str) -> None:
        with self._lock:
            if client not in self._failures and len(self._failures) >= self.max_clients:
                self._prune()
            self._failures.setdefault(client, deque(maxlen=self.limit)).append(self.clock())

    def forget(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client, deque())
        while failures and failures[0] <= self.clock() - self.window:
            failures.popleft()
        return failures

    def _prune(self) -> None:
        for client in [c for c in self._failures if not self._recent(c)]:
            del self._failures[client]
        while len(self._failures) >= self.max_clients:  # still full: drop the oldest addresses
            del self._failures[next(iter(self._failures))]


def init_app(app: Flask, settings: Settings) -> None:
    """Install sessions, the sign-in pages, the CSRF check and the security headers.

    The settings were checked when loaded: an admin token always comes with a session secret.
    """
    app.config.update(
        SECRET_KEY=settings.server.session_secret,
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        # The page lives in the control panel's cross-site iframe: Chromium sends such a
        # frame only cookies that are SameSite=None, Secure and Partitioned (CHIPS).
        SESSION_COOKIE_SAMESITE="None",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_PARTITIONED=True,
        SESSION_COOKIE_HTTPONLY=True,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    app.extensions["bridge_login_limiter"] = FailureLimiter()
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.before_request(check_csrf)
    app.after_request(security_headers)
    app.register_blueprint(bp)


def content_security_policy(settings: Settings) -> str:
    ancestors = " ".join(("'self'", *CONTROL_PANEL_ORIGINS, *settings.server.frame_ancestors))
    return f"{CSP_BASE}; frame-ancestors {ancestors}"


def security_headers(response: Response) -> Response:
    """Headers for every response; a view's own CSP or Cache-Control is kept."""
    response.headers.setdefault("Content-Security-Policy", content_security_policy(current_app.config["BRIDGE_SETTINGS"]))
    response.headers.pop("X-Frame-Options", None)  # frame-ancestors decides who may frame us
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    """The admin-token form; on success a 12-hour session and a redirect to ``next``."""
    admin_token = _server().admin_token
    if not admin_token:
        return render_template("login.html", enabled=False), 404
    target = safe_next(request.values.get("next"))
    signed_in = _session_viewer() is not None
    if request.method == "GET":
        return render_template("login.html", enabled=True, next=target, signed_in=signed_in)

    client, limiter = _client(), _limiter()
    wait = limiter.retry_after(client)
    if wait:
        log.warning("Sign-in from %s refused: too many failed attempts, retry in %d s", client, wait)
        error = f"Too many failed sign-ins from your address. Try again in {wait} seconds."
        response = make_response(render_template("login.html", enabled=True, next=target, signed_in=signed_in, error=error), 429)
        response.headers["Retry-After"] = str(wait)
        return response
    token = request.form.get("token", "")
    if len(token) > MAX_TOKEN_LENGTH or not same_secret(token, admin_token):
        limiter.fail(client)
        log.warning("Failed sign-in from %s", client)
        error = "That is not the admin token."
        return render_template("login.html", enabled=True, next=target, signed_in=signed_in, error=error), 401

    limiter.forget(client)
    start_session(ADMIN)
    log.info("Admin signed in from %s", client)
    return redirect(target, 303)


@bp.get("/login/once/<code>")
def login_once(code: str):
    """Sign the admin in with a one-time code from :data:`ONE_TIME_CODES`, then go to the status page.

    Each code works once; a used, unknown or missing code is refused (and counts as a failed
    sign-in). Without codes in the app's config (every app but ``bridge demo``'s) nothing signs in here.
    """
    client, limiter = _client(), _limiter()
    wait = limiter.retry_after(client)
    if wait:
        message = f"Too many failed sign-ins from your address. Try again in {wait} seconds."
        response = make_response(render_template("error.html", status=429, title="Too many attempts", message=message), 429)
        response.headers["Retry-After"] = str(wait)
        return response
    codes = current_app.config.get(ONE_TIME_CODES) or set()
    with _ONE_TIME_LOCK:
        # Every code compared: no timing hint about which one nearly matched.
        matched = [known for known in list(codes) if same_secret(code, known)]
        for known in matched:
            codes.discard(known)
    if not matched or not _server().admin_token:
        limiter.fail(client)
        log.warning("Refused a one-time sign-in link from %s: used already or not valid", client)
        message = "This sign-in link was used already or is not valid: each link signs in once."
        return render_template("error.html", status=403, title="Link used", message=message), 403
    start_session(ADMIN)
    log.info("Admin signed in from %s with a one-time link", client)
    return redirect("/", 303)


_ONE_TIME_LOCK = threading.Lock()


@bp.post("/logout")
def logout():
    """Forget the session (the CSRF hook has checked the form token)."""
    session.clear()
    return redirect(url_for("auth.login"), 303)


def _server():
    return current_app.config["BRIDGE_SETTINGS"].server


def _client() -> str:
    return request.remote_addr or "unknown"


def _limiter() -> FailureLimiter:
    return current_app.extensions["bridge_login_limiter"]


def _bearer_viewer(token: str) -> Viewer | None:
    admin_token = _server().admin_token
    if not admin_token:
        return None
    g.bridge_retry_after = _limiter().retry_after(_client())
    if g.bridge_retry_after:
        return None
    if same_secret(token, admin_token):
        return ADMIN
    _limiter().fail(_client())
    log.warning("Wrong bearer token from %s", _client())
    return None


def check_token(presented: str | None, accepted: list[str]) -> tuple[bool, int]:
    """Compare a presented bearer token with the accepted ones under the sign-in rate limit.

    Returns (matched, seconds to wait): an address that failed too often is refused
    without a comparison, and a wrong token counts as one more failure.
    """
    client = _client()
    wait = _limiter().retry_after(client)
    if wait:
        return False, wait
    if presented is None:
        return False, 0
    if any([same_secret(presented, token) for token in accepted]):  # every one compared: no timing hint
        return True, 0
    _limiter().fail(client)
    log.warning("Wrong bearer token from %s", client)
    return False, 0


def _admin_key(admin_token: str) -> str:
    """Ties an admin session to the admin token, so changing the token signs everyone out."""
    return hmac.new(current_app.secret_key.encode(), b"admin:" + admin_token.encode(), hashlib.sha256).hexdigest()[:32]


def _session_viewer() -> Viewer | None:
    """The viewer a signed, unexpired session names; anything else is nobody."""
    if not current_app.secret_key:
        return None
    who, at = session.get("viewer"), session.get("at")
    if not isinstance(who, dict) or not isinstance(at, int) or isinstance(at, bool):
        return None
    now = time.time()
    if not now - SESSION_LIFETIME.total_seconds() < at <= now + 60:  # a minute's grace for a clock stepped back
        return None
    if who.get("admin") is True:
        admin_token = _server().admin_token
        key = who.get("key")
        return ADMIN if admin_token and isinstance(key, str) and same_secret(key, _admin_key(admin_token)) else None
    # A store user's session lasts while the app stays installed and the user keeps access
    # (uninstall and remove-user end it at once, whatever cookie the browser kept).
    stores, user = who.get("stores"), who.get("user")
    if not (isinstance(stores, list) and len(stores) == 1 and isinstance(stores[0], str)):
        return None
    if not isinstance(user, int) or isinstance(user, bool):
        return None
    if not store_records.has_user(get_db(), store_hash=stores[0], user_id=user):
        return None
    return Viewer(is_admin=False, stores=frozenset(stores), user_id=user)
