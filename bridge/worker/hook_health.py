"""Chore ``hook_health``: check each store's BigCommerce webhooks, repair them, recover what they missed.

BigCommerce deactivates a hook after about 48 hours of failed deliveries and never re-sends
what it gave up on. Every HOOK_CHECK_SECONDS the store's hooks are compared with what the
bridge needs and the result is recorded (``/healthz``, ``/api/status``, the status page and
the alerts read it). With ``server.public_url`` set, a missing, deactivated or misdirected hook
is re-created or repaired at once, and a reconcile pass is brought forward to cover the time it
was down; without it the problem is only reported.
"""

from __future__ import annotations

import logging

from bridge.core.hooks import WRONG_DESTINATION, compare, destination_for, destination_problem, wanted_scopes
from bridge.storage import chores as chore_rows
from bridge.storage import hook_checks, pauses
from bridge.storage.stores import APP, BIGCOMMERCE, Store
from bridge.worker.chores import CHORES, Chore
from bridge.worker.context import Context

log = logging.getLogger(__name__)

# One request per store (two pages at most) every 15 minutes is ~0.1 % of a Standard plan's
# shared quota, while a deactivated hook costs the merchant live reports until it is found:
# the same period as the default reconcile interval, so a missed order waits no longer.
HOOK_CHECK_SECONDS = 15 * 60
# When no check ever saw the hooks healthy and no webhook ever arrived: look back this far
# (BigCommerce retries a failed delivery for about 48 hours before it deactivates a hook).
UNKNOWN_OUTAGE_SECONDS = 3 * 24 * 3600
RECONCILE = "reconcile"  # the chore that walks the orders modified since a time


def interval(settings) -> float:
    return HOOK_CHECK_SECONDS


def down_since(ctx: Context, store_hash: str, previous: dict | None, now: float) -> float:
    """Since when the store's hooks are taken to be down, on the first check that finds them wrong.

    BigCommerce does not say when it deactivated a hook, and a hook still "active" may have
    been failing for up to 48 hours before: the earliest of the last check that saw the hooks
    healthy and the last webhook received is the latest time nothing can have been missed before.
    """
    if previous is not None and previous["down_since"] is not None:
        return previous["down_since"]
    known = [t for t in ((previous or {}).get("healthy_at"), hook_checks.last_webhook_at(ctx.db, store_hash)) if t is not None]
    return min(known) if known else now - UNKNOWN_OUTAGE_SECONDS


def run(ctx: Context, store: Store, state: dict) -> dict:
    if pauses.held_back(ctx.db, store_hash=store.store_hash, service=BIGCOMMERCE, now=ctx.clock()):
        return state
    public_url = ctx.settings.server.public_url
    secret = store.hook_token(ctx.settings.webhooks.secret)  # an app store's hooks send their own token
    destination = destination_for(public_url) if public_url else ""
    scopes = wanted_scopes(app=store.mode == APP)
    client = ctx.bigcommerce(store)
    now = ctx.clock()
    problems = {}
    for found in compare(scopes, destination, secret, client.list_hooks()):
        # Without public_url the right destination is unknown: only what is missing or off counts.
        wrong = [problem for problem in found.problems if public_url or problem != WRONG_DESTINATION]
        if wrong:
            problems[found.scope] = wrong
    previous = hook_checks.find(ctx.db, store.store_hash)
    since = down_since(ctx, store.store_hash, previous, now) if problems else None
    blocker = None
    if problems:
        blocker = destination_problem(destination) if public_url else "server.public_url is not set, so the bridge cannot repair them"
    record = dict(store_hash=store.store_hash, checked_at=now, wanted=len(scopes), problems=problems, down_since=since, note=blocker)
    ctx.write(f"the hook check of store {store.store_hash}", lambda: hook_checks.record(ctx.db, **record))
    if not problems:
        return state
    log.warning("Webhooks of store %s: %s", store.store_hash, hook_checks.describe(problems))
    if blocker:
        return state
    results = client.register_hooks(scopes, destination, secret)
    failed = {result.scope: problems[result.scope] for result in results if not result.ok and result.scope in problems}
    repaired = {scope: found for scope, found in problems.items() if scope not in failed}
    note = "; ".join(f"{result.scope}: {result.error}" for result in results if not result.ok) or None
    repaired_at = ctx.clock()

    def write() -> None:
        hook_checks.record(ctx.db, **{**record, "checked_at": repaired_at, "problems": failed, "note": note})
        if repaired:
            hook_checks.record_repair(ctx.db, store_hash=store.store_hash, at=repaired_at, repaired=repaired, since=since)
            pending = chore_rows.find(ctx.db, name=RECONCILE, store_hash=store.store_hash)
            earlier = (pending or {}).get("state", {}).get("since")
            chore_rows.bring_forward(
                ctx.db,
                name=RECONCILE,
                store_hash=store.store_hash,
                due_at=repaired_at,
                state={"since": min(since, earlier) if isinstance(earlier, (int, float)) else since},
            )

    ctx.write(f"the hook repair of store {store.store_hash}", write)
    if repaired:
        log.info("Webhooks of store %s repaired (%s); reconcile brought forward from %.0f", store.store_hash, ", ".join(repaired), since)
    if failed:
        log.warning("Webhooks of store %s could not all be repaired: %s", store.store_hash, note)
    return state


CHORE = Chore(name="hook_health", per_store=True, interval=interval, run=run)
CHORES.append(CHORE)
