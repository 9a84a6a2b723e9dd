"""Whole BigCommerce orders with nulls, blanks and odd text anywhere: each one yields a
payload or a clear decision, never an exception (SPEC 4 step 3; issue 5, defect 2).

Orders go the way the worker takes them: raw JSON through the client's schemas, then the
rules and the payload builder, then the JSON body as it would be sent.
"""

import copy
import json
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.clients.bigcommerce import OrderCouponSchema, OrderProductSchema, OrderSchema
from bridge.clients.refersion import dumps
from bridge.core.payload import build_paid_order, choose_cart_id
from bridge.core.rules import Policy, Verdict, decide, decide_lines
from tests.fakes import load_fixture

ORDER_TEXT = ["payment_status", "currency_code", "default_currency_code", "cart_id", "ip_address", "ip_address_v6", "date_modified"]
BILLING_TEXT = ["first_name", "last_name", "email"]
LINE_TEXT = ["sku", "name", "type"]
ORDER_MONEY = ["total_inc_tax", "total_tax", "shipping_cost_ex_tax", "handling_cost_ex_tax", "coupon_discount", "discount_amount"]
LINE_NUMBERS = ["product_id", "quantity", "parent_order_product_id"]

odd_text = st.one_of(
    st.none(),
    st.just(""),
    st.sampled_from([" ", "\t\n", "\u00a0", "\u200b", "\ud800", "\udfff x", "\ufeff", "ß", "💳", "\x00", "a\u0301"]),
    st.text(max_size=20),
)
odd_money = st.one_of(st.none(), st.just(""), st.just("0.0000"), st.just("-5.0000"), st.just("12.3450"))
odd_number = st.one_of(st.none(), st.just(0), st.integers(min_value=1, max_value=10**6))


@st.composite
def raw_orders(draw):
    fixture = load_fixture("coupons_one_excluded")
    order = copy.deepcopy(fixture["order"])
    for key in ORDER_TEXT:
        if draw(st.booleans()):
            order[key] = draw(odd_text)
    for key in ORDER_MONEY:
        if draw(st.booleans()):
            order[key] = draw(odd_money)
    order["billing_address"] = draw(st.one_of(st.none(), st.just({}), st.fixed_dictionaries({key: odd_text for key in BILLING_TEXT})))
    lines = []
    for n, template in enumerate(fixture["products"] * draw(st.integers(min_value=0, max_value=2))):
        line = {**copy.deepcopy(template), "id": 900 + n}
        for key in LINE_TEXT:
            if draw(st.booleans()):
                line[key] = draw(odd_text)
        for key in LINE_NUMBERS:
            if draw(st.booleans()):
                line[key] = draw(odd_number)
        if draw(st.booleans()):
            line["price_ex_tax"] = draw(odd_money)
        lines.append(line)
    coupons = [{"code": draw(odd_text), "discount": draw(odd_money)} for _ in range(draw(st.integers(min_value=0, max_value=3)))]
    return order, lines, coupons


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_orders())
def test_any_mix_of_nulls_blanks_and_odd_text_yields_a_payload_or_a_clear_decision(raw):
    raw_order, raw_lines, raw_coupons = raw
    order = OrderSchema().load(raw_order)
    lines = OrderProductSchema().load(raw_lines, many=True)
    coupons = OrderCouponSchema().load(raw_coupons, many=True)
    policy = Policy()

    decision = decide(order, policy, order_id=order["id"])
    assert decision.reasons and all(reason.text.strip() for reason in decision.reasons)
    if decision.verdict is not Verdict.REPORT:
        return
    decision = decide_lines(lines, policy) or decision
    if decision.verdict is not Verdict.REPORT:
        assert decision.codes == ["gift_certificates_only"]
        return
    cart = choose_cart_id({"order": order["cart_id"]}, key=b"k" * 16, store_hash="abc123", order_id=order["id"])
    payload = build_paid_order(order, lines, coupons, cart_id=cart.value)

    body = dumps(payload).encode("utf-8")  # what goes on the wire: must encode
    sent = json.loads(body, parse_float=Decimal)
    assert sent["order_id"] == str(order["id"])
    assert 0 < len(sent["cart_id"]) <= 255
    assert sent["discount"] >= 0
    for key in ("shipping", "tax", "discount"):
        assert isinstance(sent[key], Decimal)
    for item in sent["items"]:
        assert item["sku"].strip() == item["sku"] != ""
        assert item["quantity"] > 0
    assert all(text == text.strip() and text for text in _strings(sent))
