"""Eligibility rules: is this BigCommerce order reported to Refersion, and if not, why.

Pure functions over plain values: no Flask, requests or database here. Statuses are
compared by id, never by name (merchants can rename them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

# BigCommerce's system status names, for sentences only (GET /v2/order_statuses).
STATUS_NAMES = {
    0: "Incomplete",
    1: "Pending",
    2: "Shipped",
    3: "Partially Shipped",
    4: "Refunded",
    5: "Cancelled",
    6: "Declined",
    7: "Awaiting Payment",
    8: "Awaiting Pickup",
    9: "Awaiting Shipment",
    10: "Completed",
    11: "Awaiting Fulfillment",
    12: "Manual Verification Required",
    13: "Disputed",
    14: "Partially Refunded",
}

# Statuses an order passes through on its way to being paid, or while on hold: an
# order in one of these may still become reportable, so it waits rather than skips.
STATUSES_NOT_YET = frozenset({0, 1, 7, 12, 13})

PAYMENT_STATUSES = (
    "authorized",
    "captured",
    "capture pending",
    "declined",
    "held for review",
    "paid",
    "partially refunded",
    "pending",
    "refunded",
    "void",
    "void pending",
)

# Payment states that can still turn into a captured payment.
PAYMENTS_NOT_YET = frozenset({"", "pending", "authorized", "capture pending", "held for review"})


@dataclass(frozen=True)
class Policy:
    """The merchant's rules (config section ``[rules]``)."""

    order_statuses: frozenset[int] = frozenset({2, 3, 8, 9, 10, 11})
    payment_statuses: frozenset[str] = frozenset({"captured", "paid"})
    accept_authorized: bool = False
    excluded_coupons: tuple[str, ...] = ()
    sync_cancellations: bool = True
    dry_run: bool = False
    channel_ids: frozenset[int] | None = None  # None: every channel
    report_gift_certificates: bool = False

    def accepts_payment(self, payment_status: str) -> bool:
        if payment_status in self.payment_statuses:
            return True
        return self.accept_authorized and payment_status == "authorized"


class Verdict(enum.Enum):
    REPORT = "report"
    WAIT = "wait"  # not eligible yet: reconsidered on the order's next event or backfill
    SKIP = "skip"  # never reported as things stand


@dataclass(frozen=True)
class Reason:
    code: str
    text: str


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[Reason, ...]

    @property
    def report(self) -> bool:
        return self.verdict is Verdict.REPORT

    @property
    def codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]

    @property
    def summary(self) -> str:
        return " ".join(reason.text for reason in self.reasons)


# What an existing delivery for the order means for a new evaluation.
_EARLIER_DELIVERY = {
    "done": Reason("already_reported", "Already reported to Refersion; an order is reported only once."),
    "dry_run": Reason("already_evaluated_dry_run", "Already evaluated in dry-run mode, when nothing was sent; it is not sent later."),
    "dead": Reason("delivery_failed", "Refersion refused the report of this order; it is not sent again unless replayed."),
}
_QUEUED = Reason("already_queued", "Already queued for Refersion; the report is on its way.")


def status_label(status_id: int) -> str:
    name = STATUS_NAMES.get(status_id)
    return f"{name} ({status_id})" if name else f"status {status_id}"


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def decide(order: Mapping | None, policy: Policy, *, order_id: int, delivery_state: str | None = None) -> Decision:
    """Decide what to do with an order in its current state.

    :param order: the order as read from BigCommerce (normalised: ints, Decimals,
        lower-case payment status), or None when BigCommerce has no such order.
    :param delivery_state: the state of an earlier Refersion delivery for this order,
        if one exists.
    """
    if delivery_state is not None:
        return Decision(Verdict.SKIP, (_EARLIER_DELIVERY.get(delivery_state, _QUEUED),))
    if order is None:
        return Decision(
            Verdict.SKIP,
            (Reason("order_not_found", f"BigCommerce has no order #{order_id}: it was deleted or never completed."),),
        )

    waits: list[Reason] = []
    skips: list[Reason] = []
    if order["is_deleted"]:
        skips.append(Reason("deleted", "The order was deleted (archived) in BigCommerce."))

    status_id = order["status_id"]
    if status_id not in policy.order_statuses:
        label = status_label(status_id)
        if status_id in STATUSES_NOT_YET:
            waits.append(Reason("status_not_yet", f"Status is {label}: not paid yet. It is looked at again when the order changes."))
        else:
            reportable = ", ".join(status_label(s) for s in sorted(policy.order_statuses)) or "none"
            skips.append(Reason("status_excluded", f"Status is {label}, which is not reported (reported statuses: {reportable})."))

    payment = order["payment_status"]
    if not policy.accepts_payment(payment):
        shown = f"'{payment}'" if payment else "empty (no payment recorded)"
        if payment in PAYMENTS_NOT_YET:
            waits.append(Reason("payment_not_yet", f"Payment is {shown}, not captured yet. It is looked at again when the order changes."))
        else:
            skips.append(Reason("payment_excluded", f"Payment is {shown}, which is never reported."))

    if order["total_inc_tax"] <= 0:
        skips.append(Reason("free_order", f"The order total is {_money(order['total_inc_tax'])}: free orders are never reported."))

    if skips:
        return Decision(Verdict.SKIP, tuple(skips + waits))
    if waits:
        return Decision(Verdict.WAIT, tuple(waits))
    return Decision(
        Verdict.REPORT,
        (
            Reason(
                "eligible",
                f"Paid ({payment}), status {status_label(status_id)}, total {_money(order['total_inc_tax'])}: reported to Refersion.",
            ),
        ),
    )
