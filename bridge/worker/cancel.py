"""Job kind ``cancel``: refunds and cancellations of reported orders reach Refersion (SPEC 4 step 5).

The evaluate job claims an order's events together; those that signal a refund or a
cancellation (``store/order/refund/created``, a ``statusUpdated`` to 4, 5 or 14) of an
order whose paid report was delivered are handed here. The order's refunds are read
once; each refund not seen before becomes one ``cancel`` delivery keyed by its refund
id, so a refund webhook and its status change yield one cancellation, whichever comes
first. A full refund or a cancellation (status 4 or 5, checked on the order itself)
adds one more for whatever no refund took back. The deliver job sends them, never
before the order's paid report is done. While that report is dead the events are kept
deferred: when the operator replays it and it is delivered, they are followed then. Any
other event of a reported order costs no BigCommerce call.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal

from bridge.clients.bigcommerce import BigCommerceError
from bridge.clients.refersion import Reply, dumps
from bridge.core import cancellations
from bridge.core.hooks import REFUND_CREATED
from bridge.core.retry import Failure
from bridge.storage import inbox, outbox
from bridge.storage.db import immediate
from bridge.storage.queue import DEAD, PENDING, WORKING
from bridge.storage.stores import Store
from bridge.worker.context import Context

log = logging.getLogger(__name__)

STATUS_UPDATED = "store/order/statusUpdated"
REFUNDED, CANCELLED, PARTIALLY_REFUNDED = 4, 5, 14
SIGNALLING_STATUSES = (REFUNDED, CANCELLED, PARTIALLY_REFUNDED)
WHOLE_ORDER_WORDS = {REFUNDED: "refunded in full", CANCELLED: "cancelled"}

# Event outcomes.
AWAITING_REPORT = "awaiting_report"  # kept pending until the order's paid report is settled
QUEUED, DRY_RUN, NOTHING, HANDLED = "cancellation_queued", "cancellation_dry_run", "nothing_to_cancel", "already_handled"
OFF, NOT_REPORTED = "cancellations_off", "not_reported"
AWAITING_REPLAY = "awaiting_replay"  # kept deferred while the order's paid report is dead; released when it is delivered

AWAITING_REPORT_NOTE = "A refund or cancellation of an order whose report is not delivered yet: handled once it is."
OFF_NOTE = "Refunds and cancellations are not sent to Refersion: rules.sync_cancellations is off."
NOT_REPORTED_NOTE = "A refund or cancellation of an order that was never reported to Refersion ({why}): recorded, nothing to cancel there."
AWAITING_REPLAY_NOTE = (
    "A refund or cancellation of an order whose report Refersion refused: it waits for the report."
    " Replay the report (the order's retry button, or bridge replay) to send the cancellation once it is delivered."
)
WAITING_FOR_REPORT = "Waiting for the order's paid report to be delivered first."


def _data(row: dict) -> dict:
    try:
        body = json.loads(row.get("body") or "")
    except ValueError:
        return {}
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


def signalled_status(row: dict) -> int | None:
    """The new status id a ``statusUpdated`` event names, else None."""
    if row["scope"] != STATUS_UPDATED:
        return None
    status = _data(row).get("status")
    new = status.get("new_status_id") if isinstance(status, dict) else None
    return new if isinstance(new, int) and not isinstance(new, bool) else None


def refund_id_of(row: dict) -> int | None:
    """The refund id a ``store/order/refund/created`` event names, else None."""
    refund = _data(row).get("refund") if row["scope"] == REFUND_CREATED else None
    found = refund.get("refund_id") if isinstance(refund, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def triggers(claimed: list[dict]) -> list[dict]:
    """The claimed events that signal a refund or a cancellation of the order."""
    return [
        row
        for row in claimed
        if row["scope"] == REFUND_CREATED or signalled_status(row) in SIGNALLING_STATUSES or row.get("outcome") == AWAITING_REPORT
    ]


def keep_until_reported(ctx: Context, ids: list[int], paid: dict) -> None:
    """Put these events back, due once the order's paid report is settled (call in a transaction)."""
    after = max(ctx.clock(), paid["due_at"], paid["lease_until"] or 0) + 1
    inbox.events.settle(
        ctx.db, ids, owner=ctx.owner, state=PENDING, due_at=after, last_error=None, outcome=AWAITING_REPORT, note=AWAITING_REPORT_NOTE
    )


def settle_events(ctx: Context, ids: list[int], outcome: str, note: str) -> None:
    """Settle trigger events as handled (call in a transaction)."""
    settled = inbox.events.settle(
        ctx.db, ids, owner=ctx.owner, state=inbox.DONE, outcome=outcome, note=note, last_error=None, finished_at=ctx.clock()
    )
    if settled < len(ids):
        log.warning("Lost the lease on %d of events %s; another worker has them", len(ids) - settled, ids)


def follow(ctx: Context, store: Store, order_id: int, events: list[dict], paid: dict) -> None:
    """Turn the refund and cancellation events of an order whose paid report is settled into cancellations.

    :raise BigCommerceError: the refunds or the order could not be read (the evaluate job retries the events).
    """
    store_hash = store.store_hash
    policy = store.policy(ctx.policy)
    ids = [row["id"] for row in events]
    if not policy.sync_cancellations:
        with immediate(ctx.db):
            settle_events(ctx, ids, OFF, OFF_NOTE)
        return
    if paid["state"] == DEAD:
        # The operator may replay the report: once it is delivered these events follow it (release_deferred).
        with immediate(ctx.db):
            inbox.events.settle(
                ctx.db, ids, owner=ctx.owner, state=inbox.DEFERRED, outcome=AWAITING_REPLAY, note=AWAITING_REPLAY_NOTE, last_error=None
            )
        return
    if paid["state"] not in (outbox.DONE, outbox.DRY_RUN):
        with immediate(ctx.db):
            settle_events(ctx, ids, NOT_REPORTED, NOT_REPORTED_NOTE.format(why="its report was dropped"))
        return
    client = ctx.bigcommerce(store)
    refunds = client.fetch_order_refunds(order_id)
    named = {refund_id for row in events if (refund_id := refund_id_of(row)) is not None}
    missing = sorted(named - {refund["id"] for refund in refunds})
    if missing:
        # BigCommerce announced a refund its refunds list does not show yet: read again later.
        raise BigCommerceError(
            f"BigCommerce does not list refund {', '.join(map(str, missing))} of order {order_id} yet", failure=Failure.BAD_RESPONSE
        )
    whole = None
    if any(signalled_status(row) in WHOLE_ORDER_WORDS for row in events):
        order = client.fetch_order(order_id)  # the event may be stale: only the order's current status cancels it all
        if order is not None and order["status_id"] in WHOLE_ORDER_WORDS:
            whole = order["status_id"]
    dry_run = policy.dry_run or paid["state"] == outbox.DRY_RUN
    with immediate(ctx.db):
        outcome, note = _queue(ctx, store_hash, order_id, paid, refunds, whole, dry_run)
        settle_events(ctx, ids, outcome, note)
    log.info("Order %s of store %s: %s (%s)", order_id, store_hash, outcome, note)


def _queue(
    ctx: Context, store_hash: str, order_id: int, paid: dict, refunds: list[dict], whole: int | None, dry_run: bool
) -> tuple[str, str]:
    """Queue a cancellation per refund not seen before, and one for the rest when the order is refunded in full
    or cancelled (call in a transaction: what earlier cancellations took is read and added to at once)."""
    earlier = outbox.of_order(ctx.db, store_hash=store_hash, order_id=order_id, kind=outbox.CANCEL)
    known = {row["key"] for row in earlier}
    lines = cancellations.reported((_loads(paid["meta"]) or {}).get("items"))
    taken = cancellations.taken((_loads(row["meta"]) or {}).get("lines") for row in earlier)
    plans = []
    for refund in refunds:
        key = outbox.cancel_key(store_hash, order_id, refund["id"])
        if key not in known:
            plan = cancellations.for_refund(refund["id"], refund["items"], lines, taken)
            plans.append((key, refund["id"], plan))
            taken = plan.taken
    if whole is not None:
        key = outbox.cancel_key(store_hash, order_id, cancellations.WHOLE_ORDER)
        if key not in known:
            plan = cancellations.for_whole_order(WHOLE_ORDER_WORDS[whole], lines, taken)
            plans.append((key, cancellations.WHOLE_ORDER, plan))
    if not plans:
        return HANDLED, "Every refund of the order was already handled: see its cancellations."
    now = ctx.clock()
    for key, refund_id, plan in plans:
        payload, meta = dumps(plan.body(order_id)), dumps(plan.meta(refund_id))
        common = {"key": key, "kind": outbox.CANCEL, "store_hash": store_hash, "order_id": order_id, "payload": payload, "meta": meta}
        if plan.sends:
            outbox.enqueue(ctx.db, **common, now=now, dry_run=dry_run)
        else:
            outbox.record_unsent(ctx.db, **common, outcome=plan.code, note=plan.text, now=now)
    note = " ".join(plan.text for _, _, plan in plans)
    if not any(plan.sends for _, _, plan in plans):
        return NOTHING, note
    if dry_run:
        return DRY_RUN, f"Dry run: {note} Nothing was sent."
    return QUEUED, note


def _loads(text: str | None) -> dict | None:
    try:
        found = json.loads(text, parse_float=Decimal) if text else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def release_deferred(ctx: Context, row: dict) -> None:
    """A paid report was delivered: its order's refund events kept while it was dead are followed now (call in a transaction)."""
    released = inbox.release_deferred(
        ctx.db, store_hash=row["store_hash"], order_id=row["order_id"], now=ctx.clock(), outcome=AWAITING_REPORT, note=AWAITING_REPORT_NOTE
    )
    if released:
        log.info("Order %s of store %s: its report was delivered, %d refund events follow it", row["order_id"], row["store_hash"], released)


# --- The deliver side ---------------------------------------------------------------------


def send_cancel(ctx: Context, store: Store, row: dict) -> Reply:
    return ctx.refersion(store).cancel_conversion(row["payload"])


def settled_unsent(ctx: Context, store: Store, row: dict) -> bool:
    """Before a cancellation is sent: True when it was settled (or put back) here instead.

    Never sent before the order's paid report is done; not sent at all when that report
    went dead or was dropped, was a dry run, or cancellations were turned off since.
    """
    paid = outbox.find(ctx.db, outbox.paid_key(row["store_hash"], row["order_id"]))
    state = paid["state"] if paid else None
    if store.policy(ctx.policy).sync_cancellations and state == outbox.DONE:
        return False
    now = ctx.clock()
    what = f"cancellation {row['key']}"
    if not store.policy(ctx.policy).sync_cancellations:
        columns = {"state": outbox.SKIPPED, "outcome": OFF, "note": OFF_NOTE, "updated_at": now, "done_at": now}
    elif state in (PENDING, WORKING):
        due = max(now, paid["due_at"], paid["lease_until"] or 0) + 1
        columns = {"state": PENDING, "due_at": due, "last_error": WAITING_FOR_REPORT, "updated_at": now}
    elif state == outbox.DRY_RUN:
        columns = {"state": outbox.DRY_RUN, "outcome": "dry_run", "updated_at": now, "done_at": now}
    else:
        why = {DEAD: "Refersion refused its report", outbox.SKIPPED: "its report was dropped"}.get(state, "it has no report")
        note = NOT_REPORTED_NOTE.format(why=why)
        columns = {"state": outbox.SKIPPED, "outcome": NOT_REPORTED, "note": note, "updated_at": now, "done_at": now}
    with immediate(ctx.db):
        outbox.deliveries.settle(ctx.db, [row["id"]], owner=ctx.owner, **columns)
    log.info("Not sending %s now: %s", what, columns.get("note") or columns.get("last_error") or columns["state"])
    return True
