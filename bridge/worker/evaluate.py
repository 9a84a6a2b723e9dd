"""Job ``evaluate``: turn an order's webhook events into a decision, and a report when it is eligible.

The order's *current* state is read from BigCommerce (events arrive late and out of
order); the rules decide; an eligible order's report goes into the outbox under its
one key. An order whose report waits unsent is looked at again: if it is no longer
eligible (refunded, cancelled), the report is dropped before anyone sends it.
"""

from __future__ import annotations

import logging

from bridge.clients.bigcommerce import BigCommerceError
from bridge.clients.refersion import dumps
from bridge.core import rules
from bridge.core.hooks import REFUND_CREATED
from bridge.core.payload import (
    STOREFRONT_SOURCE,
    CartId,
    build_paid_order,
    check_storefront_claims,
    choose_cart_id,
    reported_lines,
    transaction_currency,
)
from bridge.core.retry import Action, Failure, Outcome, classify
from bridge.storage import carts, decisions, inbox, outbox, storefront, stores
from bridge.storage.db import immediate
from bridge.storage.decisions import OrderFacts
from bridge.storage.queue import DEAD, PENDING
from bridge.storage.stores import Store
from bridge.worker import cancel
from bridge.worker.context import Context

log = logging.getLogger(__name__)

SUPERSEDED = "Decided on an older read of the order than a decision already made; the newer one stands."
UNINSTALLED = "Held: the app was uninstalled from the store; taken up again if it is installed again."

EARLIER = {
    outbox.DONE: rules.Earlier.REPORTED,
    outbox.DRY_RUN: rules.Earlier.DRY_RUN,
    DEAD: rules.Earlier.FAILED,
}


def handle_next(ctx: Context) -> bool:
    """Evaluate the next due order (all its waiting events at once); False when none is due."""
    claimed = inbox.claim_order_events(ctx.db, owner=ctx.owner, now=ctx.clock(), lease=ctx.leases.lease_seconds)
    if not claimed:
        return False
    handle_claimed(ctx, claimed)
    return True


def handle_claimed(ctx: Context, claimed: list[dict]) -> None:
    """Evaluate the order of events this worker has claimed, and settle them."""
    store_hash, order_id = claimed[0]["store_hash"], claimed[0]["order_id"]
    ids = [row["id"] for row in claimed]
    store = ctx.stores.get(ctx.db, store_hash)
    if store is None and stores.is_uninstalled(ctx.db, store_hash):
        # Uninstalled while these were being claimed: held with the store's other work, not dropped.
        with immediate(ctx.db):
            inbox.events.settle(ctx.db, ids, owner=ctx.owner, state=PENDING, due_at=ctx.clock(), last_error=UNINSTALLED)
        log.info("Holding %d event(s) for order %s: the app was uninstalled from store %s", len(ids), order_id, store_hash)
        return
    if store is None:
        note = f"The bridge has no credentials for store {store_hash}."
        with immediate(ctx.db):
            _settle(ctx, ids, state=inbox.IGNORED, outcome="unknown_store", note=note)
        log.info("Ignored %d event(s) for order %s: %s", len(ids), order_id, note)
        return
    try:
        _evaluate(ctx, store, order_id, claimed)
    except BigCommerceError as error:
        _failed(ctx, claimed, str(error), classify(error.status, error.failure), error.retry_after)
    except Exception as error:
        log.exception("Error while evaluating order %s of store %s", order_id, store_hash)
        _failed(ctx, claimed, f"internal error: {type(error).__name__}", classify(None, Failure.INTERNAL), None)


def facts_of(order: dict | None) -> OrderFacts:
    if order is None:
        return OrderFacts()
    return OrderFacts(
        status_id=order["status_id"],
        payment_status=order["payment_status"],
        total=str(order["total_inc_tax"]),
        currency=transaction_currency(order),
        modified_at=order.get("modified_at"),
    )


def record(
    ctx: Context,
    store_hash: str,
    order_id: int,
    decision: rules.Decision,
    order: dict | None,
    cart: CartId | None = None,
    force: bool = False,
) -> bool:
    """Write a decision (inside a transaction); True when it is the one in force now."""
    return decisions.record_decision(
        ctx.db,
        store_hash=store_hash,
        order_id=order_id,
        verdict=decision.verdict.value,
        reasons=[(reason.code, reason.text) for reason in decision.reasons],
        facts=facts_of(order),
        cart_id_source=cart.source if cart else None,
        note=cart.note if cart else None,
        now=ctx.clock(),
        force=force,
    )


def _evaluate(ctx: Context, store: Store, order_id: int, claimed: list[dict]) -> None:
    store_hash = store.store_hash
    policy = store.policy(ctx.policy)
    ids = [row["id"] for row in claimed]
    key = outbox.paid_key(store_hash, order_id)
    earlier = outbox.find(ctx.db, key)
    if earlier is not None and earlier["state"] in EARLIER:
        # Reported (or settled) already: no BigCommerce call needed to know that.
        decision = rules.decide(None, policy, order_id=order_id, earlier=EARLIER[earlier["state"]])
        # Only a refund or a cancellation of the order costs BigCommerce calls (worker/cancel.py).
        refunds = cancel.triggers(claimed)
        others = [event_id for event_id in ids if event_id not in {row["id"] for row in refunds}]
        if others:
            with immediate(ctx.db):
                _settle(ctx, others, state=inbox.DONE, outcome=decision.codes[0], note=decision.summary)
        if refunds:
            cancel.follow(ctx, store, order_id, refunds, earlier)
        _log(store_hash, order_id, decision)
        return

    client = ctx.bigcommerce(store)
    order = client.fetch_order(order_id)
    decision = rules.decide(order, policy, order_id=order_id)

    if earlier is not None and outbox.is_unsent(earlier):
        _recheck_queued(ctx, store_hash, order_id, claimed, earlier, order, decision, policy)
        return

    cart = payload = meta = None
    claims: list[str] = []
    if decision.report:
        lines = client.fetch_order_products(order_id, items_total=order.get("items_total"))
        decision = rules.decide_lines(lines, policy) or decision
    if decision.report:
        coupons = client.fetch_order_coupons(order_id)
        known = {**carts.known_cart_ids(ctx.db, store_hash=store_hash, order_id=order_id), "order": order["cart_id"]}
        # The storefront's posts count only when one names one of the order's own carts.
        claims = [row["cart_id"] for row in storefront.find_claims(ctx.db, store_hash=store_hash, order_id=order_id)]
        check = check_storefront_claims(claims, known)
        cart = choose_cart_id(
            {**known, STOREFRONT_SOURCE: check.value}, key=ctx.settings.webhooks.secret.encode(), store_hash=store_hash, order_id=order_id
        )
        gift = policy.report_gift_certificates
        body = build_paid_order(
            order, lines, coupons, cart_id=cart.value, excluded_coupons=policy.excluded_coupons, report_gift_certificates=gift
        )
        payload, meta = dumps(body), dumps({"items": reported_lines(lines, report_gift_certificates=gift)})

    note = decision.summary
    if payload is not None and policy.dry_run:
        note = f"Dry run: {note} Nothing was sent."
    refunds = [row["id"] for row in cancel.triggers(claimed)] if payload is not None else []
    if payload is not None and policy.sync_cancellations and not refunds and order["status_id"] == cancel.PARTIALLY_REFUNDED:
        refunds = ids[:1]  # reported as placed though already refunded in part: its refunds follow once it is delivered
    unreported = [row["id"] for row in claimed if row["scope"] == REFUND_CREATED] if payload is None else []
    with immediate(ctx.db):
        # The decision first: only one made on the newest read of the order may queue a report.
        if not record(ctx, store_hash, order_id, decision, order, cart):
            _settle(ctx, ids, state=inbox.DONE, outcome="superseded", note=SUPERSEDED)
            log.info("Order %s of store %s: %s on an older read, superseded", order_id, store_hash, decision.verdict.value)
            return
        if claims:
            used = cart.value if cart.source == STOREFRONT_SOURCE else None
            storefront.mark_checked(ctx.db, store_hash=store_hash, order_id=order_id, used=used, now=ctx.clock())
            if used is None:
                log.warning("Order %s of store %s: %s", order_id, store_hash, check.note)
        if payload is not None:
            now, dry_run = ctx.clock(), policy.dry_run
            queued = outbox.enqueue(
                ctx.db,
                key=key,
                kind=outbox.PAID,
                store_hash=store_hash,
                order_id=order_id,
                payload=payload,
                meta=meta,
                now=now,
                dry_run=dry_run,
            )
            if not queued:
                outbox.rearm_skipped(ctx.db, key=key, payload=payload, meta=meta, now=now, dry_run=dry_run)
            if refunds:
                cancel.keep_until_reported(ctx, refunds, outbox.find(ctx.db, key))
        if unreported:
            why = cancel.NOT_REPORTED_NOTE.format(why=decision.summary.rstrip("."))
            _settle(ctx, unreported, state=inbox.DONE, outcome=cancel.NOT_REPORTED, note=why)
        _settle(
            ctx, [i for i in ids if i not in refunds and i not in unreported], state=inbox.DONE, outcome=decision.verdict.value, note=note
        )
    _log(store_hash, order_id, decision)


def _recheck_queued(
    ctx: Context,
    store_hash: str,
    order_id: int,
    claimed: list[dict],
    earlier: dict,
    order: dict | None,
    decision: rules.Decision,
    policy: rules.Policy,
) -> None:
    """An event for an order whose report waits unsent: drop the report if the order is no longer eligible."""
    ids = [row["id"] for row in claimed]
    if decision.report:
        decision = rules.decide(None, policy, order_id=order_id, earlier=rules.Earlier.QUEUED)
        # A partial refund of an order still reportable: looked at again once its report is
        # settled, to be kept for the cancellation then.
        refunds = [row["id"] for row in cancel.triggers(claimed)]
        with immediate(ctx.db):
            if refunds:
                cancel.keep_until_reported(ctx, refunds, earlier)
            others = [event_id for event_id in ids if event_id not in refunds]
            if others:
                _settle(ctx, others, state=inbox.DONE, outcome=decision.codes[0], note=decision.summary)
        _log(store_hash, order_id, decision)
        return
    dropped = rules.no_longer_eligible(decision)
    key = earlier["key"]
    with immediate(ctx.db):
        if outbox.skip_unsent(ctx.db, key=key, outcome="no_longer_eligible", now=ctx.clock()):
            record(ctx, store_hash, order_id, dropped, order, force=True)
            _settle(ctx, ids, state=inbox.DONE, outcome="no_longer_eligible", note=dropped.summary)
            _log(store_hash, order_id, dropped)
            return
        # A worker holds the report (sending it, or dead with its lease still running): its next
        # send re-reads the order, and these events are looked at again once the lease is over.
        outbox.flag_recheck(ctx.db, key=key)
        due = max(ctx.clock(), (outbox.find(ctx.db, key) or {}).get("lease_until") or ctx.clock()) + 1
        inbox.events.settle(ctx.db, ids, owner=ctx.owner, state=PENDING, due_at=due, last_error=None)
    log.info(
        "Order %s of store %s is no longer eligible while its report is in a worker's hands; looked at again after it", order_id, store_hash
    )


def _log(store_hash: str, order_id: int, decision: rules.Decision) -> None:
    log.info("Order %s of store %s: %s (%s)", order_id, store_hash, decision.verdict.value, ", ".join(decision.codes))


def _settle(ctx: Context, ids: list[int], *, state: str, outcome: str, note: str) -> None:
    settled = inbox.events.settle(
        ctx.db, ids, owner=ctx.owner, state=state, outcome=outcome, note=note, last_error=None, finished_at=ctx.clock()
    )
    if settled < len(ids):
        log.warning("Lost the lease on %d of events %s; another worker has them", len(ids) - settled, ids)


def _failed(ctx: Context, claimed: list[dict], error: str, outcome: Outcome, retry_after: float | None) -> None:
    ids = [row["id"] for row in claimed]
    store_hash, order_id = claimed[0]["store_hash"], claimed[0]["order_id"]
    with immediate(ctx.db):
        if outcome.action is Action.PAUSE:
            ctx.pause(store_hash, "bigcommerce", f"BigCommerce refused the store's API credentials: {error}")
            inbox.events.settle(ctx.db, ids, owner=ctx.owner, state=PENDING, due_at=ctx.clock(), last_error=error)
            return
        if outcome.rate_limited:
            # The store's quota is spent: not this order's fault, so no attempt is burnt.
            until = ctx.hold(store_hash, "bigcommerce", retry_after, error)
            inbox.events.settle(ctx.db, ids, owner=ctx.owner, state=PENDING, due_at=until, last_error=error)
            return
        columns = ctx.failure_columns(max(row["attempts"] for row in claimed) + 1, outcome, retry_after, error)
        if columns["state"] == DEAD:
            columns["finished_at"] = ctx.clock()
            log.error("Gave up on order %s of store %s after %d attempts: %s", order_id, store_hash, columns["attempts"], error)
        else:
            log.warning("Order %s of store %s: %s; retrying in %.0f s", order_id, store_hash, error, columns["due_at"] - ctx.clock())
        inbox.events.settle(ctx.db, ids, owner=ctx.owner, **columns)
