"""What the bridge knows about each order and store: decisions, cart links, pauses."""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlite_utils import Database

from bridge.core.payload import CartId
from bridge.core.rules import Decision
from bridge.storage.queue import rows


def record_decision(
    db: Database, *, store_hash: str, order_id: int, decision: Decision, order: Mapping | None, cart: CartId | None, now: float
) -> None:
    """Keep the latest decision for an order, with its reasons in plain words."""
    reasons = [{"code": reason.code, "text": reason.text} for reason in decision.reasons]
    db.execute(
        """
        INSERT INTO orders (store_hash, order_id, verdict, reasons, status_id, payment_status, total, currency,
                            cart_id_source, note, evaluated_at)
        VALUES (:store, :order, :verdict, :reasons, :status, :payment, :total, :currency, :cart_source, :note, :now)
        ON CONFLICT (store_hash, order_id) DO UPDATE SET
            verdict = excluded.verdict, reasons = excluded.reasons, status_id = excluded.status_id,
            payment_status = excluded.payment_status, total = excluded.total, currency = excluded.currency,
            cart_id_source = coalesce(excluded.cart_id_source, orders.cart_id_source),
            note = coalesce(excluded.note, orders.note), evaluated_at = excluded.evaluated_at
        """,
        {
            "store": store_hash,
            "order": order_id,
            "verdict": decision.verdict.value,
            "reasons": json.dumps(reasons),
            "status": order["status_id"] if order else None,
            "payment": order["payment_status"] if order else None,
            "total": str(order["total_inc_tax"]) if order else None,
            "currency": (order["default_currency_code"] or order["currency_code"]) if order else None,
            "cart_source": cart.source if cart else None,
            "note": cart.note if cart else None,
            "now": now,
        },
    )


def known_cart_ids(db: Database, *, store_hash: str, order_id: int) -> dict[str, str]:
    """Cart ids recorded for an order, by source."""
    found = rows(db.execute("SELECT source, cart_id FROM cart_links WHERE store_hash = ? AND order_id = ?", [store_hash, order_id]))
    return {row["source"]: row["cart_id"] for row in found}


def pause(db: Database, *, store_hash: str, service: str, fingerprint: str, reason: str, now: float) -> None:
    """Hold back a store's work for ``service`` until its credentials change."""
    db.execute(
        """
        INSERT INTO pauses (store_hash, service, fingerprint, reason, paused_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (store_hash, service) DO UPDATE SET fingerprint = excluded.fingerprint, reason = excluded.reason
        """,
        [store_hash, service, fingerprint, reason, now],
    )


def pauses(db: Database) -> list[dict]:
    return rows(db.execute("SELECT * FROM pauses ORDER BY paused_at"))


def resume(db: Database, *, store_hash: str, service: str) -> None:
    db.execute("DELETE FROM pauses WHERE store_hash = ? AND service = ?", [store_hash, service])


def health_snapshot(db: Database, *, now: float) -> dict:
    """Queue depth, the age of the oldest undelivered report, and what is paused."""
    waiting = ("pending", "working")
    events = db.execute("SELECT count(*) FROM events WHERE state IN (?, ?)", waiting).fetchone()[0]
    deliveries, oldest = db.execute("SELECT count(*), min(created_at) FROM deliveries WHERE state IN (?, ?)", waiting).fetchone()
    return {
        "queue_depth": {"events": events, "deliveries": deliveries},
        "oldest_pending_delivery_age_seconds": round(now - oldest, 1) if oldest is not None else None,
        "paused": [{"store_hash": row["store_hash"], "service": row["service"], "reason": row["reason"]} for row in pauses(db)],
    }
