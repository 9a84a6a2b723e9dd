"""The eligibility rules as tables: statuses, payments, free, deleted, already reported."""

from decimal import Decimal

import pytest

from bridge.core.rules import PAYMENT_STATUSES, Earlier, Policy, Verdict, decide, decide_lines, no_longer_eligible

DEFAULT = Policy()


def order(status_id=11, payment_status="captured", total="54.10", is_deleted=False):
    return {"id": 7, "status_id": status_id, "payment_status": payment_status, "total_inc_tax": Decimal(total), "is_deleted": is_deleted}


STATUS_TABLE = {
    0: (Verdict.WAIT, "status_not_yet"),  # Incomplete
    1: (Verdict.WAIT, "status_not_yet"),  # Pending
    2: (Verdict.REPORT, "eligible"),  # Shipped
    3: (Verdict.REPORT, "eligible"),  # Partially Shipped
    4: (Verdict.SKIP, "status_excluded"),  # Refunded
    5: (Verdict.SKIP, "status_excluded"),  # Cancelled
    6: (Verdict.SKIP, "status_excluded"),  # Declined
    7: (Verdict.WAIT, "status_not_yet"),  # Awaiting Payment
    8: (Verdict.REPORT, "eligible"),  # Awaiting Pickup
    9: (Verdict.REPORT, "eligible"),  # Awaiting Shipment
    10: (Verdict.REPORT, "eligible"),  # Completed
    11: (Verdict.REPORT, "eligible"),  # Awaiting Fulfillment
    12: (Verdict.WAIT, "status_not_yet"),  # Manual Verification Required
    13: (Verdict.WAIT, "status_not_yet"),  # Disputed
    14: (Verdict.REPORT, "eligible"),  # Partially Refunded: paid; its refunds follow as cancellations
}


def test_status_table_covers_every_status():
    assert sorted(STATUS_TABLE) == list(range(15))


@pytest.mark.parametrize("status_id", sorted(STATUS_TABLE))
def test_every_status_id_with_captured_payment(status_id):
    verdict, code = STATUS_TABLE[status_id]
    decision = decide(order(status_id=status_id), DEFAULT, order_id=7)
    assert decision.verdict is verdict
    assert decision.codes == [code]


PAYMENT_TABLE = {
    "captured": (Verdict.REPORT, "eligible"),
    "paid": (Verdict.REPORT, "eligible"),
    "authorized": (Verdict.WAIT, "payment_not_yet"),
    "capture pending": (Verdict.WAIT, "payment_not_yet"),
    "held for review": (Verdict.WAIT, "payment_not_yet"),
    "pending": (Verdict.WAIT, "payment_not_yet"),
    "": (Verdict.WAIT, "payment_not_yet"),
    "declined": (Verdict.SKIP, "payment_excluded"),
    "partially refunded": (Verdict.REPORT, "eligible"),
    "refunded": (Verdict.SKIP, "payment_excluded"),
    "void": (Verdict.SKIP, "payment_excluded"),
    "void pending": (Verdict.SKIP, "payment_excluded"),
}


def test_payment_table_covers_every_documented_payment_status():
    assert set(PAYMENT_TABLE) == set(PAYMENT_STATUSES) | {""}


@pytest.mark.parametrize("payment_status", sorted(PAYMENT_TABLE))
def test_every_payment_status_on_an_awaiting_fulfillment_order(payment_status):
    verdict, code = PAYMENT_TABLE[payment_status]
    decision = decide(order(payment_status=payment_status), DEFAULT, order_id=7)
    assert decision.verdict is verdict
    assert decision.codes == [code]


@pytest.mark.parametrize(
    ("accept_authorized", "verdict"),
    [(False, Verdict.WAIT), (True, Verdict.REPORT)],
)
def test_accept_authorized_reports_authorized_payments(accept_authorized, verdict):
    policy = Policy(accept_authorized=accept_authorized)
    assert decide(order(payment_status="authorized"), policy, order_id=7).verdict is verdict


def test_accept_authorized_does_not_admit_other_pending_payments():
    policy = Policy(accept_authorized=True)
    assert decide(order(payment_status="pending"), policy, order_id=7).verdict is Verdict.WAIT


@pytest.mark.parametrize("total", ["0", "0.0000", "-1.00"])
def test_free_orders_are_never_reported(total):
    decision = decide(order(total=total), DEFAULT, order_id=7)
    assert decision.verdict is Verdict.SKIP
    assert decision.codes == ["free_order"]
    assert "free orders are never reported" in decision.summary


def test_a_cent_is_not_free():
    assert decide(order(total="0.01"), DEFAULT, order_id=7).report


def test_deleted_orders_are_skipped():
    decision = decide(order(is_deleted=True), DEFAULT, order_id=7)
    assert decision.verdict is Verdict.SKIP
    assert decision.codes == ["deleted"]


def test_missing_order_is_skipped_with_its_number():
    decision = decide(None, DEFAULT, order_id=812)
    assert decision.verdict is Verdict.SKIP
    assert decision.codes == ["order_not_found"]
    assert "#812" in decision.summary


@pytest.mark.parametrize(
    ("earlier", "code"),
    [
        (Earlier.REPORTED, "already_reported"),
        (Earlier.QUEUED, "already_queued"),
        (Earlier.FAILED, "delivery_failed"),
        (Earlier.DRY_RUN, "already_evaluated_dry_run"),
    ],
)
def test_already_reported_orders_are_not_reported_again(earlier, code):
    decision = decide(order(), DEFAULT, order_id=7, earlier=earlier)
    assert decision.verdict is Verdict.SKIP
    assert decision.codes == [code]


def test_without_cancellation_sync_a_partially_refunded_order_is_skipped():
    policy = Policy(sync_cancellations=False)
    assert decide(order(status_id=14), policy, order_id=7).codes == ["status_excluded"]
    assert decide(order(payment_status="partially refunded"), policy, order_id=7).codes == ["payment_excluded"]
    assert decide(order(status_id=14, payment_status="partially refunded"), policy, order_id=7).verdict is Verdict.SKIP


@pytest.mark.parametrize("status_id", [4, 5])
def test_fully_refunded_or_cancelled_orders_are_never_reported_even_with_cancellation_sync(status_id):
    decision = decide(order(status_id=status_id, payment_status="refunded"), Policy(sync_cancellations=True), order_id=7)
    assert decision.verdict is Verdict.SKIP


@pytest.mark.parametrize(
    ("channel_ids", "channel_id", "verdict"),
    [(None, 1, Verdict.REPORT), (None, 664, Verdict.REPORT), (frozenset({1}), 1, Verdict.REPORT), (frozenset({1}), 664, Verdict.SKIP)],
)
def test_orders_from_channels_outside_rules_channel_ids_are_skipped(channel_ids, channel_id, verdict):
    decision = decide({**order(), "channel_id": channel_id}, Policy(channel_ids=channel_ids), order_id=7)
    assert decision.verdict is verdict
    if verdict is Verdict.SKIP:
        assert decision.codes == ["channel_excluded"]
        assert "664" in decision.summary


def test_an_order_of_only_gift_certificates_is_skipped_unless_they_are_reported():
    lines = [{"id": 1, "type": "giftcertificate"}, {"id": 2, "type": "giftcertificate"}]
    assert decide_lines(lines, Policy()).codes == ["gift_certificates_only"]
    assert decide_lines(lines, Policy(report_gift_certificates=True)) is None
    assert decide_lines([*lines, {"id": 3, "type": "physical"}], Policy()) is None
    assert decide_lines([], Policy()) is None


def test_no_longer_eligible_leads_with_its_own_reason_then_the_rules_reasons():
    dropped = no_longer_eligible(decide(order(status_id=5), DEFAULT, order_id=7))
    assert dropped.verdict is Verdict.SKIP
    assert dropped.codes == ["no_longer_eligible", "status_excluded"]


def test_every_failing_rule_is_listed_skips_first():
    decision = decide(order(status_id=1, payment_status="declined", total="0"), DEFAULT, order_id=7)
    assert decision.verdict is Verdict.SKIP
    assert decision.codes == ["payment_excluded", "free_order", "status_not_yet"]


def test_waiting_reasons_are_combined():
    decision = decide(order(status_id=7, payment_status="pending"), DEFAULT, order_id=7)
    assert decision.verdict is Verdict.WAIT
    assert decision.codes == ["status_not_yet", "payment_not_yet"]


def test_statuses_are_compared_by_id_and_configurable():
    policy = Policy(order_statuses=frozenset({10}))
    assert decide(order(status_id=10), policy, order_id=7).report
    skipped = decide(order(status_id=11), policy, order_id=7)
    assert skipped.verdict is Verdict.SKIP
    assert "Awaiting Fulfillment (11)" in skipped.summary
    assert "Completed (10)" in skipped.summary


def test_sentences_are_plain_words():
    decision = decide(order(status_id=1, payment_status="pending"), DEFAULT, order_id=7)
    assert decision.summary == (
        "Status is Pending (1): not paid yet. It is looked at again when the order changes. "
        "Payment is 'pending', not captured yet. It is looked at again when the order changes."
    )
