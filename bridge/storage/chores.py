"""Chores: periodic work of the worker (reconcile passes, hook checks, alerts, purges), per store.

One row per chore and store (``store_hash`` is ``''`` for a chore of the whole deployment).
A chore is due at ``due_at``; a worker claims it with a lease like any queue item, so two
workers on one database never run the same chore at once, and a worker killed mid-chore
leaves it to be claimed again once the lease runs out. ``state`` is the chore's own
memory across runs and restarts (JSON), such as where the last reconcile pass ended.
"""

from __future__ import annotations

import json

from sqlite_utils import Database

from bridge.storage.db import rows

WHOLE_DEPLOYMENT = ""


def schedule(db: Database, *, name: str, store_hash: str = WHOLE_DEPLOYMENT, due_at: float) -> None:
    """Make sure the chore exists; a chore already scheduled keeps its time (call in a transaction)."""
    db.execute(
        "INSERT INTO chores (name, store_hash, due_at, state) VALUES (?, ?, ?, '{}') ON CONFLICT (name, store_hash) DO NOTHING",
        [name, store_hash, due_at],
    )


def bring_forward(db: Database, *, name: str, store_hash: str = WHOLE_DEPLOYMENT, due_at: float, state: dict | None = None) -> None:
    """Run the chore no later than ``due_at``, merging ``state`` into its memory (call in a transaction)."""
    schedule(db, name=name, store_hash=store_hash, due_at=due_at)
    found = rows(db.execute("SELECT state FROM chores WHERE name = ? AND store_hash = ?", [name, store_hash]))
    merged = {**json.loads(found[0]["state"]), **(state or {})}
    db.execute(
        "UPDATE chores SET due_at = min(due_at, ?), state = ? WHERE name = ? AND store_hash = ?",
        [due_at, json.dumps(merged), name, store_hash],
    )


def claim_due(db: Database, *, names: list[str], owner: str, now: float, lease: float) -> dict | None:
    """Claim the most overdue chore among ``names`` (or one whose lease ran out); call in a transaction."""
    if not db.conn.in_transaction:
        raise RuntimeError("a claim must run inside an immediate transaction")
    if not names:
        return None
    marks = ", ".join("?" for _ in names)
    found = rows(
        db.execute(
            f"""
            UPDATE chores SET lease_owner = ?, lease_until = ?
            WHERE rowid = (
                SELECT rowid FROM chores
                WHERE name IN ({marks}) AND due_at <= ? AND (lease_until IS NULL OR lease_until < ?)
                  AND store_hash NOT IN (SELECT store_hash FROM stores WHERE uninstalled_at IS NOT NULL)
                ORDER BY due_at LIMIT 1
            )
            RETURNING *
            """,
            [owner, now + lease, *names, now, now],
        )
    )
    if not found:
        return None
    row = found[0]
    row["state"] = json.loads(row["state"])
    return row


def finish(
    db: Database, *, name: str, store_hash: str, owner: str, due_at: float, state: dict, now: float, error: str | None = None
) -> bool:
    """Record a run and when the chore is next due; False when ``owner`` lost the lease (call in a transaction)."""
    cursor = db.execute(
        """
        UPDATE chores SET due_at = ?, state = ?, lease_owner = NULL, lease_until = NULL, last_run_at = ?, last_error = ?
        WHERE name = ? AND store_hash = ? AND lease_owner = ?
        """,
        [due_at, json.dumps(state), now, error, name, store_hash, owner],
    )
    return cursor.rowcount > 0


def renew(db: Database, *, owner: str, now: float, lease: float) -> int:
    """Extend the lease of every chore ``owner`` holds (the worker's heartbeat)."""
    return db.execute("UPDATE chores SET lease_until = ? WHERE lease_owner = ?", [now + lease, owner]).rowcount


def release(db: Database, *, owner: str) -> int:
    """Give back every chore ``owner`` holds, due again at once (after an error in the loop)."""
    return db.execute("UPDATE chores SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?", [owner]).rowcount


def find(db: Database, *, name: str, store_hash: str = WHOLE_DEPLOYMENT) -> dict | None:
    found = rows(db.execute("SELECT * FROM chores WHERE name = ? AND store_hash = ?", [name, store_hash]))
    if not found:
        return None
    found[0]["state"] = json.loads(found[0]["state"])
    return found[0]


def all_chores(db: Database) -> list[dict]:
    listed = rows(db.execute("SELECT * FROM chores ORDER BY name, store_hash"))
    for row in listed:
        row["state"] = json.loads(row["state"])
    return listed
