"""The facts behind ``/healthz``: queue depth, oldest undelivered work, dead items, pauses."""

from __future__ import annotations

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
