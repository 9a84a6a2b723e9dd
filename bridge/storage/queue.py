"""Leased work queues in SQLite, shared by the event inbox and the Refersion outbox.

An item is ``pending`` until a worker claims it; a claim sets ``working``, the
worker's id and a short lease that the worker's heartbeat keeps renewing. A worker
that dies stops renewing, its lease runs out, and the item is claimed again. Every
settling update is fenced on the lease owner, so a worker that lost its lease
cannot overwrite what the next owner did.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from sqlite_utils import Database

PENDING = "pending"
WORKING = "working"
DEAD = "dead"  # gave up: the schedule ran out, or retrying cannot help
LEASE_SECONDS = 15.0  # a dead worker's items are claimed again within this long
HEARTBEAT_SECONDS = 5.0  # how often a live worker renews its leases


def rows(cursor: sqlite3.Cursor) -> list[dict]:
    names = [column[0] for column in cursor.description or ()]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


@dataclass(frozen=True)
class LeasedTable:
    """One queue table. ``service`` names the remote whose pause holds its items back."""

    table: str
    service: str

    def claim(self, db: Database, *, owner: str, now: float) -> dict | None:
        """Claim the next due item, or one whose lease ran out. Call inside ``db.immediate``."""
        if not db.conn.in_transaction:
            raise RuntimeError("claim() must run inside an immediate transaction")
        found = rows(
            db.execute(
                f"""
                UPDATE {self.table}
                SET state = :working, lease_owner = :owner, lease_until = :until
                WHERE id = (
                    SELECT id FROM {self.table}
                    WHERE ((state = :pending AND due_at <= :now) OR (state = :working AND lease_until < :now))
                      AND store_hash NOT IN (SELECT store_hash FROM pauses WHERE service = :service)
                    ORDER BY due_at, id
                    LIMIT 1
                )
                RETURNING *
                """,
                {
                    "working": WORKING,
                    "pending": PENDING,
                    "owner": owner,
                    "until": now + LEASE_SECONDS,
                    "now": now,
                    "service": self.service,
                },
            )
        )
        return found[0] if found else None

    def renew(self, db: Database, *, owner: str, now: float) -> int:
        """Extend every lease ``owner`` holds; returns how many."""
        cursor = db.execute(
            f"UPDATE {self.table} SET lease_until = ? WHERE lease_owner = ? AND state = ?",
            [now + LEASE_SECONDS, owner, WORKING],
        )
        return cursor.rowcount

    def held(self, db: Database, *, owner: str) -> list[dict]:
        """The items ``owner`` holds now."""
        return rows(db.execute(f"SELECT * FROM {self.table} WHERE lease_owner = ? AND state = ?", [owner, WORKING]))

    def settle(self, db: Database, ids: Iterable[int], *, owner: str, **columns) -> int:
        """Write ``columns`` (a new ``state`` among them) to items ``owner`` still holds, and drop the lease.

        Returns how many items were still held: fewer than asked means a lease was lost.
        """
        ids = list(ids)
        assignments = ", ".join(f"{name} = :{name}" for name in columns)
        placeholders = ", ".join(f":id{i}" for i in range(len(ids)))
        params = {**columns, "owner": owner, "working": WORKING, **{f"id{i}": value for i, value in enumerate(ids)}}
        cursor = db.execute(
            f"""
            UPDATE {self.table}
            SET {assignments}, lease_owner = NULL, lease_until = NULL
            WHERE id IN ({placeholders}) AND lease_owner = :owner AND state = :working
            """,
            params,
        )
        return cursor.rowcount
