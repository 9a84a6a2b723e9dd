"""What the bridge decided about each order: an append-only history and the current verdict.

Every decision is appended to ``decisions``; ``orders`` holds the one in force. A
decision made on an older read of the order (its ``date_modified``) than the one in
force never replaces it, and nothing replaces a report but the explicit drop of a
report that was never sent (``force``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlite_utils import Database

from bridge.storage.db import rows

REPORT = "report"


@dataclass(frozen=True)
class OrderFacts:
    """What the order looked like when it was decided on."""

    status_id: int | None = None
    payment_status: str | None = None
    total: str | None = None
    currency: str | None = None
    modified_at: float | None = None  # the order's date_modified, as Unix seconds


def record_decision(
    db: Database,
    *,
    store_hash: str,
    order_id: int,
    verdict: str,
    reasons: Sequence[tuple[str, str]],
    facts: OrderFacts,
    cart_id_source: str | None,
    note: str | None,
    now: float,
    force: bool = False,
) -> bool:
    """Record a decision; True when it is now the one in force. Call inside a transaction.

    :param reasons: ``(code, text)`` pairs.
    :param force: replace a report (only when a report that was never sent is dropped).
    """
    values = {
        "store": store_hash,
        "order": order_id,
        "verdict": verdict,
        "reasons": json.dumps([{"code": code, "text": text} for code, text in reasons]),
        "modified": facts.modified_at,
        "status": facts.status_id,
        "payment": facts.payment_status,
        "total": facts.total,
        "currency": facts.currency,
        "cart_source": cart_id_source,
        "note": note,
        "now": now,
        "force": int(force),
        "report": REPORT,
    }
    applied = rows(
        db.execute(
            """
            INSERT INTO orders (store_hash, order_id, verdict, reasons, status_id, payment_status, total, currency,
                                cart_id_source, note, evaluated_at, order_modified)
            VALUES (:store, :order, :verdict, :reasons, :status, :payment, :total, :currency, :cart_source, :note, :now, :modified)
            ON CONFLICT (store_hash, order_id) DO UPDATE SET
                verdict = excluded.verdict, reasons = excluded.reasons, status_id = excluded.status_id,
                payment_status = excluded.payment_status, total = excluded.total, currency = excluded.currency,
                cart_id_source = coalesce(excluded.cart_id_source, orders.cart_id_source),
                note = coalesce(excluded.note, orders.note), evaluated_at = excluded.evaluated_at,
                order_modified = coalesce(excluded.order_modified, orders.order_modified)
            WHERE :force OR (
                orders.verdict != :report
                -- an unknown date_modified orders nothing: the newer write wins
                AND (excluded.order_modified IS NULL OR orders.order_modified IS NULL
                     OR excluded.order_modified >= orders.order_modified)
            )
            RETURNING verdict
            """,
            values,
        )
    )
    db.execute(
        """
        INSERT INTO decisions (store_hash, order_id, verdict, reasons, order_modified, status_id, payment_status, total,
                               currency, cart_id_source, note, at)
        VALUES (:store, :order, :verdict, :reasons, :modified, :status, :payment, :total, :currency, :cart_source, :note, :now)
        """,
        values,
    )
    return bool(applied)


def current_decision(db: Database, *, store_hash: str, order_id: int) -> dict | None:
    found = rows(db.execute("SELECT * FROM orders WHERE store_hash = ? AND order_id = ?", [store_hash, order_id]))
    return found[0] if found else None


def history(db: Database, *, store_hash: str, order_id: int) -> list[dict]:
    """Every decision made about an order, oldest first."""
    return rows(db.execute("SELECT * FROM decisions WHERE store_hash = ? AND order_id = ? ORDER BY id", [store_hash, order_id]))
