"""Job ``deliver``: send the next due outbox row with its kind's sender and record the answer.

A paid report that has waited (a retry, a pause, a hold, a slow queue) is sent only
after one fresh read of the order: an order refunded or cancelled meanwhile is no
longer eligible, and its report is dropped instead of falsely crediting an affiliate.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from bridge.clients.alerts import AlertReply, post_alert
from bridge.clients.bigcommerce import BigCommerceError, BigCommerceReply
from bridge.clients.refersion import Reply
from bridge.core import rules
from bridge.core.retry import Action, Failure, Outcome, classify, parse_retry_after
from bridge.storage import outbox
from bridge.storage.db import immediate
from bridge.storage.queue import DEAD, PENDING
from bridge.storage.stores import REFERSION, Store
from bridge.worker import cancel
from bridge.worker.context import Context
from bridge.worker.evaluate import record

log = logging.getLogger(__name__)

NO_KEYS = "No Refersion key pair is set for this store: enter it on the settings page (or set refersion.public_key and secret_key)."
UNKNOWN_STORE_DELAY = 3600.0  # seconds: a row whose store has no credentials now waits for them, unsent


def send_paid(ctx: Context, store: Store, row: dict) -> Reply:
    return ctx.refersion(store).post_paid_order(row["payload"])


def send_alert(ctx: Context, store: Store | None, row: dict) -> Reply:
    url = ctx.settings.alerts.webhook_url
    if not url:  # alerts were turned off after this one was queued: it waits for the URL, then goes dead
        return AlertReply(None, body="alerts.webhook_url is not set", failure=Failure.CONNECTION)
    return post_alert(url, row["payload"])


# One sender per kind (coupon pushes join below, with their sender).
SENDERS: dict[str, Callable[[Context, Store, dict], Reply]] = {
    outbox.PAID: send_paid,
    outbox.CANCEL: cancel.send_cancel,
    outbox.ALERT: send_alert,
}
# Kinds that go to neither Refersion nor BigCommerce: sent whatever the store's credentials.
STORELESS = (outbox.ALERT,)
# Kinds sent to BigCommerce, not Refersion: they need no Refersion key pair, and a refusal pauses the store's BigCommerce side.
TO_BIGCOMMERCE = (outbox.COUPON,)


def handle_next(ctx: Context) -> bool:
    """Send the next due delivery; False when none is due.

    The answer is parked in ``ctx.unrecorded`` until the database takes it, so the loop
    can still record it if this handler is interrupted.
    """
    with immediate(ctx.db):
        row = outbox.deliveries.claim(ctx.db, owner=ctx.owner, now=ctx.clock(), lease=ctx.leases.lease_seconds)
    if row is None:
        return False
    handle_row(ctx, row)
    return True


def handle_row(ctx: Context, row: dict) -> None:
    """Send one claimed delivery with its kind's sender and record the answer."""
    what = f"{row['kind']} delivery {row['id']} (order {row['order_id']} of store {row['store_hash']})"
    store = ctx.stores.get(ctx.db, row["store_hash"])
    sender = SENDERS.get(row["kind"])
    needs_store = row["kind"] not in STORELESS
    if needs_store and (store is None or sender is None):
        reason = f"no credentials for store {row['store_hash']}" if store is None else f"no sender for kind {row['kind']}"
        with immediate(ctx.db):
            outbox.deliveries.settle(
                ctx.db, [row["id"]], owner=ctx.owner, state=PENDING, due_at=ctx.clock() + UNKNOWN_STORE_DELAY, last_error=reason
            )
        log.warning("Holding %s: %s", what, reason)
        return
    if row["kind"] in (outbox.PAID, outbox.CANCEL) and store.policy(ctx.policy).dry_run:
        # Dry run turned on after the report was queued: the point is to send nothing now.
        now = ctx.clock()
        with immediate(ctx.db):
            outbox.deliveries.settle(
                ctx.db, [row["id"]], owner=ctx.owner, state=outbox.DRY_RUN, outcome="dry_run", updated_at=now, done_at=now
            )
        log.info("Dry run: %s recorded, not sent", what)
        return
    if row["kind"] == outbox.CANCEL and cancel.settled_unsent(ctx, store, row):
        return
    if needs_store and store.refersion is None and row["kind"] not in TO_BIGCOMMERCE:
        reason = NO_KEYS
        with immediate(ctx.db):
            ctx.pause(row["store_hash"], REFERSION, reason)
            outbox.deliveries.settle(ctx.db, [row["id"]], owner=ctx.owner, state=PENDING, due_at=ctx.clock(), last_error=reason)
        return
    if row["kind"] == outbox.PAID and outbox.waited(row, ctx.clock()) and not _still_eligible(ctx, store, row):
        return
    try:
        reply = sender(ctx, store, row)
    except Exception as error:  # a bug on our side, not an answer from the remote
        log.exception("Error while sending %s", what)
        reply = Reply(None, body=f"internal error: {type(error).__name__}", failure=Failure.INTERNAL)
    ctx.unrecorded = (row, reply)
    ctx.write(f"the answer to {what}", lambda: record_reply(ctx, row, reply))
    ctx.unrecorded = None


def _still_eligible(ctx: Context, store: Store, row: dict) -> bool:
    """Re-read a waited report's order; settle the row (dropped, or failed) and return False when it is not sent now."""
    order_id = row["order_id"]
    try:
        order = ctx.bigcommerce(store).fetch_order(order_id)
    except BigCommerceError as error:
        outcome = classify(error.status, error.failure)
        with immediate(ctx.db):
            if outcome.action is Action.PAUSE:
                ctx.pause(row["store_hash"], "bigcommerce", f"BigCommerce refused the store's API credentials: {error}")
                settle = {"state": PENDING, "due_at": ctx.clock(), "last_error": str(error)}
            elif outcome.rate_limited:
                until = ctx.hold(row["store_hash"], "bigcommerce", error.retry_after, str(error))
                settle = {"state": PENDING, "due_at": until, "last_error": str(error)}
            else:
                settle = ctx.failure_columns(row["attempts"] + 1, outcome, error.retry_after, f"re-reading the order: {error}")
                if settle["state"] == PENDING:
                    # Refersion was not asked: a BigCommerce outage must not use up the report's attempts.
                    settle["attempts"] = row["attempts"]
            outbox.deliveries.settle(ctx.db, [row["id"]], owner=ctx.owner, updated_at=ctx.clock(), **settle)
        log.warning("Could not re-read order %s before sending its report: %s", order_id, error)
        return False
    decision = rules.decide(order, store.policy(ctx.policy), order_id=order_id)
    if decision.report:
        return True
    dropped = rules.no_longer_eligible(decision)
    now = ctx.clock()
    with immediate(ctx.db):
        if outbox.deliveries.settle(
            ctx.db, [row["id"]], owner=ctx.owner, state=outbox.SKIPPED, outcome="no_longer_eligible", updated_at=now, done_at=now
        ):
            record(ctx, row["store_hash"], order_id, dropped, order, force=True)
    log.info("Order %s of store %s: report dropped before sending (%s)", order_id, row["store_hash"], ", ".join(dropped.codes))
    return False


def record_reply(ctx: Context, row: dict, reply: Reply) -> None:
    """Write what the remote answered and what follows from it (call in a transaction)."""
    outcome = classify(reply.status, reply.failure)
    if row["kind"] in STORELESS and outcome.action is Action.PAUSE:
        outcome = Outcome(Action.DEAD)  # a refused alert URL is fixed in the config; the store's reports are not paused for it
    now = ctx.clock()
    seen = {"last_status": reply.status, "response": reply.body if reply.status else None, "updated_at": now}
    service = "bigcommerce" if row["kind"] in TO_BIGCOMMERCE else "refersion"
    if row["kind"] in STORELESS:
        what, done = f"{row['kind']} {row['id']} about store {row['store_hash']}", "Delivered %s to the alert receiver (HTTP %s)"
    elif service == "bigcommerce":
        what, done = f"{row['kind']} {row['id']} of store {row['store_hash']}", "Sent %s to BigCommerce (HTTP %s)"
    else:
        what, done = f"order {row['order_id']} of store {row['store_hash']} ({row['kind']})", "Reported %s to Refersion (HTTP %s)"
    if outcome.action is Action.DONE:
        settle = {"state": outbox.DONE, "done_at": now, "last_error": None}
        log.info(done, what, reply.status)
    elif outcome.action is Action.PAUSE and service == "bigcommerce":
        ctx.pause(row["store_hash"], service, f"BigCommerce refused the store's API credentials ({reply.summary}).")
        settle = {"state": PENDING, "due_at": now, "last_error": reply.summary}
    elif outcome.action is Action.PAUSE:
        ctx.pause(row["store_hash"], "refersion", f"Refersion refused the API keys ({reply.summary}).")
        settle = {"state": PENDING, "due_at": now, "last_error": reply.summary}
    elif outcome.rate_limited and service == "bigcommerce":
        # The store's shared quota is spent: hold its BigCommerce work, burning no attempt.
        until = ctx.hold(row["store_hash"], service, parse_retry_after(reply.retry_after, now), reply.summary)
        settle = {"state": PENDING, "due_at": until, "last_error": reply.summary}
    else:
        retry_after = parse_retry_after(reply.retry_after, now)
        settle = ctx.failure_columns(row["attempts"] + 1, outcome, retry_after, reply.summary)
        if settle["state"] == DEAD:
            log.error("Delivery of %s is dead after %d attempts: %s", what, settle["attempts"], reply.summary)
        else:
            log.warning("Delivery of %s failed (%s); retrying in %.0f s", what, reply.summary, settle["due_at"] - now)
    if not outbox.deliveries.settle(ctx.db, [row["id"]], owner=ctx.owner, **seen, **settle):
        log.warning("Lost the lease on delivery %s before recording the answer", row["id"])
    elif row["kind"] == outbox.PAID and settle["state"] == outbox.DONE:
        cancel.release_deferred(ctx, row)


# --- Coupon codes pushed to BigCommerce (Refersion's coupon triggers, ``bridge coupons push``) -------


def send_coupon(ctx: Context, store: Store, row: dict) -> Reply:
    """Create the row's code in BigCommerce from the ``coupons.*`` template; an existing code is done."""
    template = ctx.settings.coupons
    if template is None:  # coupon push was turned off after this was queued: it waits for the template, then goes dead
        return BigCommerceReply(None, body="coupon push is off (no [coupons] section)", failure=Failure.CONNECTION)
    code = json.loads(row["payload"])["code"]
    try:
        made = ctx.bigcommerce(store).create_coupon_code(code, template, now=ctx.clock())
    except BigCommerceError as error:
        return BigCommerceReply.of_error(error)
    answer = {"code": made.code, "id": made.id, "created": made.created, "api": template.api}
    return BigCommerceReply(made.status, body=json.dumps(answer, separators=(",", ":")))


SENDERS[outbox.COUPON] = send_coupon


def send_now(ctx: Context, key: str, *, due_only: bool = False) -> dict | None:
    """Claim the pending delivery with ``key`` and send it at once, as the worker would; returns the row
    as recorded, or None when it could not be claimed (not pending, not due yet with ``due_only``,
    or its store is held back)."""
    where = "key = :key AND due_at <= :due" if due_only else "key = :key"
    with immediate(ctx.db):
        claimed = outbox.deliveries.claim_pending(
            ctx.db, owner=ctx.owner, now=ctx.clock(), where=where, params={"key": key, "due": ctx.clock()}, lease=ctx.leases.lease_seconds
        )
    if not claimed:
        return None
    handle_row(ctx, claimed[0])
    return outbox.find(ctx.db, key)
