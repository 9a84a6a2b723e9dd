"""Runs the worker's periodic chores: each kind is a module with one ``run`` function
(reconcile passes, hook checks, alerts, purges) registered in :data:`CHORES`.

A chore runs per store or once for the whole deployment, every ``interval(settings)``
seconds (None or 0: off). Its first run is one interval after it is first scheduled, unless
something brings it forward (``storage.chores.bring_forward``). A failed run is retried
after a shorter wait; BigCommerce's 429 holds the store as for any other job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bridge.clients.bigcommerce import BigCommerceError
from bridge.config import Settings
from bridge.core.retry import Action, classify
from bridge.storage import chores
from bridge.storage.db import immediate
from bridge.storage.stores import BIGCOMMERCE, Store
from bridge.worker.context import Context

log = logging.getLogger(__name__)

RETRY_SECONDS = 60.0  # a failed run is tried again this soon (or at its interval, if shorter)
AGAIN = "again"  # a key of the state a run returns: its work is not finished, run it again at once


@dataclass(frozen=True)
class Chore:
    name: str
    per_store: bool
    interval: Callable[[Settings], float | None]  # seconds between runs; None or 0: the chore is off
    run: Callable[[Context, Store | None, dict], dict]  # returns the chore's new state (with AGAIN: due again now)


CHORES: list[Chore] = []  # each chore module appends its Chore here when imported by the worker


def enabled(settings: Settings) -> list[Chore]:
    return [chore for chore in CHORES if chore.interval(settings)]


def schedule_all(ctx: Context) -> None:
    """Give every enabled chore a row, per store served, due one interval from now (existing rows keep theirs)."""
    now, stores = ctx.clock(), ctx.stores.all(ctx.db)
    with immediate(ctx.db):
        for chore in enabled(ctx.settings):
            targets = [store.store_hash for store in stores] if chore.per_store else [chores.WHOLE_DEPLOYMENT]
            for store_hash in targets:
                chores.schedule(ctx.db, name=chore.name, store_hash=store_hash, due_at=now + chore.interval(ctx.settings))


def run_next(ctx: Context) -> bool:
    """Run the most overdue chore, if one is due; True when one ran."""
    by_name = {chore.name: chore for chore in enabled(ctx.settings)}
    with immediate(ctx.db):
        row = chores.claim_due(ctx.db, names=list(by_name), owner=ctx.owner, now=ctx.clock(), lease=ctx.leases.lease_seconds)
    if row is None:
        return False
    chore, store_hash = by_name[row["name"]], row["store_hash"]
    interval = chore.interval(ctx.settings)
    store = ctx.stores.get(ctx.db, store_hash) if chore.per_store else None
    state, error, due_at = row["state"], None, ctx.clock() + interval
    if chore.per_store and store is None:
        error = "the bridge serves this store no more"
    else:
        try:
            state = chore.run(ctx, store, row["state"])
            if state.pop(AGAIN, False):
                due_at = ctx.clock()  # other work and other chores still come first: the loop takes one thing at a time
        except BigCommerceError as failure:
            error = f"BigCommerce: {failure}"
            outcome = classify(failure.status, failure.failure)
            due_at = ctx.clock() + min(interval, RETRY_SECONDS)
            if outcome.rate_limited:
                with immediate(ctx.db):
                    due_at = max(due_at, ctx.hold(store_hash, BIGCOMMERCE, failure.retry_after, str(failure)))
            elif outcome.action is Action.PAUSE:
                with immediate(ctx.db):
                    ctx.pause(store_hash, BIGCOMMERCE, f"BigCommerce refused the store's API credentials: {failure}")
        except Exception as failure:
            log.exception("Chore %s for store %s failed", chore.name, store_hash or "(all)")
            error = f"internal error: {type(failure).__name__}"
            due_at = ctx.clock() + min(interval, RETRY_SECONDS)
    if error:
        log.warning("Chore %s for store %s: %s; next run in %.0f s", chore.name, store_hash or "(all)", error, due_at - ctx.clock())
    ctx.write(
        f"the {chore.name} chore",
        lambda: chores.finish(
            ctx.db, name=chore.name, store_hash=store_hash, owner=ctx.owner, due_at=due_at, state=state, now=ctx.clock(), error=error
        ),
    )
    return True


# Each chore module appends its Chore to CHORES when imported (after CHORES exists).
from bridge.worker import alerts, hook_health, purge, reconcile, storefront_origins  # noqa: E402, F401
