"""``/api/*``: the status page's facts as JSON (SPEC section 3), for scripts and dashboards.

Thin views over ``storage/history.py`` (reads) and ``storage/replays.py`` (the one write:
re-queueing). A viewer sees only the stores they may see; the admin token sees all.
"""

from __future__ import annotations

import re
import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from bridge.storage import history
from bridge.storage.db import immediate
from bridge.storage.replays import replay as replay_work
from bridge.web.auth import require_viewer
from bridge.web.database import get_db

bp = Blueprint("status_api", __name__)

MAX_ORDER_ID = 2**63 - 1
STORE_HASH = re.compile(r"[A-Za-z0-9]{1,64}")


class BadRequest(Exception):
    """A malformed id or parameter: answered 400 with the sentence."""


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


def parse_order_id(text: str) -> int:
    """An order id from a URL: digits only, 1 to 2^63-1."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or not 1 <= int(text) <= MAX_ORDER_ID:
        raise BadRequest(f"'{text[:40]}' is not an order id: use the order number, digits only.")
    return int(text)


def parse_store(text: str | None) -> str | None:
    if text is None:
        return None
    if not STORE_HASH.fullmatch(text):
        raise BadRequest("?store= must be a store hash: letters and digits, as in stores/abc123.")
    return text


def find_order_store(order_id: int, store: str | None) -> str | None:
    """The store whose order ``order_id`` the viewer asks about; None when they may not see one.

    :raise BadRequest: the order exists in several of the viewer's stores and none was named.
    """
    stores = history.stores_with_order(get_db(), order_id, visible=g.viewer.stores)
    if store is not None:
        return store if store in stores else None
    if len(stores) > 1:
        raise BadRequest(f"Order #{order_id} exists in several stores ({', '.join(stores)}): add ?store=HASH.")
    return stores[0] if stores else None


@bp.errorhandler(BadRequest)
def _bad_request(error: BadRequest) -> tuple[Response, int]:
    return _error(400, str(error))


@bp.get("/api/status")
@require_viewer(json=True)
def status() -> Response:
    db = get_db()
    stores = [(store.store_hash, store.mode) for store in current_app.config["BRIDGE_STORES"].all(db)]
    return jsonify(history.status(db, stores, visible=g.viewer.stores))


@bp.get("/api/orders/<order_id>")
@require_viewer(json=True)
def order(order_id: str) -> tuple[Response, int] | Response:
    number = parse_order_id(order_id)
    store_hash = find_order_store(number, parse_store(request.args.get("store")))
    story = history.order_story(get_db(), store_hash=store_hash, order_id=number) if store_hash else None
    if story is None:
        return _error(404, f"The bridge never heard of order #{number}: no webhook for it has arrived.")
    return jsonify(story)


@bp.post("/api/orders/<order_id>/replay")
@require_viewer(json=True)
def replay(order_id: str) -> tuple[Response, int]:
    number = parse_order_id(order_id)
    store_hash = find_order_store(number, parse_store(request.args.get("store")))
    if store_hash is None:
        return _error(404, f"The bridge never heard of order #{number}: no webhook for it has arrived.")
    db = get_db()
    with immediate(db):
        done = replay_work(db, now=time.time(), store_hash=store_hash, order_id=number)
    if not any(done.values()):
        return _error(409, f"Nothing to replay for order #{number}: nothing of it is dead or paused.")
    return jsonify(store_hash=store_hash, order_id=number, requeued=done), 202
