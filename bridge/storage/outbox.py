"""The outbox: what must reach Refersion, one row per order and kind, sent by the worker."""

from __future__ import annotations

from sqlite_utils import Database

from bridge.storage.queue import PENDING, LeasedTable, rows

PAID = "paid"
DONE, DRY_RUN = "done", "dry_run"

deliveries = LeasedTable("deliveries", service="refersion")


def delivery_key(kind: str, store_hash: str, order_id: int) -> str:
    """Deterministic and unique: enqueueing the same report twice is a no-op."""
    return f"{kind}:{store_hash}:{order_id}"


def enqueue(db: Database, *, kind: str, store_hash: str, order_id: int, payload: str, now: float, dry_run: bool = False) -> bool:
    """Queue a delivery unless one with the same key exists; True when queued now."""
    # atomic(): a statement with RETURNING is not auto-committed by sqlite-utils.
    with db.atomic():
        inserted = rows(
            db.execute(
                """
                INSERT INTO deliveries (key, kind, store_hash, order_id, payload, state, due_at, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (key) DO NOTHING
                RETURNING id
                """,
                [
                    delivery_key(kind, store_hash, order_id),
                    kind,
                    store_hash,
                    order_id,
                    payload,
                    DRY_RUN if dry_run else PENDING,
                    now,
                    now,
                    now,
                ],
            )
        )
    return bool(inserted)


def delivery_state(db: Database, *, kind: str, store_hash: str, order_id: int) -> str | None:
    found = rows(db.execute("SELECT state FROM deliveries WHERE key = ?", [delivery_key(kind, store_hash, order_id)]))
    return found[0]["state"] if found else None
