"""Leased work queues in SQLite, shared by the event inbox and the outbox.

An item is ``pending`` until a worker claims it; a claim sets ``working``, the
worker's id and a short lease that the worker's heartbeat keeps renewing. A worker
that dies stops renewing, its lease runs out, and the item is claimed again. Every
settling update is fenced on the lease owner, so a worker that lost its lease
cannot overwrite what the next owner did.

Items of a store that is paused (its credentials were refused) or held (its API
quota is spent until a known time) for a service the table needs are not claimed, nor
items of a store that uninstalled the app: they wait, kept, for a re-install.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlite_utils import Database

from bridge.storage.db import rows

PENDING = "pending"
WORKING = "working"
DEAD = "dead"  # gave up: the schedule ran out, or retrying cannot help


@dataclass(frozen=True)
class Leases:
    """How long a claim lasts and how it is kept alive.

    The heartbeat waits at most ``heartbeat_busy_timeout`` for the write lock, so a
    renewal that cannot happen gives up in time for the next one: a live worker gets
    two chances to renew before its lease runs out, and no peer takes work still on the wire.
    """

    lease_seconds: float = 15.0  # a dead worker's items are claimed again within this long
    heartbeat_seconds: float = 5.0  # how often a live worker renews its leases
    heartbeat_busy_timeout: float = 2.0  # seconds one renewal waits for the write lock

    def check(self) -> None:
        """Refuse timings under which a live worker could lose a lease it still needs."""
        if 2 * self.heartbeat_seconds + self.heartbeat_busy_timeout >= self.lease_seconds:
            raise ValueError(
                f"lease of {self.lease_seconds} s is too short for a heartbeat every {self.heartbeat_seconds} s "
                f"that waits up to {self.heartbeat_busy_timeout} s for the database"
            )


LEASES = Leases()


@dataclass(frozen=True)
class LeasedTable:
    """One queue table. ``services`` name the remotes whose pause or hold keeps a store's items back;
    items of ``unheld_kinds`` (the table's ``kind`` column) go to none of them and are never held back by them."""

    table: str
    services: tuple[str, ...]
    unheld_kinds: tuple[str, ...] = ()
    # (kind, services): items of these kinds are held back by these services' pauses and holds only.
    kind_services: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def _claim(self, db: Database, *, owner: str, now: float, lease: float, where: str, params: dict) -> list[dict]:
        if not db.conn.in_transaction:
            raise RuntimeError("a claim must run inside an immediate transaction")
        services = ", ".join(f"'{service}'" for service in self.services)
        unheld = f"kind IN ({', '.join(repr(kind) for kind in self.unheld_kinds)}) OR " if self.unheld_kinds else ""
        unheld += self._kind_services_sql()
        return rows(
            db.execute(
                f"""
                UPDATE {self.table}
                SET state = :working, lease_owner = :owner, lease_until = :until
                WHERE id IN (
                    SELECT id FROM {self.table}
                    WHERE ({where})
                      AND ({unheld}({self._other_kinds_sql()}store_hash NOT IN (SELECT store_hash FROM pauses WHERE service IN ({services}))
                           AND store_hash NOT IN (SELECT store_hash FROM holds WHERE service IN ({services}) AND until > :now)))
                      AND store_hash NOT IN (SELECT store_hash FROM stores WHERE uninstalled_at IS NOT NULL)
                    ORDER BY due_at, id
                    LIMIT :limit
                )
                RETURNING *
                """,
                {"working": WORKING, "pending": PENDING, "owner": owner, "until": now + lease, "now": now, "limit": -1, **params},
            )
        )

    def _kind_services_sql(self) -> str:
        """Conditions letting items of ``kind_services`` through unless their own services hold the store back."""
        parts = []
        for kind, services in self.kind_services:
            names = ", ".join(repr(service) for service in services)
            parts.append(
                f"(kind = {kind!r} AND store_hash NOT IN (SELECT store_hash FROM pauses WHERE service IN ({names}))"
                f" AND store_hash NOT IN (SELECT store_hash FROM holds WHERE service IN ({names}) AND until > :now)) OR "
            )
        return "".join(parts)

    def _other_kinds_sql(self) -> str:
        if not self.kind_services:
            return ""
        return f"kind NOT IN ({', '.join(repr(kind) for kind, _ in self.kind_services)}) AND "

    def claim(
        self,
        db: Database,
        *,
        owner: str,
        now: float,
        lease: float = LEASES.lease_seconds,
        skip_stores: Collection[str] = (),
        skip_orders: Collection[tuple[str, int]] = (),
    ) -> dict | None:
        """Claim the next due item, or one whose lease ran out. Call inside ``db.immediate``.

        ``skip_stores`` and ``skip_orders`` (store hash, order id) are left for later: the
        worker's threads are busy with as much of them as it allows at once.
        """
        # The lists go in as JSON arrays, so the SQL is the same whatever their length: SQLite keeps
        # one prepared statement (tens of KiB each) per distinct text, and a placeholder per item
        # made the dispatcher's connection keep a hundred of them (4 MiB of the worker, issue 11).
        where = (
            "((state = :pending AND due_at <= :now) OR (state = :working AND lease_until < :now))"
            " AND store_hash NOT IN (SELECT value FROM json_each(:skip_stores))"
            " AND coalesce(store_hash || ':' || order_id, '') NOT IN (SELECT value FROM json_each(:skip_orders))"
        )
        params = {
            "limit": 1,
            "skip_stores": json.dumps(list(skip_stores)),
            "skip_orders": json.dumps([f"{store}:{order}" for store, order in skip_orders]),
        }
        found = self._claim(db, owner=owner, now=now, lease=lease, where=where, params=params)
        return found[0] if found else None

    def any_due(self, db: Database, *, now: float) -> bool:
        """Whether an item is due, or leased past its lease (a read: no lock taken, so an idle
        worker can look often and cheaply; a claim may still find it held back)."""
        return bool(
            db.execute(
                f"""
                SELECT EXISTS (SELECT 1 FROM {self.table} WHERE state = :pending AND due_at <= :now)
                    OR EXISTS (SELECT 1 FROM {self.table} WHERE state = :working AND lease_until < :now)
                """,
                {"pending": PENDING, "working": WORKING, "now": now},
            ).fetchone()[0]
        )

    def claim_pending(
        self, db: Database, *, owner: str, now: float, where: str, params: dict, lease: float = LEASES.lease_seconds
    ) -> list[dict]:
        """Claim every pending item matching ``where`` (due or not). Call inside ``db.immediate``."""
        found = self._claim(db, owner=owner, now=now, lease=lease, where=f"state = :pending AND ({where})", params=params)
        return sorted(found, key=lambda row: row["id"])

    def renew(self, db: Database, *, owner: str, now: float, lease: float = LEASES.lease_seconds) -> int:
        """Extend every lease ``owner`` holds; returns how many."""
        cursor = db.execute(
            f"UPDATE {self.table} SET lease_until = ? WHERE lease_owner = ? AND state = ?",
            [now + lease, owner, WORKING],
        )
        return cursor.rowcount

    def held(self, db: Database, *, owner: str) -> list[dict]:
        """The items ``owner`` holds now."""
        return rows(db.execute(f"SELECT * FROM {self.table} WHERE lease_owner = ? AND state = ?", [owner, WORKING]))

    def requeue_dead(
        self, db: Database, *, now: float, store_hash: str | None = None, order_id: int | None = None, **columns
    ) -> list[dict]:
        """Put dead items (of one store, one order, or all) back in the queue, due now with fresh
        attempts, writing ``columns`` too; returns them. Call inside a transaction."""
        where = ["state = :dead"]
        if store_hash is not None:
            where.append("store_hash = :store")
        if order_id is not None:
            where.append("order_id = :order")
        extra = "".join(f", {name} = :{name}" for name in columns)
        return rows(
            db.execute(
                f"""
                UPDATE {self.table} SET state = :pending, attempts = 0, due_at = :now, last_error = NULL{extra}
                WHERE {" AND ".join(where)}
                RETURNING *
                """,
                {**columns, "dead": DEAD, "pending": PENDING, "now": now, "store": store_hash, "order": order_id},
            )
        )

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
