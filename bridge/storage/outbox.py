"""The outbox: everything that must reach an outside system, one row per deterministic key.

Kinds: the paid report of an order (one per store and order), a cancellation (one per
refund), a coupon push (one per code) and an alert to the operator's chat (one per incident
opened or cleared; it goes to neither Refersion nor BigCommerce, so no pause of the store
holds it back). Enqueueing a key twice is a no-op, so a report can be queued only once
whatever happens later.
"""

from __future__ import annotations

from sqlite_utils import Database

from bridge.storage.db import rows
from bridge.storage.queue import DEAD, PENDING, WORKING, LeasedTable

PAID, CANCEL, COUPON, ALERT = "paid", "cancel", "coupon", "alert"
DONE, DRY_RUN, SKIPPED = "done", "dry_run", "skipped"  # besides the queue's pending, working, dead

# A send re-reads the order first when its report has waited longer than this since it
# was queued: the order may have been refunded or cancelled meanwhile.
FRESH_SECONDS = 60.0

# A coupon push goes to BigCommerce alone: a Refersion pause does not hold it back.
deliveries = LeasedTable(
    "deliveries", services=("refersion", "bigcommerce"), unheld_kinds=(ALERT,), kind_services=((COUPON, ("bigcommerce",)),)
)


def paid_key(store_hash: str, order_id: int) -> str:
    return f"{PAID}:{store_hash}:{order_id}"


def cancel_key(store_hash: str, order_id: int, refund_id: int | str) -> str:
    return f"{CANCEL}:{store_hash}:{order_id}:{refund_id}"


def coupon_key(store_hash: str, code: str) -> str:
    return f"{COUPON}:{store_hash}:{code.strip().casefold()}"


def alert_key(store_hash: str, kind: str, opened_at: float, phase: str) -> str:
    """One alert per incident and phase (``open`` or ``clear``): queued twice, sent once."""
    return f"{ALERT}|{store_hash}|{kind}|{opened_at!r}|{phase}"


def enqueue(
    db: Database,
    *,
    key: str,
    kind: str,
    store_hash: str,
    order_id: int | None,
    payload: str,
    now: float,
    meta: str | None = None,
    dry_run: bool = False,
) -> bool:
    """Queue a delivery unless one with the same key exists; True when queued now.

    :param meta: JSON of what the kind's sender needs besides the body (for a paid
        report, the BigCommerce order-product id of every item).
    """
    inserted = rows(
        db.execute(
            """
            INSERT INTO deliveries (key, kind, store_hash, order_id, payload, meta, state, due_at, created_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (key) DO NOTHING
            RETURNING id
            """,
            [key, kind, store_hash, order_id, payload, meta,
             DRY_RUN if dry_run else PENDING, now, now, now],
        )
    )  # fmt: skip
    return bool(inserted)


def rearm_skipped(db: Database, *, key: str, payload: str, meta: str | None, now: float, dry_run: bool = False) -> bool:
    """Queue again a report that was dropped as no longer eligible, with a new body; True when it was."""
    cursor = db.execute(
        """
        UPDATE deliveries SET payload = ?, meta = ?, state = ?, attempts = 0, due_at = ?, created_at = ?, updated_at = ?,
            outcome = NULL, last_status = NULL, last_error = NULL, response = NULL, recheck = 0
        WHERE key = ? AND state = ?
        """,
        [payload, meta, DRY_RUN if dry_run else PENDING, now, now, now, key, SKIPPED],
    )
    return cursor.rowcount > 0


def find(db: Database, key: str) -> dict | None:
    found = rows(db.execute("SELECT * FROM deliveries WHERE key = ?", [key]))
    return found[0] if found else None


def skip_unsent(db: Database, *, key: str, outcome: str, now: float) -> bool:
    """Drop a delivery nobody is sending (pending, not leased); True when it was dropped."""
    cursor = db.execute(
        "UPDATE deliveries SET state = ?, outcome = ?, updated_at = ?, done_at = ? WHERE key = ? AND state = ?",
        [SKIPPED, outcome, now, now, key, PENDING],
    )
    return cursor.rowcount > 0


def flag_recheck(db: Database, *, key: str) -> None:
    """Make the next send of this row re-read its order first (it changed while the row was leased)."""
    db.execute("UPDATE deliveries SET recheck = 1 WHERE key = ?", [key])


def is_unsent(row: dict) -> bool:
    return row["state"] in (PENDING, WORKING)


def waited(row: dict, now: float) -> bool:
    """True when this send follows a wait (a retry, a pause, a hold, a slow queue) or a change to its order."""
    return bool(row["recheck"]) or row["attempts"] > 0 or now - row["created_at"] > FRESH_SECONDS


def replay(db: Database, *, store_hash: str | None = None, order_id: int | None = None, now: float) -> list[dict]:
    """Queue dead deliveries again, with fresh attempts (call in a transaction); returns them."""
    return deliveries.requeue_dead(db, now=now, store_hash=store_hash, order_id=order_id, updated_at=now)


# --- Cancellations (one per refund, see worker/cancel.py) ----------------------------------


def record_unsent(
    db: Database,
    *,
    key: str,
    kind: str,
    store_hash: str,
    order_id: int,
    payload: str,
    meta: str | None,
    outcome: str,
    note: str,
    now: float,
) -> bool:
    """Record a delivery that is not to be sent (settled ``skipped``, with why in a sentence), unless
    its key exists; True when recorded now. The story then says what happened and why nothing went."""
    inserted = rows(
        db.execute(
            """
            INSERT INTO deliveries (key, kind, store_hash, order_id, payload, meta, state, outcome, note,
                                    due_at, created_at, updated_at, done_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (key) DO NOTHING
            RETURNING id
            """,
            [key, kind, store_hash, order_id, payload, meta, SKIPPED, outcome, note, now, now, now, now],
        )
    )
    return bool(inserted)


def of_order(db: Database, *, store_hash: str, order_id: int, kind: str) -> list[dict]:
    """An order's deliveries of one kind, oldest first."""
    return rows(
        db.execute("SELECT * FROM deliveries WHERE store_hash = ? AND order_id = ? AND kind = ? ORDER BY id", [store_hash, order_id, kind])
    )


def requeue(db: Database, *, key: str, now: float) -> bool:
    """Queue a dead delivery again, due now with fresh attempts (call in a transaction); True when it was dead."""
    cursor = db.execute(
        """
        UPDATE deliveries SET state = ?, attempts = 0, due_at = ?, updated_at = ?, last_error = NULL
        WHERE key = ? AND state = ?
        """,
        [PENDING, now, now, key, DEAD],
    )
    return cursor.rowcount > 0
