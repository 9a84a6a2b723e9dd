"""Edges of the pure core that mutation testing showed no test pinned down (see docs/mutation.md).

Each test names a behaviour: the sentence a merchant reads, a status class, a header
form, the shape of a cart id, which lines are reported.
"""

import os
import re
import time
from decimal import Decimal

import pytest

from bridge.core.payload import (
    build_paid_order,
    choose_cart_id,
    fallback_cart_id,
    line_sku,
    reportable_lines,
    reported_lines,
    text,
    usable_cart_id,
)
from bridge.core.retry import Action, classify, parse_retry_after
from bridge.core.rules import Policy, Verdict, decide, decide_lines, no_longer_eligible
from tests.conftest import T0

KEY = b"server-secret-for-tests-0123456789"


def order(status_id=11, payment_status="captured", total="54.10", is_deleted=False, **more):
    base = {"id": 7, "status_id": status_id, "payment_status": payment_status, "total_inc_tax": Decimal(total), "is_deleted": is_deleted}
    return {**base, **more}


# --- the sentences on the status page --------------------------------------------


@pytest.mark.parametrize(
    ("the_order", "policy", "summary"),
    [
        (
            order(),
            Policy(),
            "Paid (captured), status Awaiting Fulfillment (11), total 54.10: reported to Refersion.",
        ),
        (
            order(is_deleted=True),
            Policy(),
            "The order was deleted (archived) in BigCommerce.",
        ),
        (
            order(status_id=99),
            Policy(order_statuses=frozenset({10, 11})),
            "Status is status 99, which is not reported (reported statuses: Completed (10), Awaiting Fulfillment (11)).",
        ),
        (
            order(status_id=11),
            Policy(order_statuses=frozenset(), sync_cancellations=False),
            "Status is Awaiting Fulfillment (11), which is not reported (reported statuses: none).",
        ),
        (
            order(payment_status=""),
            Policy(),
            "Payment is empty (no payment recorded), not captured yet. It is looked at again when the order changes.",
        ),
        (
            order(payment_status="void"),
            Policy(),
            "Payment is 'void', which is never reported.",
        ),
        (
            order(channel_id=664),
            Policy(channel_ids=frozenset({1, 2})),
            "The order came from sales channel 664, which is not reported (reported channels: 1, 2); "
            "marketplace and point-of-sale orders bring no affiliate click.",
        ),
        (
            order(channel_id=1),
            Policy(channel_ids=frozenset()),
            "The order came from sales channel 1, which is not reported (reported channels: none); "
            "marketplace and point-of-sale orders bring no affiliate click.",
        ),
    ],
    ids=["eligible", "deleted", "unknown-status", "no-statuses", "no-payment", "void", "channels", "no-channels"],
)
def test_each_reason_reads_as_the_merchant_sees_it(the_order, policy, summary):
    assert decide(the_order, policy, order_id=7).summary == summary


def test_an_order_of_gift_certificates_only_is_skipped_with_its_reason():
    decision = decide_lines([{"id": 1, "type": "giftcertificate"}], Policy())
    assert decision.verdict is Verdict.SKIP
    assert decision.summary == "The order holds only gift certificates, which are reported when they are spent."


def test_a_dropped_report_says_why_before_the_rules_reasons():
    dropped = no_longer_eligible(decide(order(status_id=5), Policy(), order_id=7))
    assert dropped.summary == (
        "The order changed before its report was sent and is no longer eligible; the report was dropped. "
        "Status is Cancelled (5), which is not reported (reported statuses: Shipped (2), Partially Shipped (3), "
        "Awaiting Pickup (8), Awaiting Shipment (9), Completed (10), Awaiting Fulfillment (11))."
    )


# --- classification and Retry-After -----------------------------------------------


@pytest.mark.parametrize("status", [199, 300, 301, 302, 304, 307, 308, 399])
def test_anything_outside_2xx_that_is_not_a_known_class_is_dead(status):
    assert classify(status).action is Action.DEAD


def test_only_a_429_spends_the_quota():
    assert classify(429).rate_limited is True
    assert [status for status in (200, 408, 500, 503) if classify(status).rate_limited] == []


@pytest.fixture
def server_in_another_zone():
    """The server's local time zone is not UTC (naive times must not be read as local)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"  # UTC+5:30, no daylight saving
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("Tue, 29 Sep 2026 07:33:50 +0000", 30.0),
        ("Tue, 29 Sep 2026 07:33:50 -0000", 30.0),  # "-0000": no zone given, read as UTC
        ("Tue, 29 Sep 2026 09:33:50 +0200", 30.0),
        ("Tue, 29 Sep 2026 07:33:50 GMT", 30.0),
    ],
)
def test_retry_after_dates_with_any_zone_count_from_now(server_in_another_zone, header, seconds):
    now = 1_790_667_200.0  # Tue, 29 Sep 2026 07:33:20 UTC
    assert parse_retry_after(header, now) == pytest.approx(seconds)


def test_retry_after_seconds_are_relative_whatever_now_is():
    assert parse_retry_after("30", T0) == 30.0


# --- text, cart ids, lines ---------------------------------------------------------


def test_lone_surrogates_become_the_replacement_character():
    assert text(" a\ud800b\udfff ") == "a\ufffdb\ufffd"


@pytest.mark.parametrize(("value", "usable"), [("x", "x"), ("c" * 255, "c" * 255), ("c" * 256, None), ("", None), ("  ", None)])
def test_cart_ids_of_one_to_255_characters_are_usable(value, usable):
    assert usable_cart_id(value) == usable
    chosen = choose_cart_id({"order": value}, key=KEY, store_hash="abc123", order_id=5)
    assert chosen.source == ("order" if usable else "fallback")


def test_a_fallback_cart_id_is_32_letters_from_a_to_p_each_carrying_four_bits():
    values = [fallback_cart_id(KEY, "abc123", order_id) for order_id in range(1, 301)]
    for value in values:
        assert re.fullmatch(r"bcnocart-[a-p]{32}", value), value
    letters = [value.removeprefix("bcnocart-") for value in values]
    # Every position pair (high and low half of a byte) uses all 16 letters: nothing is lost.
    for position in (0, 1, 30, 31):
        assert {word[position] for word in letters} == set("abcdefghijklmnop"), position


@pytest.mark.parametrize(
    ("line", "sku"),
    [
        ({"id": 9, "sku": " AB-1 ", "product_id": 4}, "AB-1"),
        ({"id": 9, "sku": "", "product_id": 4}, "product-4"),
        ({"id": 9, "sku": "", "product_id": 0}, "line-9"),  # a custom line: no product behind it
        ({"id": 9, "sku": None, "product_id": None}, "line-9"),
    ],
)
def test_a_line_without_sku_is_named_by_its_product_else_by_itself(line, sku):
    assert line_sku(line) == sku


LINES = [
    {"id": 1, "sku": "POT", "product_id": 4, "quantity": 1, "price_ex_tax": Decimal("10.00"), "type": "physical", "name": "Pot"},
    {"id": 2, "sku": "GC-25", "product_id": 0, "quantity": 1, "price_ex_tax": Decimal("25.00"), "type": "giftcertificate", "name": "Gift"},
]
ORDER = {
    "id": 7,
    "default_currency_code": "USD",
    "shipping_cost_ex_tax": Decimal("0"),
    "handling_cost_ex_tax": Decimal("0"),
    "total_tax": Decimal("0"),
    "coupon_discount": Decimal("0"),
    "discount_amount": Decimal("0"),
}


def test_gift_certificate_lines_are_left_out_unless_the_merchant_reports_them():
    assert [line["id"] for line in reportable_lines(LINES)] == [1]
    assert [item["sku"] for item in build_paid_order(ORDER, LINES, [], cart_id="c")["items"]] == ["POT"]
    reported = build_paid_order(ORDER, LINES, [], cart_id="c", report_gift_certificates=True)
    assert [item["sku"] for item in reported["items"]] == ["POT", "GC-25"]


def test_reported_lines_keep_the_order_product_id_of_each_item():
    assert reported_lines(LINES) == [{"order_product_id": 1, "sku": "POT", "quantity": 1, "price": Decimal("10.00"), "name": "Pot"}]
    with_gifts = reported_lines(LINES, report_gift_certificates=True)
    assert [(line["order_product_id"], line["sku"]) for line in with_gifts] == [(1, "POT"), (2, "GC-25")]
