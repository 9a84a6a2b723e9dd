"""The storefront half of the cart id: the script merchants add with Script Manager, and the
public endpoint it posts to.

``POST /storefront/cart`` is public and forgeable, so what it stores is a *claim*: the worker
uses one only when it names one of the order's own carts (``core.payload.check_storefront_claims``).
It takes claims only for orders BigCommerce has told the bridge of (or the next few ids), and a
few distinct ones per order, so a forger can neither pre-claim future orders nor shut out the
shopper's own post.
It answers only the store's own origins (CORS, never ``*``), validates strictly, refuses orders
whose report is already built, and is rate limited per client address — per web process, as the
limiter's counters live in memory.
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
import time
from pathlib import Path

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded
from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from bridge.config import Settings
from bridge.core.storefront import origin_of
from bridge.schemas import STORE_HASH
from bridge.storage import carts, outbox
from bridge.storage import storefront as claims
from bridge.storage.db import immediate
from bridge.web.database import get_db
from bridge.web.webhooks import _describe

log = logging.getLogger(__name__)

bp = Blueprint("storefront", __name__)

SCRIPT = Path(__file__).resolve().parents[2] / "static" / "refersion-cart.js"
SCRIPT_MAX_AGE = 3600  # a fixed script goes out within the hour
MAX_BODY_BYTES = 1024
MAX_ORDER_ID = 2**31 - 1  # BigCommerce order ids are 32-bit
RATE_LIMIT = "10 per minute"  # a shopper's page posts once per order (plus one preflight)
PREFLIGHT_MAX_AGE = 600
UUID = r"\A[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\Z"
NO_ORIGINS_YET = (
    "The store's domains are not known yet, so no origin may post: wait for the worker's first read of the store "
    "(within about ten minutes of it starting), or list the storefront's origins in storefront.allowed_origins."
)
# A claim is taken for an order at most this many ids past the newest one a BigCommerce webhook
# named: the confirmation page may post before its order's webhook arrives, while ids far ahead
# (orders not placed yet, pre-claimed by a forger) are refused.
ORDERS_AHEAD = 25
REPORTED, UNHEARD = "reported", "unheard"
TOO_MANY_CLAIMS = (
    f"Order {{order_id}} already has {claims.MAX_CLAIMS} different cart ids posted for it: no more are taken. "
    "The bridge reports it with its own cart id whichever of them is genuine."
)
# Any report state but "skipped" (dropped before it was sent, and queued again if the order is reportable again).
BUILT = (outbox.DONE, outbox.DRY_RUN, "pending", "working", "dead")


class StrictOrderId(fields.Integer):
    """A JSON number that is a whole number: no strings, no booleans, no fractions."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("Must be a whole number (a JSON number, not a string).")
        return super()._deserialize(value, attr, data, **kwargs)


class ClaimSchema(Schema):
    class Meta:
        unknown = RAISE

    store_hash = fields.String(required=True, validate=STORE_HASH)
    order_id = StrictOrderId(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ORDER_ID))
    cart_id = fields.String(
        required=True,
        validate=validate.Regexp(UUID, error="Must be a BigCommerce cart id (a UUID such as 0b3e5a34-6c8f-4b5e-9d0a-2f1e7c9b8a61)."),
    )

    @pre_load
    def trim(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("cart_id"), str) and len(data["cart_id"]) <= 100:
            data = {**data, "cart_id": data["cart_id"].strip().lower()}
        return data


def client_address(trusted_proxies: int) -> str:
    """The client's IP address: the peer's, or with ``trusted_proxies`` proxies in front, the
    entry of ``X-Forwarded-For`` that the outermost trusted proxy wrote (the rest is the client's word)."""
    peer = request.remote_addr or "unknown"
    if not trusted_proxies:
        return peer
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    return forwarded[-trusted_proxies] if len(forwarded) >= trusted_proxies else peer


def init_app(app: Flask, settings: Settings) -> None:
    """Register the blueprint with its rate limit (one in-memory limiter per app, so per web process)."""
    limiter = Limiter(
        lambda: client_address(settings.storefront.trusted_proxies),
        app=app,
        storage_uri="memory://",
        headers_enabled=False,
        on_breach=_too_many,
    )
    limiter.limit(RATE_LIMIT, methods=["POST", "OPTIONS"])(bp)
    app.register_blueprint(bp)
    app.register_error_handler(RateLimitExceeded, _rate_limited)


def _rate_limited(error: RateLimitExceeded) -> Response:
    return error.response or _error(429, f"Too many requests from this address (at most {RATE_LIMIT}); try again later.")


def _too_many(limit) -> Response:
    response = _error(429, f"Too many requests from this address (at most {RATE_LIMIT}); try again later.")
    response.headers["Retry-After"] = str(max(1, int(limit.reset_at - time.time())))
    return response


def _error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def _allowed(origin: str | None, allowed: set[str]) -> str | None:
    """The request's origin in its canonical spelling when it is one of ``allowed``."""
    canonical = origin_of(origin) if origin and "://" in origin else None
    return canonical if canonical in allowed else None


def _with_cors(response: Response, origin: str | None) -> Response:
    response.headers["Vary"] = "Origin"
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
    return response


def _origins_for(store_hash: str | None) -> set[str]:
    """The configured origins, else those read from BigCommerce (for one store, or for any)."""
    configured = current_app.config["BRIDGE_SETTINGS"].storefront.allowed_origins
    if configured:
        return {origin_of(origin) for origin in configured}
    if store_hash is None:
        return claims.known_origins(get_db())
    row = claims.origins_row(get_db(), store_hash)
    return set(row["origins"]) if row else set()


@bp.get("/storefront/refersion-cart.js")
def script() -> Response:
    response = Response(_script_text(), mimetype="application/javascript")
    response.cache_control.public = True
    response.cache_control.max_age = SCRIPT_MAX_AGE
    response.headers["Access-Control-Allow-Origin"] = "*"  # a public script; lets pages load it with crossorigin
    response.add_etag()
    return response.make_conditional(request)


@functools.cache
def _script_text() -> bytes:
    return SCRIPT.read_bytes()


@bp.route("/storefront/cart", methods=["POST", "OPTIONS"], provide_automatic_options=False)
def cart() -> Response:
    try:
        return _preflight() if request.method == "OPTIONS" else _claim()
    except (sqlite3.Error, OSError):
        log.exception("Could not record a storefront cart id")
        return _error(503, "The bridge cannot store cart ids right now; retry later.")


def _preflight() -> Response:
    origin = _allowed(request.headers.get("Origin"), _origins_for(None))
    if origin is None:
        return _with_cors(_error(403, "This origin may not post cart ids to the bridge."), None)
    response = _with_cors(Response(status=204), origin)
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response


def _claim() -> Response:
    given = request.headers.get("Origin")
    if not given:
        return _with_cors(_error(403, "No Origin header: only the storefront's pages may post cart ids."), None)
    any_store = _origins_for(None)
    if not any_store:
        return _with_cors(_error(403, NO_ORIGINS_YET), None)
    origin = _allowed(given, any_store)
    if origin is None:
        return _with_cors(_error(403, "This origin may not post cart ids to the bridge."), None)
    found = _read_claim()
    if isinstance(found, Response):
        return _with_cors(found, origin)
    store_hash, order_id, cart_id = found["store_hash"], found["order_id"], found["cart_id"]
    registry = current_app.config["BRIDGE_STORES"]
    if registry.get(get_db(), store_hash) is None:
        return _with_cors(_error(404, f"The bridge serves no store {store_hash}."), origin)
    if origin not in _origins_for(store_hash):
        return _with_cors(_error(403, f"This origin is not one of store {store_hash}'s own; {NO_ORIGINS_YET}"), None)
    db = get_db()
    with immediate(db):
        report = outbox.find(db, outbox.paid_key(store_hash, order_id))
        if report is not None and report["state"] in BUILT:
            outcome = REPORTED
        elif not claims.order_heard_of(db, store_hash=store_hash, order_id=order_id, ahead=ORDERS_AHEAD):
            outcome = UNHEARD
        else:
            known = frozenset(value.lower() for value in carts.known_cart_ids(db, store_hash=store_hash, order_id=order_id).values())
            outcome = claims.record_claim(
                db, store_hash=store_hash, order_id=order_id, cart_id=cart_id, origin=origin, now=time.time(), known=known
            )
    log.info("Storefront cart id for order %s of store %s from %s: %s", order_id, store_hash, origin, outcome)
    if outcome == REPORTED:
        return _with_cors(_error(409, f"Order {order_id} is already reported: nothing changes."), origin)
    if outcome == UNHEARD:
        return _with_cors(_error(404, f"Store {store_hash} has no order {order_id} that the bridge has heard of."), origin)
    if outcome == claims.FULL:
        return _with_cors(_error(409, TOO_MANY_CLAIMS.format(order_id=order_id)), origin)
    words = {
        claims.STORED: "Recorded; the bridge checks it against the order's own cart before reporting.",
        claims.SAME: "Already recorded: nothing changes.",
    }
    return _with_cors(_json(202, {"status": outcome, "detail": words[outcome]}), origin)


def _json(status: int, body: dict) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _read_claim() -> dict | Response:
    """The validated body, or the 4xx answer naming what is wrong with it."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _error(413, f"The body is over {MAX_BODY_BYTES} bytes.")
    if request.mimetype != "application/json":
        return _error(415, "The body must be JSON (Content-Type: application/json).")
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"The body is over {MAX_BODY_BYTES} bytes.")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _error(400, "The body is not valid JSON.")
    if not isinstance(payload, dict):
        return _error(400, "The body must be a JSON object: {store_hash, order_id, cart_id}.")
    try:
        return ClaimSchema().load(payload)
    except ValidationError as error:
        return _error(400, f"The body is not a storefront cart id: {_describe(error.messages)}")
