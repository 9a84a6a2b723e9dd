"""The storefront half of the cart id: what the storefront script posted, and where it may post from.

A claim is the cart id the script posted for an order: public and forgeable, so it is kept
as a claim and weighed by the worker against the order's own carts (``core.payload``). One
claim per order, the first: a later, different post cannot replace it.
``storefront_origins`` holds each store's own origins as last read from BigCommerce.
"""

from __future__ import annotations

import json

from sqlite_utils import Database

from bridge.storage.db import rows

STORED, SAME, KEPT_FIRST = "stored", "same", "kept_first"


def record_claim(db: Database, *, store_hash: str, order_id: int, cart_id: str, origin: str, now: float) -> str:
    """Keep the storefront's cart id for an order (call in a transaction).

    :returns: STORED, SAME (the same value again: nothing changes) or KEPT_FIRST (another
        value was posted before; it stays).
    """
    inserted = db.execute(
        """
        INSERT INTO storefront_claims (store_hash, order_id, cart_id, origin, claimed_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (store_hash, order_id) DO NOTHING
        """,
        [store_hash, order_id, cart_id, origin, now],
    ).rowcount
    if inserted:
        return STORED
    return SAME if find_claim(db, store_hash=store_hash, order_id=order_id)["cart_id"] == cart_id else KEPT_FIRST


def find_claim(db: Database, *, store_hash: str, order_id: int) -> dict | None:
    found = rows(db.execute("SELECT * FROM storefront_claims WHERE store_hash = ? AND order_id = ?", [store_hash, order_id]))
    return found[0] if found else None


def mark_checked(db: Database, *, store_hash: str, order_id: int, matched: bool, now: float) -> None:
    """Remember whether the claim named one of the order's own carts (call in a transaction)."""
    db.execute(
        "UPDATE storefront_claims SET matched = ?, checked_at = ? WHERE store_hash = ? AND order_id = ?",
        [int(matched), now, store_hash, order_id],
    )


def last_claim_at(db: Database, store_hash: str) -> float | None:
    return db.execute("SELECT max(claimed_at) FROM storefront_claims WHERE store_hash = ?", [store_hash]).fetchone()[0]


def record_origins(db: Database, *, store_hash: str, origins: list[str] | None, now: float, error: str | None = None) -> None:
    """Write one read of the store's origins; a failed read (``origins`` None) keeps the last good ones."""
    db.execute(
        """
        INSERT INTO storefront_origins (store_hash, origins, read_at, error) VALUES (:store, :origins, :read_at, :error)
        ON CONFLICT (store_hash) DO UPDATE SET
            origins = CASE WHEN :read_at IS NULL THEN storefront_origins.origins ELSE excluded.origins END,
            read_at = coalesce(:read_at, storefront_origins.read_at),
            error = excluded.error
        """,
        {"store": store_hash, "origins": json.dumps(origins or []), "read_at": now if origins is not None else None, "error": error},
    )


def origins_row(db: Database, store_hash: str) -> dict | None:
    found = rows(db.execute("SELECT * FROM storefront_origins WHERE store_hash = ?", [store_hash]))
    if not found:
        return None
    return {**found[0], "origins": json.loads(found[0]["origins"])}


def known_origins(db: Database) -> set[str]:
    """Every origin read for any store (a preflight names no store)."""
    found: set[str] = set()
    for (text,) in db.execute("SELECT origins FROM storefront_origins"):
        found.update(json.loads(text))
    return found
