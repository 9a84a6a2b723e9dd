"""``/api/*``: the status page's facts as JSON (SPEC section 3), for scripts and dashboards.

Thin views over ``storage/history.py`` (reads) and ``storage/replays.py`` (the one write:
re-queueing). A viewer sees only the stores they may see; the admin token sees all.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g, jsonify, request
from marshmallow import ValidationError

from bridge.schemas import OrderQuery
from bridge.storage import history
from bridge.storage.db import immediate
from bridge.storage.replays import replay as replay_work
from bridge.web.auth import require_viewer
from bridge.web.database import get_db

bp = Blueprint("status_api", __name__)


class BadRequest(Exception):
    """A malformed id or parameter: answered 400 with the sentence."""


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


def parse_order(order_id: str) -> tuple[int, str | None]:
    """The order id of the path and the ``?store=`` of the query, checked."""
    try:
        found = OrderQuery().load({"order": order_id, **({"store": request.args["store"]} if "store" in request.args else {})})
    except ValidationError as error:
        raise BadRequest(" ".join(" ".join(messages) for messages in error.messages.values())) from None
    return found["order"], found["store"]


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
    facts = history.status(db, stores, visible=g.viewer.stores)
    if current_app.config["BRIDGE_SETTINGS"].coupons is not None:
        facts["coupons"] = history.coupon_pushes(db, stores=g.viewer.stores)  # besides SPEC's keys
    return jsonify(facts)


@bp.get("/api/orders/<order_id>")
@require_viewer(json=True)
def order(order_id: str) -> tuple[Response, int] | Response:
    number, store = parse_order(order_id)
    store_hash = find_order_store(number, store)
    story = history.order_story(get_db(), store_hash=store_hash, order_id=number) if store_hash else None
    if story is None:
        return _error(404, f"The bridge never heard of order #{number}: no webhook for it has arrived.")
    return jsonify(story)


@bp.post("/api/orders/<order_id>/replay")
@require_viewer(json=True)
def replay(order_id: str) -> tuple[Response, int]:
    number, store = parse_order(order_id)
    store_hash = find_order_store(number, store)
    if store_hash is None:
        return _error(404, f"The bridge never heard of order #{number}: no webhook for it has arrived.")
    db = get_db()
    with immediate(db):
        done = replay_work(db, now=time.time(), store_hash=store_hash, order_id=number)
    if not any(done.values()):
        return _error(409, f"Nothing to replay for order #{number}: nothing of it is dead or paused.")
    return jsonify(store_hash=store_hash, order_id=number, requeued=done), 202
