"""The BigCommerce app callbacks: install (auth), load, uninstall and remove-user.

reference/bigcommerce.md section 4. The install callback trades the one-time ``code`` for
the store's access token, stores it encrypted and registers the store's order hooks; load
opens the status page with a session for that store and user; uninstall and remove-user
are BigCommerce's server telling us. Load, uninstall and remove-user carry a JWT signed
with the app's client secret, verified here with PyJWT (HS256 only, as BigCommerce's Node
client does). A refused JWT is only ever "invalid or expired" to the caller; the log says
which check failed, never the token.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

import jwt
from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request
from marshmallow import ValidationError, fields, validate
from sqlite_utils import Database

from bridge.clients.bigcommerce import FAILED, BigCommerceClient, BigCommerceError, HookResult, UserSchema, exchange_code
from bridge.config import Settings
from bridge.core import scopes as needed_scopes
from bridge.core.hooks import destination_for, destination_problem, hook_token, wanted_scopes
from bridge.core.retry import Failure
from bridge.schemas import STORE_HASH, Lenient
from bridge.storage import stores
from bridge.storage.db import immediate
from bridge.storage.vault import VaultError
from bridge.web.auth import Viewer, safe_next, start_session
from bridge.web.database import get_db

log = logging.getLogger(__name__)

bp = Blueprint("app_install", __name__)

JWT_ALGORITHMS = ["HS256"]  # what BigCommerce signs with; HS512 and "none" are refused
JWT_LEEWAY = 60  # seconds of clock skew allowed on exp, nbf and iat
JWT_REQUIRED = ["exp", "iat", "sub", "aud", "jti"]
MAX_JWT_LENGTH = 8192
MAX_CODE_LENGTH = 1024
INSTALL_HOOKS_BUDGET = 15.0  # seconds of hook calls in the install request (gunicorn stops a request at 30 s)
LOAD_HOOKS_BUDGET = 5.0  # the load callback only checks and repairs, and the owner is waiting
INVALID = "invalid or expired"
INVALID_PAGE = "This link is invalid or expired. Open the app again from the BigCommerce control panel (Apps › My Apps)."
AGAIN = "Install the app again from the BigCommerce control panel (Apps › My Apps › My Draft Apps)."

CLIENT_ID, CLIENT_SECRET = "bigcommerce.client_id", "bigcommerce.client_secret"
PUBLIC_URL, ENCRYPTION_KEY, SESSION_SECRET = "server.public_url", "server.encryption_key", "server.session_secret"
INSTALL_SETTINGS = (CLIENT_ID, CLIENT_SECRET, PUBLIC_URL, ENCRYPTION_KEY, SESSION_SECRET)
LOAD_SETTINGS = (CLIENT_ID, CLIENT_SECRET, SESSION_SECRET)
SERVER_SETTINGS = (CLIENT_ID, CLIENT_SECRET)  # uninstall and remove-user start no session
WHY_SETTING = {
    CLIENT_ID: "the app's client id, from the Developer Portal (My Apps › the app › View Client ID)",
    CLIENT_SECRET: "the app's client secret, from the same place",
    PUBLIC_URL: "the https address BigCommerce reaches the bridge at, whose /bigcommerce/auth is the install's redirect_uri",
    ENCRYPTION_KEY: "encrypts the store's access token at rest; `bridge keys generate` prints one",
    SESSION_SECRET: "signs the session that opens the status page inside the control panel",
}


class StoreContext(fields.String):
    """BigCommerce's ``stores/{hash}``, read as the hash."""

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.startswith("stores/"):
            raise ValidationError("Must look like stores/<store_hash>.")
        store_hash = text.removeprefix("stores/")
        STORE_HASH(store_hash)
        return store_hash


ABSENT = {"required": "absent"}


class InstallQuery(Lenient):
    """The install callback's query string (BigCommerce adds ``account_uuid``, unused)."""

    code = fields.String(required=True, validate=validate.Length(min=1, max=MAX_CODE_LENGTH), error_messages=ABSENT)
    scope = fields.String(required=True, validate=validate.Length(min=1, max=4096), error_messages=ABSENT)
    store_hash = StoreContext(required=True, data_key="context", error_messages=ABSENT)


class SignedPayloadSchema(Lenient):
    """The claims of a ``signed_payload_jwt`` the bridge reads (the signature and times are PyJWT's)."""

    store_hash = StoreContext(required=True, data_key="sub")
    jti = fields.String(required=True, validate=validate.Length(min=1, max=200))
    issued_at = fields.Float(required=True, data_key="iat")
    expires_at = fields.Float(required=True, data_key="exp")
    user = fields.Nested(UserSchema, required=True)
    owner = fields.Nested(UserSchema, load_default=None, allow_none=True)
    url = fields.String(load_default="/", allow_none=True)


# --- Pages and answers ---------------------------------------------------------------------


def _page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, message=message), status


def _json(status: int, **body) -> tuple[Response, int]:
    return jsonify(body), status


def _missing_settings(settings: Settings, names: tuple[str, ...]) -> list[str]:
    present = {
        CLIENT_ID: settings.bigcommerce.client_id,
        CLIENT_SECRET: settings.bigcommerce.client_secret,
        PUBLIC_URL: settings.server.public_url,
        ENCRYPTION_KEY: settings.server.encryption_keys,
        SESSION_SECRET: settings.server.session_secret,
    }
    return [name for name in names if not present[name]]


def _unconfigured(callback: str, missing: list[str]) -> str:
    """The operator's sentence for settings the callback cannot work without (and its log line)."""
    log.error("The app's %s callback cannot work: %s not set", callback, ", ".join(missing))
    reasons = "; ".join(f"{name}: {WHY_SETTING[name]}" for name in missing)
    verb = "is" if len(missing) == 1 else "are"
    return f"The bridge is not set up for app installs yet: {', '.join(missing)} {verb} not set ({reasons}). Its operator must set them."


def _settings() -> Settings:
    return current_app.config["BRIDGE_SETTINGS"]


# --- Install (auth) --------------------------------------------------------------------------


@bp.get("/bigcommerce/auth")
def install():
    """A store installs the app: exchange the code, store the install, register its hooks.

    BigCommerce's install flow has no ``state`` parameter to tie the request to a session
    of ours: the request starts in BigCommerce's control panel, not here. A forged or
    replayed link is harmless: the ``code`` is single-use, bound to our client id and
    secret and to the store in ``context``, and the answer must name that same store.
    """
    settings = _settings()
    try:
        query = InstallQuery().load(request.args)
    except ValidationError as error:
        return _page(400, "Incomplete install link", _query_problem(error.messages))
    missing = _missing_settings(settings, INSTALL_SETTINGS)
    if missing:
        return _page(503, "Not set up for app installs", _unconfigured("install", missing))

    store_hash, bc = query["store_hash"], settings.bigcommerce
    try:
        token = exchange_code(
            login_url=bc.login_url,
            client_id=bc.client_id,
            client_secret=bc.client_secret,
            code=query["code"],
            scope=query["scope"],
            store_hash=store_hash,
            redirect_uri=f"{settings.server.public_url}/bigcommerce/auth",
            timeout=bc.timeout,
        )
    except BigCommerceError as error:
        log.warning("Install of store %s failed at the token exchange: %s", store_hash, error)
        status, message = _exchange_failure(error, settings)
        return _page(status, "Install not finished", message)

    lacking = needed_scopes.missing(token["scopes"])
    if lacking:
        log.warning("Install of store %s refused: scopes %s not granted", store_hash, ", ".join(need.scope for need in lacking))
        return _page(400, "Scopes missing", _scope_problem(lacking))

    registry = current_app.config["BRIDGE_STORES"]
    try:
        db = get_db()
        with immediate(db):
            registry.install(
                db,
                store_hash=store_hash,
                access_token=token["access_token"],
                scopes=token["scopes"],
                user=token["user"],
                owner=token["owner"],
                now=time.time(),
            )
        store = registry.get(db, store_hash)
    except (sqlite3.Error, OSError, VaultError) as error:
        log.error("Install of store %s could not be stored: %s", store_hash, type(error).__name__)
        return _page(503, "Install not stored", f"The bridge could not store the install (its database is unavailable right now). {AGAIN}")
    user_id = token["user"]["id"]
    log.info("Store %s installed the app (user %s; scopes %s)", store_hash, user_id, " ".join(token["scopes"]))

    destination = destination_for(settings.server.public_url)
    results, hooks_problem = register_hooks(settings, store_hash, token["access_token"], destination, budget=INSTALL_HOOKS_BUDGET)
    start_session(Viewer(is_admin=False, stores=frozenset({store_hash}), user_id=user_id))
    return render_template(
        "installed.html",
        store_hash=store_hash,
        granted=[(scope, needed_scopes.SCOPE_NAMES.get(scope)) for scope in token["scopes"]],
        recommended_missing=needed_scopes.missing(token["scopes"], needed_scopes.RECOMMENDED),
        results=results,
        hooks_problem=hooks_problem,
        destination=destination,
        default_keys=store is not None and store.refersion is not None,
    )


def _query_problem(messages: dict) -> str:
    absent = [name for name, texts in messages.items() if texts == [ABSENT["required"]]]
    wrong = [f"{name}: {' '.join(texts)}" for name, texts in messages.items() if name not in absent]
    parts = []
    if absent:
        parts.append(f"The install link lacks {', '.join(absent)}, which BigCommerce adds when a store installs the app.")
    if wrong:
        parts.append(f"It is not what BigCommerce sends ({'; '.join(wrong)}).")
    return " ".join([*parts, AGAIN])


def _exchange_failure(error: BigCommerceError, settings: Settings) -> tuple[int, str]:
    """The status and the page's sentence for a failed token exchange. Nothing was stored."""
    login_url = settings.bigcommerce.login_url
    nothing = "Nothing was installed."
    if error.failure is Failure.TIMEOUT:
        return 502, f"BigCommerce's login server ({login_url}) did not answer in time ({error.detail}). {nothing} {AGAIN}"
    if error.failure is Failure.CONNECTION:
        return 502, (
            f"The bridge could not reach BigCommerce's login server ({login_url}): {error.detail}. {nothing} "
            "Its operator should check bigcommerce.login_url and the network; then install the app again."
        )
    if error.failure is Failure.BAD_RESPONSE:
        return 502, f"BigCommerce's login server sent an answer the bridge cannot use ({error.detail}). {nothing} {AGAIN}"
    said = f"{error.status}: {error.detail}" if error.detail else str(error.status)
    if error.status == 401:
        return 502, (
            f"BigCommerce refused the app's credentials ({said}). {nothing} Its operator must set {CLIENT_ID} and "
            f"{CLIENT_SECRET} to the app's, from the Developer Portal (My Apps › the app › View Client ID)."
        )
    if error.status is not None and 400 <= error.status < 500:
        hint = ""
        if "redirect" in error.detail.lower():
            hint = f" {PUBLIC_URL} must be the address of the app's Auth Callback URL ({settings.server.public_url}/bigcommerce/auth)."
        return 400, f"BigCommerce refused this install ({said}). An install link works once, for a few minutes.{hint} {nothing} {AGAIN}"
    return 502, f"BigCommerce's login server answered {said}. {nothing} Try again in a few minutes: {AGAIN[0].lower()}{AGAIN[1:]}"


def _scope_problem(lacking: list[needed_scopes.Need]) -> str:
    named = "; ".join(f"{need.name} ({need.scope}): {need.why}" for need in lacking)
    return (
        f"The store granted the app too few scopes. The bridge needs {named}. Nothing was stored. "
        "The app's developer must add the scope in the Developer Portal (My Apps › the app › Edit App › OAuth scopes); "
        "then the store installs the app again."
    )


# --- Hooks ---------------------------------------------------------------------------------------


def register_hooks(
    settings: Settings, store_hash: str, access_token: str, destination: str, *, budget: float
) -> tuple[list[HookResult], str | None]:
    """Create or repair the store's hooks; the results and, when they are not all in place, one line why."""
    problem = destination_problem(destination)
    if problem:
        return [], problem
    bc = settings.bigcommerce
    client = BigCommerceClient(
        api_url=bc.api_url, store_hash=store_hash, access_token=access_token, client_id=bc.client_id, timeout=min(bc.timeout, budget)
    )
    deadline = time.monotonic() + budget
    try:
        token = hook_token(settings.webhooks.secret, store_hash, app=True)
        results = client.register_hooks(wanted_scopes(app=True), destination, token, call=_within(deadline, budget))
    except BigCommerceError as error:
        log.warning("Hooks of store %s not registered: %s", store_hash, error)
        return [], _why(error)
    finally:
        client.close()
    failed = [result for result in results if result.action == FAILED]
    for result in failed:
        log.warning("Hook %s of store %s not registered: %s", result.scope, store_hash, result.error)
    if failed:
        return results, "; ".join(f"the {result.scope} hook: {_why(result.error)}" for result in failed)
    return results, None


def _within(deadline: float, budget: float) -> Callable:
    """Runs a call while time is left, so one slow BigCommerce cannot hold the request too long."""

    def call(what):
        if time.monotonic() > deadline:
            raise BigCommerceError("BigCommerce took too long", failure=Failure.TIMEOUT, detail=f"no answers within {budget:g} s")
        return what()

    return call


def _why(error: BigCommerceError) -> str:
    if error.failure is Failure.TIMEOUT:
        return f"BigCommerce did not answer in time ({error.detail})"
    if error.failure is Failure.CONNECTION:
        return f"BigCommerce could not be reached ({error.detail})"
    if error.status == 429:
        return "BigCommerce's rate limit for the store is reached (the quota is shared with its other apps)"
    if error.status is not None:
        return f"BigCommerce answered {error.status}" + (f": {error.detail}" if error.detail else "")
    return str(error)


# --- Signed payloads: load, uninstall, remove-user ----------------------------------------------------


def _signed_payload(callback: str) -> str | None:
    """The request's ``signed_payload_jwt``; None (logged) when it has none or one far too long.

    Only a request that carries one is told about settings the bridge lacks to verify it.
    """
    token = request.args.get("signed_payload_jwt")
    if not token or len(token) > MAX_JWT_LENGTH:
        log.warning("%s callback refused: signed_payload_jwt %s", callback, "missing" if not token else "too long")
        return None
    return token


def verified_claims(token: str, callback: str) -> dict | None:
    """The claims of a genuine, current ``signed_payload_jwt``; None (logged) otherwise."""
    bc = _settings().bigcommerce
    try:
        decoded = jwt.decode(
            token, bc.client_secret, algorithms=JWT_ALGORITHMS, audience=bc.client_id, leeway=JWT_LEEWAY, options={"require": JWT_REQUIRED}
        )
    except jwt.PyJWTError as error:
        log.warning("%s callback refused: %s (%s)", callback, type(error).__name__, str(error)[:200])
        return None
    try:
        return SignedPayloadSchema().load(decoded)
    except ValidationError as error:
        log.warning("%s callback refused: claims %s not as BigCommerce sends them", callback, ", ".join(sorted(map(str, error.messages))))
        return None


def first_use_refusal(db: Database, claims: dict) -> str | None:
    """Why a verified payload must still be refused (used before, or older than the store's install); None when fine.

    Call in the transaction that acts on it. BigCommerce signs the payloads of load,
    uninstall and remove-user alike, so each works once, on one callback; and one issued
    before the store's latest install (an old uninstall, a removed user's old link) is stale.
    """
    if not stores.spend_jwt(db, jti=claims["jti"], expires_at=claims["expires_at"], now=time.time()):
        return f"payload {claims['jti'][:8]}… of store {claims['store_hash']} was used before"
    installed = stores.installed_at(db, claims["store_hash"])
    if installed is not None and claims["issued_at"] < installed - JWT_LEEWAY:
        return f"payload of store {claims['store_hash']} was issued before the store's latest install"
    return None


@bp.get("/bigcommerce/load")
def load():
    """The store's user opens the app: a session for that store and user, then the status page."""
    settings = _settings()
    token = _signed_payload("load")
    if token is None:
        return _page(401, "Link invalid or expired", INVALID_PAGE)
    missing = _missing_settings(settings, LOAD_SETTINGS)
    if missing:
        return _page(503, "Not set up for app installs", _unconfigured("load", missing))
    claims = verified_claims(token, "load")
    if claims is None:
        return _page(401, "Link invalid or expired", INVALID_PAGE)
    store_hash, user, owner = claims["store_hash"], claims["user"], claims["owner"]
    try:
        db = get_db()
        if not stores.is_installed(db, store_hash):
            log.warning("load callback refused: the app is not installed on store %s", store_hash)
            return _page(401, "Link invalid or expired", INVALID_PAGE)
        with immediate(db):
            refusal = first_use_refusal(db, claims)
            if refusal is None:
                is_owner = owner is not None and owner["id"] == user["id"]
                stores.add_user(db, store_hash=store_hash, user_id=user["id"], email=user["email"], owner=is_owner, now=time.time())
        if refusal is not None:
            log.warning("load callback refused: %s", refusal)
            return _page(401, "Link invalid or expired", INVALID_PAGE)
        store = current_app.config["BRIDGE_STORES"].get(db, store_hash)
    except (sqlite3.Error, OSError, VaultError) as error:
        log.error("load callback of store %s failed: %s", store_hash, type(error).__name__)
        return _page(503, "Unavailable", "The bridge cannot read its database right now. Open the app again in a minute.")
    start_session(Viewer(is_admin=False, stores=frozenset({store_hash}), user_id=user["id"]))
    if settings.server.public_url and store is not None and store.mode == stores.APP:
        # Re-opening the app retries hooks an install could not register, and repairs deactivated ones.
        destination = destination_for(settings.server.public_url)
        register_hooks(settings, store_hash, store.access_token, destination, budget=LOAD_HOOKS_BUDGET)
    return redirect(safe_next(claims["url"]), 303)


def _server_callback(callback: str, change: Callable[[Database, dict], dict]) -> tuple[Response, int]:
    """Verify a call from BigCommerce's server, then ``change(db, claims)`` in one transaction.

    Answers 200 with the JSON ``change`` returns; 401 "invalid or expired"; 503 when the
    settings or the database are missing.
    """
    token = _signed_payload(callback)
    if token is None:
        return _json(401, error=INVALID)
    missing = _missing_settings(_settings(), SERVER_SETTINGS)
    if missing:
        return _json(503, error=_unconfigured(callback, missing))
    claims = verified_claims(token, callback)
    if claims is None:
        return _json(401, error=INVALID)
    try:
        db = get_db()
        with immediate(db):
            refusal = first_use_refusal(db, claims)
            body = change(db, claims) if refusal is None else None
    except (sqlite3.Error, OSError) as error:
        log.error("%s callback of store %s failed: %s", callback, claims["store_hash"], type(error).__name__)
        return _json(503, error="The bridge cannot write to its database right now; retry later.")
    if refusal is not None:
        log.warning("%s callback refused: %s", callback, refusal)
        return _json(401, error=INVALID)
    return _json(200, **body)


@bp.get("/bigcommerce/uninstall")
def uninstall():
    """BigCommerce's server: the store uninstalled the app. Its token and users go; its history stays."""

    def forget(db: Database, claims: dict) -> dict:
        store_hash = claims["store_hash"]
        if current_app.config["BRIDGE_STORES"].uninstall(db, store_hash=store_hash, now=time.time()):
            log.info("Store %s uninstalled the app: its access token and users are deleted, its queued work held", store_hash)
        else:
            log.info("uninstall callback for store %s, which has no app install: nothing to do", store_hash)
        return {"uninstalled": store_hash}

    return _server_callback("uninstall", forget)


@bp.get("/bigcommerce/remove-user")
@bp.get("/bigcommerce/remove_user")  # the spelling of BigCommerce's docs
def remove_user():
    """BigCommerce's server: a user lost access to the app. Their session ends at once."""

    def remove(db: Database, claims: dict) -> dict:
        store_hash, user_id = claims["store_hash"], claims["user"]["id"]
        removed = stores.remove_user(db, store_hash=store_hash, user_id=user_id)
        log.info("User %s %s store %s", user_id, "removed from" if removed else "was not a user of", store_hash)
        return {"store_hash": store_hash, "removed_user": user_id}

    return _server_callback("remove-user", remove)
