"""Eligibility rules: is this BigCommerce order reported to Refersion, and if not, why.

Pure functions over plain values: no Flask, requests or database here. Statuses are
compared by id, never by name (merchants can rename them).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
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
PARTIALLY_REFUNDED = 14

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

GIFT_CERTIFICATE = "giftcertificate"  # an order line of this type buys a gift certificate

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
    channel_ids: frozenset[int] | None = None  # None: every channel
    report_gift_certificates: bool = False
    dry_run: bool = False

    def accepts_status(self, status_id: int) -> bool:
        # A partially refunded order was paid: with cancellations synced it is reported
        # as placed and its refunds follow as cancellations (SPEC 4 step 2).
        return status_id in self.order_statuses or (self.sync_cancellations and status_id == PARTIALLY_REFUNDED)

    def accepts_payment(self, payment_status: str) -> bool:
        if payment_status in self.payment_statuses:
            return True
        if self.sync_cancellations and payment_status == "partially refunded":
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


class Earlier(enum.Enum):
    """What already happened to the order's paid report, as far as the rules care."""

    REPORTED = "reported"
    QUEUED = "queued"  # waiting to be sent
    FAILED = "failed"  # Refersion refused it for good
    DRY_RUN = "dry_run"  # evaluated while nothing was sent


_EARLIER = {
    Earlier.REPORTED: Reason("already_reported", "Already reported to Refersion; an order is reported only once."),
    Earlier.DRY_RUN: Reason("already_evaluated_dry_run", "Already evaluated in dry-run mode, when nothing was sent; it is not sent later."),
    Earlier.FAILED: Reason("delivery_failed", "Refersion refused the report of this order; it is not sent again unless replayed."),
    Earlier.QUEUED: Reason("already_queued", "Already queued for Refersion; the report is on its way."),
}


def status_label(status_id: int) -> str:
    name = STATUS_NAMES.get(status_id)
    return f"{name} ({status_id})" if name else f"status {status_id}"


def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def decide(order: Mapping | None, policy: Policy, *, order_id: int, earlier: Earlier | None = None) -> Decision:
    """Decide what to do with an order in its current state.

    :param order: the order as read from BigCommerce (normalised: ints, Decimals,
        lower-case payment status), or None when BigCommerce has no such order.
    :param earlier: what became of an earlier paid report of this order, if any.
    """
    if earlier is not None:
        return Decision(Verdict.SKIP, (_EARLIER[earlier],))
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
    if not policy.accepts_status(status_id):
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

    channel_id = order.get("channel_id")
    if policy.channel_ids is not None and channel_id not in policy.channel_ids:
        channels = ", ".join(str(c) for c in sorted(policy.channel_ids)) or "none"
        skips.append(
            Reason(
                "channel_excluded",
                f"The order came from sales channel {channel_id}, which is not reported (reported channels: {channels}); "
                "marketplace and point-of-sale orders bring no affiliate click.",
            )
        )

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


def decide_lines(lines: Sequence[Mapping], policy: Policy) -> Decision | None:
    """A skip when the order's only lines are gift certificates that are not reported, else None.

    Gift-certificate purchases earn nothing: the affiliate earns when the certificate is spent.
    """
    if policy.report_gift_certificates or not lines:
        return None
    if all(line.get("type") == GIFT_CERTIFICATE for line in lines):
        return Decision(
            Verdict.SKIP,
            (Reason("gift_certificates_only", "The order holds only gift certificates, which are reported when they are spent."),),
        )
    return None


def no_longer_eligible(decision: Decision) -> Decision:
    """The decision that drops a queued report because the order changed before it was sent."""
    reason = Reason(
        "no_longer_eligible",
        "The order changed before its report was sent and is no longer eligible; the report was dropped.",
    )
    return Decision(Verdict.SKIP, (reason, *decision.reasons))
