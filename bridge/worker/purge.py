"""The daily purge of customer data past ``database.retention_days`` (see ``storage/purge.py``)."""

from __future__ import annotations

import logging

from bridge.storage import purge as retention
from bridge.storage.stores import Store
from bridge.worker.chores import AGAIN, CHORES, Chore
from bridge.worker.context import Context

log = logging.getLogger(__name__)

RUN_BUDGET_SECONDS = 2.0  # one run's share of the worker: deliveries of every store wait while it runs


def run(ctx: Context, store: Store | None, state: dict) -> dict:
    """Purge once for the whole deployment; the state remembers what the last run removed."""
    now, days = ctx.clock(), ctx.settings.database.retention_days
    done = retention.purge(ctx.db, now=now, retention_days=days, budget_seconds=RUN_BUDGET_SECONDS)
    events = sum(entry.events for entry in done)
    payloads = sum(entry.payloads for entry in done)
    forgotten = [entry.store_hash for entry in done if entry.deleted]
    if events or payloads or forgotten:
        log.info(
            "Purge: customer data removed from %d event(s) and %d delivery payload(s); history deleted of %d uninstalled store(s)",
            events,
            payloads,
            len(forgotten),
        )
    state = {"events": events, "payloads": payloads, "stores_deleted": forgotten}
    if retention.left_to_purge(ctx.db, now=now, retention_days=days):
        state[AGAIN] = True  # a first purge of a large database goes on at once, with other work in between
    return state


PURGE = Chore(name="purge", per_store=False, interval=lambda settings: 86_400.0, run=run)
CHORES.append(PURGE)
