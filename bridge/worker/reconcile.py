"""Recovery of what webhooks miss: a walk through the orders BigCommerce lists as modified in a
window, used by the reconcile chore (every ``worker.reconcile_interval``) and ``bridge backfill``.

The walk decides nothing itself. Each listed order that needs a look gets an event in the
inbox (scope ``bridge/reconcile`` or ``bridge/backfill``), which the worker evaluates exactly
as a webhook's: the same rules, the same outbox key, one BigCommerce read for all of the
order's waiting events. An order needs no look when its report is settled already (reported,
dry run or dead), when a decision was made on this version of it or a newer one, or when an
event for it waits already. The event's key is the store, the order and its
``date_modified``: walking a window twice (a re-run, the overlap, a crash mid-walk) queues
nothing twice. Events are written a page at a time, so an interrupted walk leaves whole pages.

BigCommerce's quota is shared with every app on the store: before each page the walk looks at
the last answer's quota headers and, when no more than ``RESERVE`` requests are left, either
waits for the reset (backfill) or stops where it got to (the chore; the next pass goes on
from there), so it never sends a request the headers say will be refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.storage import chores as chore_rows
from bridge.storage import decisions, inbox, outbox, pauses, stores
from bridge.storage.db import immediate
from bridge.storage.queue import DEAD, PENDING, WORKING
from bridge.storage.stores import BIGCOMMERCE, Store
from bridge.worker import evaluate
from bridge.worker.chores import AGAIN, CHORES, Chore
from bridge.worker.context import Context

log = logging.getLogger(__name__)

NAME = "reconcile"
RESERVE = 5  # requests left for everything else (one order's evaluation takes up to 5)
OVERLAP_SECONDS = 300.0  # each pass starts this long before the last one ended: clocks and late writes
LAG_SECONDS = 60.0  # a pass ends this long before now: a webhook in flight is given the time to arrive
PAGES_PER_RUN = 10  # pages of up to 250 orders one run walks before the worker's other work gets its turn
SETTLED = (outbox.DONE, outbox.DRY_RUN, DEAD)  # a paid report in these states is never looked at again

# Why a listed order was not queued.
ALREADY_REPORTED, ALREADY_DECIDED, ALREADY_QUEUED = "already_reported", "already_decided", "already_queued"


@dataclass
class Walk:
    """What a walk did so far."""

    since: float
    until: float
    pages: int = 0
    orders: int = 0
    queued: list[int] = field(default_factory=list)  # ids of the events written
    not_queued: dict[str, int] = field(default_factory=dict)  # why not, with how many
    listed_until: float | None = None  # every order modified before this was looked at
    complete: bool = False  # False: stopped early (quota, or ``budget_spent``), or still going
    budget_spent: bool = False  # stopped after its page budget: to go on at once

    @property
    def skipped(self) -> int:
        return sum(self.not_queued.values())

    @property
    def progress(self) -> float:
        """The share of the window walked (0 to 1), from the dates of the orders seen."""
        if self.complete:
            return 1.0
        if self.listed_until is None or self.until <= self.since:
            return 0.0
        return min(1.0, max(0.0, (self.listed_until - self.since) / (self.until - self.since)))


def walk(
    ctx: Context,
    store: Store,
    since: float,
    until: float,
    *,
    scope: str,
    on_page: Callable[[Walk, list[int]], None] | None = None,
    wait: Callable[[float], bool] | None = None,
    max_pages: int | None = None,
) -> Walk:
    """Queue an evaluation of each order of ``store`` modified from ``since`` to ``until`` that needs one.

    :param scope: ``inbox.RECONCILE`` or ``inbox.BACKFILL``: who found the orders.
    :param on_page: called after each page is queued, with the walk and the page's new event ids.
    :param wait: called with the seconds until the quota resets when it is nearly spent; True once
        it has waited (the walk goes on), False to stop here (``complete`` stays False).
        Without it the walk stops.
    :param max_pages: stop after this many pages (``budget_spent``), to go on later from ``listed_until``.
    :raise BigCommerceError: BigCommerce refused or failed a page; the pages before it are queued.
    """
    client = ctx.bigcommerce(store)
    done = Walk(since=since, until=until)
    pages = client.orders_modified(since, until)
    while True:
        if max_pages is not None and done.pages >= max_pages:
            done.budget_spent = True
            return done
        pause = client.rate_limit.wait_before_next(RESERVE) if client.rate_limit else 0.0
        if pause > 0 and not (wait and wait(pause)):
            log.info("Store %s: the API quota is nearly spent; the walk stops at %s", store.store_hash, done.listed_until)
            return done
        page = next(pages, None)
        if page is None:
            done.complete = True
            return done
        with immediate(ctx.db):
            queued = [event_id for order in page.orders if (event_id := _queue(ctx, store.store_hash, order, scope, done))]
        done.pages += 1
        done.orders += len(page.orders)
        done.queued.extend(queued)
        if page.listed_until is not None:
            done.listed_until = page.listed_until
        if on_page:
            on_page(done, queued)


def _queue(ctx: Context, store_hash: str, order: dict, scope: str, done: Walk) -> int | None:
    """Queue one listed order unless it needs no look; the new event's id (call in a transaction)."""
    order_id = order["id"]
    why = _no_look_needed(ctx, store_hash, order)
    if why is None:
        event_id = inbox.record_recovered(
            ctx.db, store_hash=store_hash, order_id=order_id, date_modified=order["date_modified"], scope=scope, now=ctx.clock()
        )
        if event_id is not None:
            return event_id
        why = ALREADY_QUEUED  # this version was queued before, and its evaluation is not on record
    done.not_queued[why] = done.not_queued.get(why, 0) + 1
    return None


def _no_look_needed(ctx: Context, store_hash: str, order: dict) -> str | None:
    report = outbox.find(ctx.db, outbox.paid_key(store_hash, order["id"]))
    if report is not None and report["state"] in SETTLED:
        return ALREADY_REPORTED
    current = decisions.current_decision(ctx.db, store_hash=store_hash, order_id=order["id"])
    modified = order["modified_at"]
    if current and current["order_modified"] is not None and modified is not None and current["order_modified"] >= modified:
        return ALREADY_DECIDED
    if inbox.open_order_events(ctx.db, store_hash=store_hash, order_id=order["id"]):
        return ALREADY_QUEUED
    return None


# --- Evaluating what a walk queued, at once (``bridge backfill``) ---------------------------

# How the evaluation of a queued order came out (the outcome written on its event).
TO_REPORT, NOT_REPORTED, NOT_YET, SETTLED_BEFORE, LEFT_TO_WORKER = "to_report", "not_reported", "not_yet", "settled_before", "left"
_OUTCOMES = {"report": TO_REPORT, "skip": NOT_REPORTED, "no_longer_eligible": NOT_REPORTED, "wait": NOT_YET}
LEAVE_AFTER_SECONDS = 60.0  # an evaluation BigCommerce failed and that is due later than this is left to the worker


def evaluate_now(ctx: Context, store: Store, event_ids: list[int], *, sleep: Callable[[float], None]) -> dict[str, int]:
    """Evaluate the orders of ``event_ids`` in this process, as the worker would; returns how they came out.

    Runs the worker's evaluation (``evaluate.handle_next``: it may take up other due events
    too, in due order, which is the worker's work done early). Before each evaluation it waits
    (``sleep``) while the store's quota is nearly spent or the store is held; an evaluation that
    failed and is retried later than LEAVE_AFTER_SECONDS from now is left to the worker. Events
    another process holds are waited for.
    """
    client = ctx.bigcommerce(store)
    tally: dict[str, int] = {}
    waiting = set(event_ids)
    while waiting:
        marks = ", ".join("?" for _ in waiting)
        for row in ctx.db.query(f"SELECT id, state, outcome, attempts, due_at FROM events WHERE id IN ({marks})", list(waiting)):
            if row["state"] in (PENDING, WORKING) and not (row["attempts"] and row["due_at"] > ctx.clock() + LEAVE_AFTER_SECONDS):
                continue
            # Dead, or retried later: left to the worker.
            how = _OUTCOMES.get(row["outcome"], SETTLED_BEFORE) if row["state"] == inbox.DONE else LEFT_TO_WORKER
            tally[how] = tally.get(how, 0) + 1
            waiting.discard(row["id"])
        if not waiting:
            break
        if pauses_of(ctx, store.store_hash) or stores.is_uninstalled(ctx.db, store.store_hash):
            tally[LEFT_TO_WORKER] = tally.get(LEFT_TO_WORKER, 0) + len(waiting)
            break
        pause = client.rate_limit.wait_before_next(RESERVE) if client.rate_limit else 0.0
        hold = pauses.find_hold(ctx.db, store_hash=store.store_hash, service=BIGCOMMERCE)
        pause = max(pause, (hold["until"] - ctx.clock()) if hold else 0.0)
        if pause > 0:
            sleep(pause)
        elif not evaluate.handle_next(ctx):
            sleep(ctx.settings.worker.poll_interval)  # another process has them, or they are not due yet
    return tally


def pauses_of(ctx: Context, store_hash: str) -> list[dict]:
    """The store's BigCommerce pause (its token refused), if any: nothing of it is evaluated until then."""
    return [row for row in pauses.pauses(ctx.db) if row["store_hash"] == store_hash and row["service"] == BIGCOMMERCE]


# --- The chore ----------------------------------------------------------------------------


def window(state: dict, *, now: float, first_since: float) -> tuple[float, float]:
    """The window a pass walks, to now less the lag, from the earliest of: where a pass stopped
    early (``resume``), else the end of the last completed pass less the overlap (``until``), else
    ``first_since`` less the overlap on the very first pass; and an outage's start someone asked
    to cover (``since``)."""
    starts = [state["resume"]] if "resume" in state else [state.get("until", first_since) - OVERLAP_SECONDS]
    if isinstance(state.get("since"), (int, float)):
        starts.append(state["since"])
    return min(starts), now - LAG_SECONDS


def run(ctx: Context, store: Store, state: dict) -> dict:
    """One reconcile pass over one store; returns the chore's new state.

    State: ``until`` where the last completed pass ended; ``resume`` where a pass stopped early
    for the quota (the next one goes on from there, without the overlap); ``since`` an older
    instant someone asked a pass to cover (``storage.chores.bring_forward``), cleared once walked.
    """
    interval = ctx.settings.worker.reconcile_interval
    row = chore_rows.find(ctx.db, name=NAME, store_hash=store.store_hash)
    # The row is due one interval after it was first scheduled: the very first pass starts there.
    first_since = (row["due_at"] if row else ctx.clock()) - interval
    since, until = window(state, now=ctx.clock(), first_since=first_since)
    if pauses.held_back(ctx.db, store_hash=store.store_hash, service=BIGCOMMERCE, now=ctx.clock()):
        # Token refused, or quota held (perhaps by another process): nothing is read now, and the
        # next pass starts where this one would have.
        return {**state, "resume": since}
    if until <= since:
        return state
    done = walk(ctx, store, since, until, scope=inbox.RECONCILE, max_pages=PAGES_PER_RUN)
    log.info(
        "Reconcile of store %s: %d page(s), %d order(s), %d queued, %d needed no look%s",
        store.store_hash,
        done.pages,
        done.orders,
        len(done.queued),
        done.skipped,
        "" if done.complete else ("; more next round" if done.budget_spent else "; stopped early for the API quota"),
    )
    new_state = {key: value for key, value in state.items() if key not in ("since", "resume")}
    if done.complete:
        new_state["until"] = until
    elif done.budget_spent:
        # A long window (after an outage) goes on at once, a few pages at a time: the worker's
        # evaluations and deliveries for every store run in between.
        new_state["resume"] = max(since, done.listed_until or since)
        new_state[AGAIN] = True
    else:
        new_state["resume"] = max(since, done.listed_until or since)
        # The quota is nearly spent: the store's other reads wait for the reset too.
        pause = ctx.bigcommerce(store).rate_limit.wait_before_next(RESERVE)
        with immediate(ctx.db):
            ctx.hold(store.store_hash, BIGCOMMERCE, pause, "the API quota is nearly spent (reconcile)")
    asked = ((chore_rows.find(ctx.db, name=NAME, store_hash=store.store_hash) or {}).get("state") or {}).get("since")
    if isinstance(asked, (int, float)) and asked != state.get("since") and asked < since:
        new_state["since"] = asked  # an outage reported while this pass ran, older than its window
    return new_state


def interval(settings) -> float | None:
    return settings.worker.reconcile_interval or None


CHORE = Chore(name=NAME, per_store=True, interval=interval, run=run)
CHORES.append(CHORE)
