"""The facts behind ``/healthz``: queue depth, oldest undelivered work, dead items, pauses,
and whether the database can take a write (full, read-only, locked)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlite_utils import Database

from bridge.storage import hook_checks
from bridge.storage.pauses import holds, pauses
from bridge.storage.queue import DEAD, PENDING, WORKING

OK, DEGRADED, FAILING = "ok", "degraded", "failing"
LONG_HOLD_SECONDS = 60.0  # a rate-limit hold longer than this is news; shorter ones are routine


def health_snapshot(db: Database, *, now: float) -> dict:
    """What an operator's monitor needs, with an overall ``status``.

    ``degraded`` while anything is dead or paused, a store is rate-limited for minutes, or the
    last check of a store's webhooks found one missing, deactivated or misdirected;
    ``failing`` is for the caller to say when the database itself cannot be used.
    """
    waiting = (PENDING, WORKING)
    events = db.execute("SELECT count(*) FROM events WHERE state IN (?, ?)", waiting).fetchone()[0]
    deliveries, oldest = db.execute("SELECT count(*), min(created_at) FROM deliveries WHERE state IN (?, ?)", waiting).fetchone()
    dead_events = db.execute("SELECT count(*) FROM events WHERE state = ?", [DEAD]).fetchone()[0]
    dead_deliveries = db.execute("SELECT count(*) FROM deliveries WHERE state = ?", [DEAD]).fetchone()[0]
    paused = [{"store_hash": row["store_hash"], "service": row["service"], "reason": row["reason"]} for row in pauses(db)]
    problems = []
    if dead_events or dead_deliveries:
        problems.append(f"{dead_events + dead_deliveries} dead item(s) need attention (replay them once the cause is fixed)")
    problems.extend(f"store {row['store_hash']} paused for {row['service']}: {row['reason']}" for row in paused)
    held = holds(db, now=now)
    problems.extend(
        f"store {row['store_hash']} is held back by a {row['service']} rate limit for another {round((row['until'] - now) / 60)} min"
        for row in held
        if row["until"] - now > LONG_HOLD_SECONDS
    )
    broken_hooks = hook_checks.failing(db)
    problems.extend(
        f"store {row['store_hash']} webhooks: {hook_checks.describe(row['problems'])}" + (f" ({row['note']})" if row["note"] else "")
        for row in broken_hooks
    )
    return {
        "status": DEGRADED if problems else OK,
        "problems": problems,
        "database": "ok",
        "queue_depth": {"events": events, "deliveries": deliveries},
        "oldest_pending_delivery_age_seconds": round(now - oldest, 1) if oldest is not None else None,
        "dead": {"events": dead_events, "deliveries": dead_deliveries},
        "paused": paused,
        "hooks": [{"store_hash": row["store_hash"], "problems": row["problems"]} for row in broken_hooks],
        "held": [{"store_hash": row["store_hash"], "service": row["service"], "until": row["until"]} for row in held],
    }


# --- can the database take a write now (a full disk, a read-only file, another writer's lock)? ---

FULL, READ_ONLY, LOCKED = "full", "read-only", "locked"
MIN_FREE_BYTES = 1 << 20  # SQLite grows the file and the WAL by pages: under a MiB free is full in practice
LOCK_PROBE_SECONDS = 0.5

_FAULT_PROBLEMS = {
    FULL: "the disk holding the database ({path}) is full: webhooks are answered 503 and retried by BigCommerce; free space",
    READ_ONLY: "the database ({path}) or its folder is read-only: webhooks are answered 503 and retried by BigCommerce; "
    "make both writable by the bridge's user",
    LOCKED: "the database ({path}) is locked by another writer: webhooks are answered 503 and retried by BigCommerce; "
    "find the process holding a write transaction open",
}


def _fault_of(error: sqlite3.Error) -> str | None:
    text = str(error).lower()
    if "locked" in text or "busy" in text:
        return LOCKED
    if "readonly" in text or "read-only" in text:
        return READ_ONLY
    if "full" in text:
        return FULL
    return None


def write_fault(db: Database | None, path: str | Path) -> tuple[str, str] | None:
    """Why the database cannot take a write now, as ``(kind, problem)``; None when it can.

    Looks at the file system first (read-only, nearly no space left), then takes the write
    lock for a moment, waiting at most LOCK_PROBE_SECONDS, and lets it go without writing.
    """
    path = Path(path)
    folder = path.parent
    try:
        stats = os.statvfs(folder)
    except OSError:
        stats = None
    kind = None
    if (
        (stats is not None and stats.f_flag & os.ST_RDONLY)
        or not os.access(folder, os.W_OK)
        or (path.exists() and not os.access(path, os.W_OK))
    ):
        kind = READ_ONLY
    elif stats is not None and stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
        kind = FULL
    elif db is not None:
        kind = _probe_lock(db)
    return (kind, _FAULT_PROBLEMS[kind].format(path=path)) if kind else None


def _probe_lock(db: Database) -> str | None:
    (previous,) = db.conn.execute("PRAGMA busy_timeout").fetchone()
    db.conn.execute(f"PRAGMA busy_timeout = {int(LOCK_PROBE_SECONDS * 1000)}")
    try:
        db.conn.execute("BEGIN IMMEDIATE")
        db.conn.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        fault = _fault_of(error)
        if fault is None:
            raise
        return fault
    finally:
        db.conn.execute(f"PRAGMA busy_timeout = {int(previous)}")
    return None
