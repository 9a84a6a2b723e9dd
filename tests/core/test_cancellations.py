"""core/cancellations: refunds mapped back to reported lines, never cancelling more than was reported."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import cancellations as c

REPORTED = [
    {"order_product_id": 11, "sku": "SKU-A", "price": Decimal("10.00"), "quantity": 3, "name": "A"},
    {"order_product_id": 12, "sku": "SKU-B", "price": 5, "quantity": 1},
]


def product(item_id, quantity):
    return {"item_type": "PRODUCT", "item_id": item_id, "quantity": quantity}


def test_a_refund_cancels_its_product_lines_as_reported():
    lines = c.reported(REPORTED)
    plan = c.for_refund(7, [product(11, 2), {"item_type": "SHIPPING", "item_id": 150, "quantity": None}], lines, {})
    assert plan.body(301) == {"order_id": "301", "items": [{"sku": "SKU-A", "price": Decimal("10.00"), "quantity": 2}]}
    assert plan.taken == {11: 2} and not plan.full
    assert plan.meta(7)["lines"] == [{"order_product_id": 11, "sku": "SKU-A", "price": Decimal("10.00"), "quantity": 2}]
    assert plan.text == "Refund 7 cancels 2 × SKU-A in Refersion."


def test_a_refund_asking_more_than_is_left_is_capped():
    lines = c.reported(REPORTED)
    plan = c.for_refund(8, [product(11, 5), product(12, 1)], lines, {11: 2})
    assert [(line.sku, line.quantity) for line in plan.lines] == [("SKU-A", 1), ("SKU-B", 1)]
    assert plan.full


def test_refunds_of_shipping_tax_or_an_amount_only_cancel_nothing_and_say_so():
    lines = c.reported(REPORTED)
    plan = c.for_refund(9, [{"item_type": "SHIPPING"}, {"item_type": "ORDER", "item_id": 301}], lines, {})
    assert (plan.sends, plan.code) == (False, c.NO_PRODUCTS)
    assert plan.text == "Refund 9 returned shipping and an amount of the order only, no product: nothing is cancelled in Refersion."
    assert c.for_refund(10, [], lines, {}).text.startswith("Refund 10 returned no product only")


def test_lines_never_reported_map_to_nothing_and_exhausted_lines_say_so():
    lines = c.reported(REPORTED)
    assert c.for_refund(1, [product(99, 1)], lines, {}).code == c.LINES_NOT_REPORTED  # a gift certificate, a bundle child
    assert c.for_refund(2, [product(11, 1)], lines, {11: 3}).code == c.NOTHING_LEFT
    assert c.refunded_products([product(11, 0), product(None, 1), {"item_type": "PRODUCT", "item_id": 12}]) == {}


def test_the_whole_order_takes_everything_still_uncancelled():
    lines = c.reported(REPORTED)
    plan = c.for_whole_order("cancelled", lines, {11: 1})
    assert [(line.sku, line.quantity) for line in plan.lines] == [("SKU-A", 2), ("SKU-B", 1)] and plan.full
    assert "2 × SKU-A, 1 × SKU-B" in plan.text
    assert c.for_whole_order("refunded in full", lines, {11: 3, 12: 1}).code == c.NOTHING_LEFT


def test_taken_sums_earlier_cancellations_per_line():
    assert c.taken([[{"order_product_id": 11, "quantity": 2}], None, [{"order_product_id": 11, "quantity": 1}]]) == {11: 3}
    assert c.reported(None) == []


reported_items = st.lists(
    st.builds(
        lambda i, q: {"order_product_id": i, "sku": f"SKU-{i}", "price": "1.50", "quantity": q},
        st.integers(1, 6),
        st.integers(0, 5),
    ),
    unique_by=lambda item: item["order_product_id"],
    max_size=5,
)
refund_items = st.lists(
    st.one_of(
        st.builds(product, st.integers(1, 8), st.integers(-1, 7)),
        st.builds(lambda kind: {"item_type": kind, "item_id": 1, "quantity": None}, st.sampled_from(sorted(c.REFUNDED_WORDS))),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(reported_items, st.lists(refund_items, max_size=6), st.booleans())
def test_no_sequence_of_refunds_cancels_more_than_was_reported_per_line(items, refunds, then_whole):
    lines = c.reported(items)
    cancelled = []
    for number, refund in enumerate(refunds):
        plan = c.for_refund(number, refund, lines, c.taken(cancelled))
        assert plan.sends == bool(plan.lines) and (plan.code is None) == plan.sends
        cancelled.append(plan.meta(number)["lines"])
    if then_whole:
        cancelled.append(c.for_whole_order("cancelled", lines, c.taken(cancelled)).meta("order")["lines"])
    total = c.taken(cancelled)
    reported = {line.order_product_id: line.quantity for line in lines}
    assert set(total) <= set(reported)
    assert all(0 < quantity <= reported[key] for key, quantity in total.items())
    if then_whole:
        assert total == {key: quantity for key, quantity in reported.items() if quantity}
