"""Cart ids known for each order, by where they came from."""

from __future__ import annotations

from sqlite_utils import Database

from bridge.storage.db import rows


def link_cart(db: Database, *, store_hash: str, order_id: int, source: str, cart_id: str, now: float) -> None:
    """Record that ``cart_id`` became ``order_id``; the most recent link of a source wins."""
    db.execute(
        """
        INSERT INTO cart_links (store_hash, order_id, source, cart_id, recorded_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (store_hash, order_id, source) DO UPDATE SET cart_id = excluded.cart_id, recorded_at = excluded.recorded_at
        """,
        [store_hash, order_id, source, cart_id, now],
    )


def known_cart_ids(db: Database, *, store_hash: str, order_id: int) -> dict[str, str]:
    """Cart ids recorded for an order, by source."""
    found = rows(db.execute("SELECT source, cart_id FROM cart_links WHERE store_hash = ? AND order_id = ?", [store_hash, order_id]))
    return {row["source"]: row["cart_id"] for row in found}
