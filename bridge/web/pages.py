"""The status page: the HTML face of the read side (SPEC section 6).

Thin views: every fact comes from :mod:`bridge.storage.history`, the retry button goes
through :func:`bridge.storage.replays.replay`; no SQL here. Every page is filtered by
the signed-in viewer's stores.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from marshmallow import Schema, ValidationError, fields, pre_load, validate

from bridge.schemas import STORE_HASH, Lenient, OrderId
from bridge.storage import history, replays
from bridge.storage.db import immediate
from bridge.storage.stores import Store, StoreRegistry
from bridge.web import chart
from bridge.web.auth import require_viewer
from bridge.web.database import get_db
from bridge.web.settings import key_source

bp = Blueprint("pages", __name__)


DECISION_WORDS = {
    "reported": "Reported",
    "skipped": "Skipped",
    "waiting": "Waiting",
    "retrying": "Retrying",
    "dead": "Dead",
    "paused": "Paused",
    "dry_run": "Dry run",
}
COUNT_WORDS = {"received": "Received", **DECISION_WORDS}
HISTORY_WORDS = {"eligible": "Eligible: report it", "skipped": "Skip", "waiting": "Wait"}  # verdicts, not outcomes
RETRYABLE = frozenset({"dead", "paused"})
COUPONS_SHOWN = 10  # the status page's short list of coupon codes pushed
REASON_WORDS = {
    "free_order": "Free order",
    "unknown_store": "Store not served by the bridge",
    "status_excluded": "Status never reported",
    "payment_excluded": "Payment never reported",
    "channel_excluded": "Sales channel not reported",
    "gift_certificates_only": "Gift certificates only",
    "order_not_found": "Order not found in BigCommerce",
    "deleted": "Deleted in BigCommerce",
    "no_longer_eligible": "No longer eligible",
    "already_reported": "Already reported",
    "already_evaluated_dry_run": "Already evaluated in dry run",
    "delivery_failed": "Refersion refused it",
}


class StoreQuery(Lenient):  # links may carry tracking parameters; only known ones are read, strictly
    store = fields.String(load_default=None, validate=STORE_HASH)


class SearchQuery(StoreQuery):
    order = OrderId(required=True, error_messages={"required": "Enter an order number, as in 1042."})

    @pre_load
    def tidy(self, data, **kwargs):
        """People type "#1042" or " 1042 " into a search box; the id itself stays strict."""
        data = dict(data)
        if isinstance(data.get("order"), str):
            data["order"] = data["order"].strip().removeprefix("#").strip()
        if data.get("store") == "":
            data["store"] = None
        return data


class ReplayForm(Lenient):
    back = fields.String(load_default="status", validate=validate.OneOf(["status", "order"]))


def _load(schema: Schema, data) -> dict:
    try:
        return schema.load(data)
    except ValidationError as error:
        abort(400, description=" ".join(_messages(error.messages)))


def _messages(messages) -> list[str]:
    if isinstance(messages, dict):
        return [text for value in messages.values() for text in _messages(value)]
    if isinstance(messages, list):
        return [text for value in messages for text in _messages(value)]
    return [str(messages)]


def _order_id(text: str) -> int:
    return _load(Schema.from_dict({"order": OrderId(required=True)})(), {"order": text})["order"]


def _visible() -> frozenset[str] | None:
    return g.viewer.stores


def _stores_for(order_id: int, store: str | None) -> list[str]:
    """The stores whose order ``order_id`` the viewer may see (one when ``store`` names it)."""
    found = history.stores_with_order(get_db(), order_id, visible=_visible())
    if store is not None:
        found = [store] if store in found else []
    if not found:
        abort(
            404,
            description=f"No order #{order_id} that you can see: the bridge never heard of it, or it belongs to another store.",
        )
    return found


# Times in the viewer's terms: relative words rendered here (so they read right without
# script), the exact UTC time on hover; static/bridge.js keeps the words fresh.


def _parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def relative(text: str | None, now: float | None = None, *, past: bool = False) -> str:
    """``3 min ago``, ``in 4 min``; a ``past`` moment a few seconds ahead (clocks differ) is "just now"."""
    if not text:
        return "never"
    seconds = (now if now is not None else time.time()) - _parse_iso(text).timestamp()
    if past and -60 < seconds < 0:
        seconds = 0
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return "in a few seconds" if future else "just now"
    minutes = round(seconds / 60)
    if minutes < 90:
        amount = f"{minutes} min"
    elif seconds < 36 * 3600:
        amount = f"{round(seconds / 3600)} h"
    else:
        days = round(seconds / 86400)
        amount = f"{days} day" if days == 1 else f"{days} days"
    return f"in {amount}" if future else f"{amount} ago"


def exact(text: str | None) -> str:
    return _parse_iso(text).strftime("%Y-%m-%d %H:%M:%S UTC") if text else ""


@bp.app_template_filter("relative")
def _relative_filter(text: str | None, past: bool = False) -> str:
    return relative(text, past=past)


@bp.app_template_filter("exact")
def _exact_filter(text: str | None) -> str:
    return exact(text)


@bp.app_template_filter("reason_words")
def _reason_words(code: str) -> str:
    return REASON_WORDS.get(code, code.replace("_", " ").capitalize())


@bp.app_context_processor
def _words() -> dict:
    return {"DECISION_WORDS": DECISION_WORDS, "COUNT_WORDS": COUNT_WORDS, "HISTORY_WORDS": HISTORY_WORDS, "RETRYABLE": RETRYABLE}


@bp.get("/")
@require_viewer(json=False)
def status():
    db = get_db()
    registry = current_app.config["BRIDGE_STORES"]
    served = registry.all(db)
    facts = history.status(db, [(store.store_hash, store.mode) for store in served], visible=_visible())
    setups = {store.store_hash: _setup(registry, db, store) for store in served}
    for store in facts["stores"]:
        store["setup"] = setups[store["store_hash"]]
        store["storefront"] = history.storefront_script_health(db, store["store_hash"])
    days = history.daily(db, now=time.time(), stores=_visible())
    pushing = current_app.config["BRIDGE_SETTINGS"].coupons is not None
    coupons = history.coupon_pushes(db, stores=_visible(), limit=COUPONS_SHOWN) if pushing else None
    return render_template("status.html", facts=facts, chart=chart.chart(days), multistore=len(facts["stores"]) != 1, coupons=coupons)


def _setup(registry: StoreRegistry, db, store: Store) -> dict:
    """How a store is set up, from the registry the worker also asks: whose keys, dry run in force."""
    return {
        "key_source": key_source(registry.settings_of(db, store.store_hash)),
        "dry_run": store.policy(current_app.config["BRIDGE_SETTINGS"].rules).dry_run,
    }


@bp.get("/orders")
@require_viewer(json=False)
def search():
    query = _load(SearchQuery(), request.args)
    return redirect(url_for("pages.order", order_id=query["order"], store=query["store"]))


@bp.get("/orders/<order_id>")
@require_viewer(json=False)
def order(order_id: str):
    number = _order_id(order_id)
    store = _load(StoreQuery(), request.args)["store"]
    db = get_db()
    stories = [history.order_story(db, store_hash=store_hash, order_id=number) for store_hash in _stores_for(number, store)]
    return render_template("order.html", order_id=number, stories=[story for story in stories if story])


@bp.post("/orders/<order_id>/replay")
@require_viewer(json=False)
def replay(order_id: str):
    number = _order_id(order_id)
    store = _load(StoreQuery(), request.args)["store"]
    back = _load(ReplayForm(), request.form)["back"]
    db = get_db()
    requeued, resumed = 0, 0
    stores = _stores_for(number, store)
    if len(stores) > 1:  # the button always names its store; a hand-made form may not
        abort(400, description=f"Order #{number} exists in several stores ({', '.join(stores)}): name one with ?store=.")
    for store_hash in stores:
        with immediate(db):
            done = replays.replay(db, now=time.time(), store_hash=store_hash, order_id=number)
        requeued += len(done["deliveries"]) + len(done["events"])
        resumed += len(done["resumed"])
    if requeued:
        what = "1 delivery" if requeued == 1 else f"{requeued} deliveries"
        flash(f"Order #{number}: re-queued {what}; the worker sends it shortly.", "ok")
    if resumed:
        flash(f"Order #{number}: resumed the paused reports of its store; they are sent again now.", "ok")
    if not (requeued or resumed):
        flash(f"Order #{number}: nothing was dead or paused, so nothing was re-queued.", "info")
    if back == "order":
        return redirect(url_for("pages.order", order_id=number, store=store))
    return redirect(url_for("pages.status") + "#recent")
