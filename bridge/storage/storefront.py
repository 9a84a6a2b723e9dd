"""The storefront half of the cart id: what the storefront script posted, and where it may post from.

A claim is a cart id the script posted for an order: public and forgeable, so it is kept as a
claim and weighed by the worker against the order's own carts (``core.payload``). Up to
MAX_CLAIMS distinct claims are kept per order, so a forger who posts first cannot shut out the
shopper's own post; the worker uses the one that names the order's cart.
``storefront_origins`` holds each store's own origins as last read from BigCommerce.
"""

from __future__ import annotations

import json

from sqlite_utils import Database

from bridge.storage.db import rows

STORED, SAME, FULL = "stored", "same", "full"
MAX_CLAIMS = 3  # distinct cart ids kept per order; a shopper's page posts one


def record_claim(
    db: Database, *, store_hash: str, order_id: int, cart_id: str, origin: str, now: float, known: frozenset[str] = frozenset()
) -> str:
    """Keep a storefront cart id for an order (call in a transaction).

    A value in ``known`` (a cart the server already links to the order) is always kept, even
    once the order has MAX_CLAIMS other values.

    :returns: STORED, SAME (the same value again: nothing changes) or FULL (MAX_CLAIMS other
        values are kept already: not taken).
    """
    taken = {row["cart_id"] for row in find_claims(db, store_hash=store_hash, order_id=order_id)}
    if cart_id in taken:
        return SAME
    if len(taken) >= MAX_CLAIMS and cart_id not in known:
        return FULL
    db.execute(
        "INSERT INTO storefront_claims (store_hash, order_id, cart_id, origin, claimed_at) VALUES (?, ?, ?, ?, ?)",
        [store_hash, order_id, cart_id, origin, now],
    )
    return STORED


def find_claims(db: Database, *, store_hash: str, order_id: int) -> list[dict]:
    """Every claim for an order, oldest first."""
    return rows(
        db.execute(
            "SELECT * FROM storefront_claims WHERE store_hash = ? AND order_id = ? ORDER BY claimed_at, rowid", [store_hash, order_id]
        )
    )


def find_claim(db: Database, *, store_hash: str, order_id: int) -> dict | None:
    """The claim that tells the order's story: the one the worker used, else the first."""
    found = find_claims(db, store_hash=store_hash, order_id=order_id)
    used = [claim for claim in found if claim["matched"]]
    return (used or found or [None])[0]


def mark_checked(db: Database, *, store_hash: str, order_id: int, used: str | None, now: float) -> None:
    """Remember which claim (if any) named one of the order's own carts (call in a transaction)."""
    db.execute(
        "UPDATE storefront_claims SET matched = (lower(cart_id) = lower(?)), checked_at = ? WHERE store_hash = ? AND order_id = ?",
        [used or "", now, store_hash, order_id],
    )


def order_heard_of(db: Database, *, store_hash: str, order_id: int, ahead: int) -> bool:
    """Whether the bridge has reason to believe the store has this order: its id is at most ``ahead``
    past the newest order a BigCommerce webhook named (ids are sequential, and the shopper's
    confirmation page may post before the webhook of its order arrives)."""
    newest = db.execute(
        """
        SELECT max(order_id) FROM (
            SELECT order_id FROM events WHERE store_hash = :store
            UNION ALL SELECT order_id FROM cart_links WHERE store_hash = :store
        )
        """,
        {"store": store_hash},
    ).fetchone()[0]
    return newest is not None and order_id <= newest + ahead


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
