"""The read side: what happened to every order, for the status page, ``/api/*``, metrics and the CLI.

Every view renders the rows built here; none writes its own SQL. An order's *decision*
is told in SPEC's words, from the decision in force and its paid report:

- ``reported``: Refersion took the report;
- ``dry_run``: evaluated in dry-run mode, nothing sent;
- ``dead``: Refersion refused it for good, or BigCommerce could not be read for days;
- ``paused``: its report waits because the store's keys were refused;
- ``retrying``: its report failed and is tried again on the schedule;
- ``waiting``: not eligible yet, or queued and about to be sent, or not evaluated yet;
- ``skipped``: not reported, with the reasons why.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

from sqlite_utils import Database

from bridge.core import payload as cart_words
from bridge.storage import hook_checks, inbox, outbox, storefront
from bridge.storage.db import rows
from bridge.storage.queue import DEAD, PENDING, WORKING

_RECOVERED = ", ".join(f"'{scope}'" for scope in inbox.RECOVERED_SCOPES)
FOUND_BY = {inbox.RECONCILE: "reconcile", inbox.BACKFILL: "backfill"}  # who found an order no webhook brought
COVERAGE_DAYS = 30

REPORTED, SKIPPED, WAITING, RETRYING, PAUSED, DRY_RUN = "reported", "skipped", "waiting", "retrying", "paused", "dry_run"
DECISIONS = (REPORTED, SKIPPED, WAITING, RETRYING, DEAD, PAUSED, DRY_RUN)
_VERDICT_WORDS = {"report": REPORTED, "wait": WAITING, "skip": SKIPPED}
# A decision in the history is what the rules said then: "eligible" is not yet "reported".
HISTORY_WORDS = {"report": "eligible", "wait": WAITING, "skip": SKIPPED}

# One row per order heard of: its newest event, the decision in force and its paid report.
_ORDERS_SQL = """
WITH heard AS (
    SELECT store_hash, order_id, max(received_at) AS last_event_at, count(*) AS events,
           sum(state = 'dead') AS dead_events, sum(state IN ('pending', 'working')) AS open_events,
           min(CASE WHEN state = 'ignored' THEN outcome END) AS ignored_outcome,
           min(CASE WHEN state = 'ignored' THEN note END) AS ignored_note,
           max(CASE WHEN state = 'dead' THEN last_error END) AS event_error
    FROM events WHERE order_id IS NOT NULL AND scope != 'store/cart/converted' {store_filter}
    GROUP BY store_hash, order_id
)
SELECT heard.*, o.verdict, o.reasons, o.evaluated_at, o.cart_id_source, o.note AS cart_note,
       d.kind, d.state AS delivery_state, d.attempts, d.last_status, d.last_error, d.response, d.due_at,
       d.updated_at AS delivery_updated_at, d.done_at, d.created_at AS queued_at,
       (SELECT reason FROM pauses p WHERE p.store_hash = heard.store_hash ORDER BY p.service DESC LIMIT 1) AS pause_reason,
       (SELECT max(CASE WHEN json_extract(c.meta, '$.full') THEN 2 ELSE 1 END) FROM deliveries c
        WHERE c.store_hash = heard.store_hash AND c.order_id = heard.order_id AND c.kind = 'cancel' AND c.state = 'done') AS cancelled
FROM heard
LEFT JOIN orders o ON o.store_hash = heard.store_hash AND o.order_id = heard.order_id
LEFT JOIN deliveries d ON d.key = 'paid:' || heard.store_hash || ':' || heard.order_id
"""


def iso(timestamp: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (``2026-11-29T21:40:11Z``)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reasons(text: str | None) -> list[dict]:
    return json.loads(text) if text else []


def _summary(row: dict) -> dict:
    """One order's decision in SPEC's words, its leading reason, and when it last changed."""
    state = row["delivery_state"]
    reasons = _reasons(row["reasons"])
    at = max(filter(None, (row["last_event_at"], row["evaluated_at"], row["delivery_updated_at"])))
    if state == outbox.DONE:
        decision = REPORTED
        reason = {"code": "reported", "text": f"Reported to Refersion (HTTP {row['last_status']}).{CANCELLED_WORDS[row['cancelled']]}"}
    elif state == outbox.DRY_RUN:
        decision, reason = DRY_RUN, {"code": "dry_run", "text": "Eligible, but evaluated in dry-run mode: nothing was sent."}
    elif state == DEAD:
        decision = DEAD
        reason = {
            "code": "delivery_failed",
            "text": f"Refersion refused the report for good: {row['last_error']}. Retry it once the cause is fixed.",
        }
    elif state in (PENDING, WORKING) and row["pause_reason"]:
        decision, reason = PAUSED, {"code": "store_paused", "text": f"Waiting: {row['pause_reason']} It is sent once the keys are fixed."}
    elif state in (PENDING, WORKING) and row["attempts"]:
        decision = RETRYING
        reason = {
            "code": "delivery_retrying",
            "text": f"Refersion did not take it yet ({row['last_error']}); tried again at {iso(row['due_at'])}.",
        }
    elif state in (PENDING, WORKING):
        decision, reason = WAITING, {"code": "queued", "text": "Eligible and queued: it is on its way to Refersion."}
    elif row["verdict"]:
        decision = _VERDICT_WORDS[row["verdict"]]
        reason = reasons[0] if reasons else {"code": row["verdict"], "text": ""}
    elif row["dead_events"]:
        decision = DEAD
        reason = {"code": "order_unreadable", "text": f"BigCommerce could not be read for this order: {row['event_error']}."}
    elif row["ignored_outcome"] and not row["open_events"]:
        decision, reason = SKIPPED, {"code": row["ignored_outcome"], "text": row["ignored_note"] or ""}
    else:
        decision, reason = WAITING, {"code": "not_evaluated_yet", "text": "Received; the worker has not looked at the order yet."}
    return {"decision": decision, "reason": reason, "reasons": reasons or [reason], "at": at}


def _orders(db: Database, stores: Iterable[str] | None, order_id: int | None = None) -> list[dict]:
    params: list = []
    store_filter = ""
    if stores is not None:
        stores = sorted(stores)
        store_filter = f"AND store_hash IN ({', '.join('?' for _ in stores)})"
        params = list(stores)
    if order_id is not None:
        store_filter += " AND order_id = ?"
        params.append(order_id)
    found = rows(db.execute(_ORDERS_SQL.format(store_filter=store_filter), params))
    return [{**row, **_summary(row)} for row in found]


def _recent(row: dict) -> dict:
    return {
        "store_hash": row["store_hash"],
        "order_id": row["order_id"],
        "decision": row["decision"],
        "reason_code": row["reason"]["code"],
        "reason": row["reason"]["text"],
        "refersion_status": row["last_status"],
        "at": iso(row["at"]),
    }


def list_orders(db: Database, *, stores: Iterable[str] | None = None, decision: str | None = None, limit: int = 50) -> list[dict]:
    """The most recently changed orders (newest first), optionally of one decision."""
    return _newest(_orders(db, stores), decision, limit)


def _newest(orders: list[dict], decision: str | None, limit: int) -> list[dict]:
    found = [row for row in orders if decision is None or row["decision"] == decision]
    found.sort(key=lambda row: (row["at"], row["order_id"]), reverse=True)
    return [_recent(row) for row in found[:limit]]


def counts(db: Database, *, stores: Iterable[str] | None = None) -> tuple[dict, dict]:
    """Orders by decision (each counted once, under its current one) and skipped orders by reason."""
    return _tally(_orders(db, stores))


def _tally(orders: list[dict]) -> tuple[dict, dict]:
    by_decision = dict.fromkeys(("received", *DECISIONS), 0)
    by_reason: dict[str, int] = {}
    for row in orders:
        by_decision["received"] += 1
        by_decision[row["decision"]] += 1
        if row["decision"] == SKIPPED:
            by_reason[row["reason"]["code"]] = by_reason.get(row["reason"]["code"], 0) + 1
    return by_decision, dict(sorted(by_reason.items(), key=lambda item: (-item[1], item[0])))


def daily(db: Database, *, now: float, days: int = 30, stores: Iterable[str] | None = None) -> list[dict]:
    """Orders reported and skipped per UTC day over the last ``days`` days, oldest first."""
    today = datetime.fromtimestamp(now, UTC).date()
    keys = [(today.toordinal() - offset) for offset in range(days - 1, -1, -1)]
    tally = {key: {"reported": 0, "skipped": 0} for key in keys}
    for row in _orders(db, stores):
        if row["decision"] in (REPORTED, SKIPPED):
            when = row["done_at"] if row["decision"] == REPORTED and row["done_at"] else row["at"]
            key = datetime.fromtimestamp(when, UTC).date().toordinal()
            if key in tally:
                tally[key][row["decision"]] += 1
    return [{"day": datetime.fromordinal(key).date().isoformat(), **tally[key]} for key in keys]


def store_health(db: Database, store_hash: str) -> dict:
    """What is known of one store's connections, from what the worker last saw."""
    pauses = {row["service"]: row["reason"] for row in rows(db.execute("SELECT * FROM pauses WHERE store_hash = ?", [store_hash]))}
    last_webhook = db.execute(
        f"SELECT max(received_at) FROM events WHERE store_hash = ? AND scope NOT IN ({_RECOVERED})", [store_hash]
    ).fetchone()[0]
    last_read = db.execute("SELECT max(evaluated_at) FROM orders WHERE store_hash = ?", [store_hash]).fetchone()[0]
    last_sent = db.execute("SELECT max(done_at) FROM deliveries WHERE store_hash = ? AND state = ?", [store_hash, outbox.DONE]).fetchone()[
        0
    ]
    if "bigcommerce" in pauses:
        bigcommerce = {"ok": False, "detail": pauses["bigcommerce"]}
    elif last_read:
        bigcommerce = {"ok": True, "detail": f"Orders read with the store's token, last at {iso(last_read)}."}
    else:
        bigcommerce = {"ok": None, "detail": "Not known yet: no order has been read."}
    if "refersion" in pauses:
        refersion = {"ok": False, "paused": True, "detail": pauses["refersion"]}
    elif last_sent:
        refersion = {"ok": True, "paused": False, "detail": f"Keys accepted, last report at {iso(last_sent)}."}
    else:
        refersion = {"ok": None, "paused": False, "detail": "Not known yet: nothing has been sent."}
    return {
        "bigcommerce": bigcommerce,
        "hooks": _hooks(db, store_hash),
        "refersion": refersion,
        "last_webhook_at": iso(last_webhook),
    }


def coverage(db: Database, *, now: float, stores: Iterable[str], days: int = COVERAGE_DAYS) -> dict[str, dict]:
    """Per store, of the orders first heard of in the last ``days`` days: how many arrived by a
    BigCommerce webhook, and how many only reconcile or backfill found (the bridge's own accuracy)."""
    stores = sorted(stores)
    figures = {store_hash: _coverage_figures(days) for store_hash in stores}
    if not stores:
        return figures
    found = db.execute(
        f"""
        SELECT store_hash, sum(webhooks > 0), sum(webhooks = 0 AND reconcile > 0), sum(webhooks = 0 AND reconcile = 0)
        FROM (
            SELECT store_hash, order_id, min(received_at) AS first_heard, sum(scope NOT IN ({_RECOVERED})) AS webhooks,
                   sum(scope = ?) AS reconcile
            FROM events
            WHERE order_id IS NOT NULL AND scope != ? AND store_hash IN ({", ".join("?" for _ in stores)})
            GROUP BY store_hash, order_id
        )
        WHERE first_heard >= ?
        GROUP BY store_hash
        """,
        [inbox.RECONCILE, inbox.CART_CONVERTED, *stores, now - days * 86400],
    ).fetchall()
    for store_hash, by_webhook, by_reconcile, by_backfill in found:
        figures[store_hash] = _coverage_figures(days, by_webhook, by_reconcile, by_backfill)
    return figures


def _coverage_figures(days: int, by_webhook: int = 0, by_reconcile: int = 0, by_backfill: int = 0) -> dict:
    orders = by_webhook + by_reconcile + by_backfill
    # Rounded down: 99.96 % with one order recovered must not read as 100 %.
    percent = math.floor(by_webhook * 1000 / orders) / 10 if orders else None
    return {
        "days": days,
        "orders": orders,
        "by_webhook": by_webhook,
        "recovered": {"reconcile": by_reconcile, "backfill": by_backfill},
        "percent_by_webhook": percent,
        "summary": _coverage_words(days, orders, percent, by_reconcile, by_backfill),
    }


def _coverage_words(days: int, orders: int, percent: float | None, by_reconcile: int, by_backfill: int) -> str:
    """ "98.7% of orders arrived by webhook; 3 were recovered by reconcile (last 30 days)." """
    if not orders:
        return f"No orders in the last {days} days yet."
    recovered = by_reconcile + by_backfill
    verb = "was" if recovered == 1 else "were"
    if not recovered:
        words = "none needed recovering"
    elif by_reconcile and by_backfill:
        words = f"{recovered} {verb} recovered ({by_reconcile} by reconcile, {by_backfill} by backfill)"
    else:
        words = f"{recovered} {verb} recovered by {'reconcile' if by_reconcile else 'backfill'}"
    return f"{percent:g}% of orders arrived by webhook; {words} (last {days} days)."


def _add_coverage(figures: Iterable[dict], days: int) -> dict:
    total = _coverage_figures(days)
    for one in figures:
        total["by_webhook"] += one["by_webhook"]
        for who in ("reconcile", "backfill"):
            total["recovered"][who] += one["recovered"][who]
    return _coverage_figures(days, total["by_webhook"], total["recovered"]["reconcile"], total["recovered"]["backfill"])


def _hooks(db: Database, store_hash: str) -> dict:
    """The store's webhooks as the last hook check found them (``registered`` None: not checked yet)."""
    check = hook_checks.find(db, store_hash)
    if check is None:
        return {"registered": None, "active": None, "missing": [], "inactive": [], "checked_at": None, "detail": "Not checked yet."}
    problems = check["problems"]
    missing = sorted(scope for scope, found in problems.items() if hook_checks.MISSING in found)
    inactive = sorted(scope for scope, found in problems.items() if hook_checks.INACTIVE in found)
    if problems:
        detail = f"{len(problems)} of {check['wanted']} not working: {hook_checks.describe(problems)}."
        detail += f" Webhooks may have been missed since {iso(check['down_since'])}." if check["down_since"] else ""
        detail += f" Not repaired: {check['note']}." if check["note"] else ""  # the note may start with a setting's name
    else:
        detail = f"All {check['wanted']} active (checked {iso(check['checked_at'])})."
    if check["repaired_at"]:
        detail += f" Last repair: {hook_checks.describe(check['repaired'])}, fixed by the bridge at {iso(check['repaired_at'])}."
    return {
        "registered": not missing,
        "active": not problems,
        "missing": missing,
        "inactive": inactive,
        "checked_at": iso(check["checked_at"]),
        "detail": detail,
    }


def status(
    db: Database, stores: list[tuple[str, str]], *, visible: Iterable[str] | None = None, recent: int = 50, now: float | None = None
) -> dict:
    """The facts of ``GET /api/status`` (SPEC section 3), with webhook ``coverage``.

    :param stores: ``(store_hash, mode)`` of every store the bridge serves.
    :param visible: the store hashes the viewer may see; None for all.
    """
    visible = None if visible is None else set(visible)
    shown = [(store_hash, mode) for store_hash, mode in stores if visible is None or store_hash in visible]
    orders = _orders(db, visible)  # one pass over the orders for the counts and the recent list
    by_decision, by_reason = _tally(orders)
    covered = coverage(db, now=time.time() if now is None else now, stores=[store_hash for store_hash, _ in shown])
    return {
        "stores": [{"store_hash": store_hash, "mode": mode, **store_health(db, store_hash)} for store_hash, mode in shown],
        "counts": by_decision,
        "skipped_by_reason": by_reason,
        "recent": _newest(orders, None, recent),
        # Besides SPEC's keys: the figures of all the stores shown, and of each under "stores".
        "coverage": {**_add_coverage(covered.values(), COVERAGE_DAYS), "stores": covered},
    }


def stores_with_order(db: Database, order_id: int, *, visible: Iterable[str] | None = None) -> list[str]:
    """The stores that sent events for this order, among those the viewer may see."""
    query = "SELECT DISTINCT store_hash FROM events WHERE order_id = ? AND scope != 'store/cart/converted' ORDER BY 1"
    found = [row["store_hash"] for row in rows(db.execute(query, [order_id]))]
    return [store for store in found if visible is None or store in set(visible)]


def order_story(db: Database, *, store_hash: str, order_id: int) -> dict | None:
    """``GET /api/orders/<id>``: one order's whole story, or None when the bridge never heard of it."""
    found = _orders(db, [store_hash], order_id)
    if not found:
        return None
    order = found[0]
    history = rows(db.execute("SELECT * FROM decisions WHERE store_hash = ? AND order_id = ? ORDER BY id", [store_hash, order_id]))
    events = rows(db.execute("SELECT * FROM events WHERE store_hash = ? AND order_id = ? ORDER BY received_at, id", [store_hash, order_id]))
    deliveries = rows(db.execute("SELECT * FROM deliveries WHERE store_hash = ? AND order_id = ? ORDER BY id", [store_hash, order_id]))
    return {
        "store_hash": store_hash,
        "order_id": order_id,
        "decision": order["decision"],
        # The decision's own reasons when the decision says it all; else what its report is doing.
        "reasons": order["reasons"] if order["verdict"] and order["delivery_state"] in (None, outbox.SKIPPED) else [order["reason"]],
        "decisions": [
            {"at": iso(row["at"]), "decision": HISTORY_WORDS.get(row["verdict"], row["verdict"]), "reasons": _reasons(row["reasons"])}
            for row in history
        ],
        "events": [
            {
                "scope": row["scope"],
                "found_by": FOUND_BY.get(row["scope"]),  # None: a BigCommerce webhook brought it
                "received_at": iso(row["received_at"]),
                "state": row["state"],
                "outcome": row["outcome"],
                "note": row["note"],
            }
            for row in events
        ],
        "deliveries": [_delivery(row) for row in deliveries],
        "cart_id_source": order["cart_id_source"],
        "note": order["cart_note"],
        "cancellations": [_cancellation(row) for row in deliveries if row["kind"] == outbox.CANCEL],
        "storefront": storefront_claim_story(db, store_hash=store_hash, order_id=order_id, report_built=bool(order["cart_id_source"])),
    }


def _delivery(row: dict) -> dict:
    shown = {
        "kind": row["kind"],
        "state": row["state"],
        "attempts": row["attempts"],
        "last_status": row["last_status"],
        "last_answer": row["response"] if row["response"] is not None else row["last_error"],
        "next_attempt_at": iso(row["due_at"]) if row["state"] == PENDING else None,
        "outcome": row["outcome"],
    }
    if row["state"] == outbox.DRY_RUN:
        shown["would_have_sent"] = row["payload"]  # dry run made visible: the exact JSON body, as text
    return shown


# --- Refunds and cancellations in the order's story -------------------------------------------

CANCELLED_WORDS = {None: "", 1: " Cancelled in part in Refersion since.", 2: " Cancelled in full in Refersion since."}


def _cancellation(row: dict) -> dict:
    """One cancellation: which refund (or ``order``), its items, and what became of it, in plain words."""
    try:
        meta = json.loads(row["meta"] or "{}", parse_float=Decimal)
    except ValueError:
        meta = {}
    items = [{"sku": line["sku"], "price": str(line["price"]), "quantity": line["quantity"]} for line in meta.get("lines") or []]
    refund = meta.get("refund_id")
    what = f"refund {refund}" if refund != "order" else "the order's refund in full or cancellation"
    listed = ", ".join(f"{item['quantity']} × {item['sku']}" for item in items)
    if row["state"] == outbox.DONE:
        text = f"Refersion cancelled {listed} for {what} (HTTP {row['last_status']})."
    elif row["state"] == DEAD:
        text = f"Refersion refused the cancellation of {listed} for {what}: {row['last_error']}."
    elif row["state"] == outbox.DRY_RUN:
        text = f"Dry run: {listed} would have been cancelled for {what}; nothing was sent."
    elif row["state"] == outbox.SKIPPED:
        text = row["note"] or f"Not sent ({row['outcome']})."
    elif row["attempts"]:
        text = f"Cancelling {listed} for {what}: Refersion did not take it yet ({row['last_error']}); tried again at {iso(row['due_at'])}."
    else:
        text = f"Cancelling {listed} for {what}: queued" + (f" ({row['last_error']})." if row["last_error"] else ".")
    shown = {key: value for key, value in _delivery(row).items() if key != "kind"}  # state, attempts, answer…
    reason = row["note"] if row["state"] == outbox.SKIPPED else None
    return {"refund_id": refund, "items": items, **shown, "reason": reason, "text": text}


# The facts behind ``GET /metrics``, per store.


def store_hashes(db: Database) -> list[str]:
    """Every store the database has heard of: events, deliveries, decisions or pauses."""
    found = db.execute(
        """
        SELECT store_hash FROM events UNION SELECT store_hash FROM deliveries
        UNION SELECT store_hash FROM orders UNION SELECT store_hash FROM pauses ORDER BY 1
        """
    ).fetchall()
    return [row[0] for row in found]


def queues_by_store(db: Database, *, now: float) -> dict[str, dict]:
    """Per store: events and deliveries waiting, dead ones, and the age of the oldest waiting delivery.

    Summed over the stores these are the figures of ``/healthz``; a store with nothing queued is absent.
    """
    facts: dict[str, dict] = {}

    def store(store_hash: str) -> dict:
        return facts.setdefault(
            store_hash, {"events": 0, "deliveries": 0, "dead_events": 0, "dead_deliveries": 0, "oldest_pending_delivery_age_seconds": None}
        )

    waiting = (PENDING, WORKING)
    for store_hash, open_count, dead_count in db.execute(
        "SELECT store_hash, sum(state IN (?, ?)), sum(state = ?) FROM events GROUP BY store_hash", [*waiting, DEAD]
    ):
        store(store_hash).update(events=open_count, dead_events=dead_count)
    for store_hash, open_count, dead_count, oldest in db.execute(
        "SELECT store_hash, sum(state IN (?, ?)), sum(state = ?), min(CASE WHEN state IN (?, ?) THEN created_at END) "
        "FROM deliveries GROUP BY store_hash",
        [*waiting, DEAD, *waiting],
    ):
        store(store_hash).update(
            deliveries=open_count,
            dead_deliveries=dead_count,
            oldest_pending_delivery_age_seconds=max(0.0, now - oldest) if oldest is not None else None,
        )
    return facts


def delivery_latencies(db: Database, *, since: float) -> dict[str, list[float]]:
    """Per store: seconds from queueing to Refersion's acceptance, of each delivery done since ``since``."""
    latencies: dict[str, list[float]] = {}
    for store_hash, seconds in db.execute(
        "SELECT store_hash, done_at - created_at FROM deliveries WHERE state = ? AND done_at >= ? ORDER BY store_hash, id",
        [outbox.DONE, since],
    ):
        latencies.setdefault(store_hash, []).append(max(0.0, seconds))
    return latencies


# Coupon codes pushed to BigCommerce (``bridge coupons list``, the status page, ``/api/status``).

COUPON_STATES = ("pushed", "already existed", "waiting", "retrying", "paused", "failed")


def coupon_pushes(db: Database, *, stores: Iterable[str] | None = None, key: str | None = None, limit: int = 50) -> list[dict]:
    """The newest coupon pushes (of ``stores``, or the one delivery ``key``), each with its state in words and the reason.

    ``state``: ``pushed`` (created in BigCommerce), ``already existed`` (done: BigCommerce had
    it), ``waiting``, ``retrying``, ``paused`` (the store's BigCommerce credentials were
    refused) or ``failed`` (refused for good: ``reason`` is BigCommerce's answer).
    """
    visible = None if stores is None else list(stores)
    where, params = "d.kind = ?", [outbox.COUPON]
    if visible is not None:
        where += f" AND d.store_hash IN ({', '.join('?' for _ in visible)})"
        params += visible
    if key is not None:
        where += " AND d.key = ?"
        params.append(key)
    found = rows(
        db.execute(
            f"""
            SELECT d.*, (SELECT reason FROM pauses p WHERE p.store_hash = d.store_hash AND p.service = 'bigcommerce') AS pause_reason
            FROM deliveries d WHERE {where} ORDER BY d.updated_at DESC, d.id DESC LIMIT ?
            """,
            [*params, limit],
        )
    )
    return [_coupon_push(row) for row in found]


def _coupon_push(row: dict) -> dict:
    asked = _json_object(row["payload"])
    answer = _json_object(row["response"]) if row["state"] == outbox.DONE else {}
    if row["state"] == outbox.DONE:
        state = "pushed" if answer.get("created", True) else "already existed"
    elif row["state"] == DEAD:
        state = "failed"
    elif row["pause_reason"]:
        state = "paused"
    elif row["attempts"]:
        state = "retrying"
    else:
        state = "waiting"
    reason = None
    if state == "failed":
        reason = row["last_error"] or row["response"]  # "BigCommerce answered HTTP 422: <its reason>"
    elif state == "paused":
        reason = row["pause_reason"]
    elif state == "retrying":
        reason = row["last_error"]
    return {
        "store_hash": row["store_hash"],
        "code": asked.get("code", ""),
        "state": state,
        "reason": reason,
        "last_status": row["last_status"],
        "attempts": row["attempts"],
        "source": asked.get("source"),
        "trigger_id": asked.get("trigger_id"),
        "queued_at": iso(row["created_at"]),
        "at": iso(row["done_at"] or row["updated_at"]),
        "next_attempt_at": iso(row["due_at"]) if row["state"] == PENDING else None,
    }


def _json_object(text: str | None) -> dict:
    try:
        found = json.loads(text or "")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


# The storefront script (SPEC section 4 step 3): what it reported, per order and per store.


def storefront_claim_story(db: Database, *, store_hash: str, order_id: int, report_built: bool) -> dict:
    """The cart id the storefront script posted for an order, and what became of it.

    ``matched``: True when it named one of the order's own carts (used), False when it did
    not (ignored), None when it was not weighed (no post, or a post after the report was built).
    """
    claim = storefront.find_claim(db, store_hash=store_hash, order_id=order_id)
    if claim is None:
        text = cart_words.STOREFRONT_SILENT if report_built else None
        return {"reported": False, "cart_id": None, "origin": None, "claimed_at": None, "matched": None, "text": text}
    matched = None if claim["matched"] is None else bool(claim["matched"])
    if matched is True:
        text = cart_words.STOREFRONT_CONFIRMED
    elif matched is False:
        text = cart_words.STOREFRONT_MISMATCH
    else:
        text = cart_words.STOREFRONT_LATE if report_built else cart_words.STOREFRONT_PENDING
    return {
        "reported": True,
        "cart_id": claim["cart_id"],
        "origin": claim["origin"],
        "claimed_at": iso(claim["claimed_at"]),
        "matched": matched,
        "text": text,
    }


def storefront_script_health(db: Database, store_hash: str) -> dict:
    """Whether the storefront script runs for a store: its last post, and the origins it may post from."""
    last = storefront.last_claim_at(db, store_hash)
    origins = storefront.origins_row(db, store_hash)
    if last is not None:
        detail = f"Last reported an order's cart id at {iso(last)}."
    else:
        detail = "The storefront script has not posted a cart id yet: add it with Script Manager (see the README), then place a test order."
    return {
        "last_report_at": iso(last),
        "origins": origins["origins"] if origins else [],
        "origins_read_at": iso(origins["read_at"]) if origins else None,
        "origins_problem": origins["error"] if origins else None,
        "detail": detail,
    }
