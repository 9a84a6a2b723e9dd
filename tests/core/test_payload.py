"""The Refersion payload built from realistic BigCommerce order JSON (tests/fixtures/orders)."""

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from bridge.clients.bigcommerce import OrderCouponSchema, OrderProductSchema, OrderSchema
from bridge.clients.refersion import dumps
from bridge.core.payload import (
    CART_ID_SOURCES,
    NO_CART_ID_NOTE,
    build_paid_order,
    choose_cart_id,
    coupon_codes,
    fallback_cart_id,
    money,
    text,
)

FIXTURES = sorted(p.stem for p in (Path(__file__).parents[1] / "fixtures" / "orders").glob("*.json"))
KEY = b"server-secret-for-tests-0123456789"


def load(name):
    return json.loads((Path(__file__).parents[1] / "fixtures" / "orders" / f"{name}.json").read_text(), parse_float=Decimal)


def build(fixture):
    order = OrderSchema().load(json.loads(json.dumps(fixture["order"], default=str)))
    lines = OrderProductSchema(many=True).load(fixture["products"])
    coupons = OrderCouponSchema(many=True).load(fixture["coupons"])
    return build_paid_order(order, lines, coupons, cart_id=order["cart_id"], excluded_coupons=fixture["excluded_coupons"])


def _money(value) -> Decimal:
    return Decimal(str(value))


def _covers_excluded_coupon(fixture) -> bool:
    codes = [coupon["code"] for coupon in fixture["coupons"]]
    excluded = fixture["excluded_coupons"]
    folded = {code.casefold() for code in excluded}
    # one code excluded only case-insensitively, one kept
    return any(code.casefold() in folded and code not in excluded for code in codes) and any(c.casefold() not in folded for c in codes)


def _covers_bundle(fixture) -> bool:
    ids = {line["id"] for line in fixture["products"]}
    children = [line for line in fixture["products"] if line["parent_order_product_id"]]
    sent = {item["sku"] for item in fixture["expected_payload"]["items"]}
    return bool(children) and all(c["parent_order_product_id"] in ids and c["sku"] not in sent for c in children)


def _covers_odd_lines(fixture) -> bool:
    lines = fixture["products"]
    no_sku = any(not line["sku"] and line["product_id"] and line["quantity"] > 0 for line in lines)
    no_name = any(not line["name"] and line["quantity"] > 0 for line in lines)
    return no_sku and no_name and any(line["quantity"] == 0 for line in lines)


def _covers_cents(fixture) -> bool:
    order = fixture["order"]
    shipping, handling = _money(order["shipping_cost_ex_tax"]), _money(order["handling_cost_ex_tax"])
    return money(shipping + handling) != money(shipping) + money(handling)  # summing first changes the result


# What each fixture is named for, checked on its data: a fixture edited so that it no
# longer exercises its case fails here, not silently in the payload test.
FIXTURE_CASES = {
    "coupons_one_excluded": _covers_excluded_coupon,
    "manual_discount": lambda f: (
        _money(f["order"]["discount_amount"]) > 0 and _money(f["order"]["coupon_discount"]) == 0 and f["coupons"] == []
    ),
    "bundle_children_skipped": _covers_bundle,
    "line_without_sku": _covers_odd_lines,
    "tax_inclusive_prices": lambda f: (
        f["order"]["is_tax_inclusive_pricing"] is True
        and _money(f["order"]["shipping_cost_inc_tax"]) > _money(f["order"]["shipping_cost_ex_tax"])
        and all(_money(line["price_inc_tax"]) > _money(line["price_ex_tax"]) for line in f["products"])
    ),
    "shipping_plus_handling": lambda f: _money(f["order"]["shipping_cost_ex_tax"]) > 0 and _money(f["order"]["handling_cost_ex_tax"]) > 0,
    "ipv6_only_customer": lambda f: f["order"]["ip_address"] == "" and f["order"]["ip_address_v6"] != "",
    "guest_without_name": lambda f: (
        not f["order"]["billing_address"]["first_name"]
        and not f["order"]["billing_address"]["last_name"]
        and bool(f["order"]["billing_address"]["email"])
    ),
    "multi_currency": lambda f: f["order"]["default_currency_code"] not in ("", f["order"]["currency_code"]),
    "odd_cents": _covers_cents,
}


def test_the_fixture_set_covers_the_issue():
    assert set(FIXTURES) == set(FIXTURE_CASES)


@pytest.mark.parametrize("name", sorted(FIXTURE_CASES))
def test_each_fixture_exercises_what_its_name_says(name):
    fixture = json.loads((Path(__file__).parents[1] / "fixtures" / "orders" / f"{name}.json").read_text())
    assert FIXTURE_CASES[name](fixture), fixture["description"]


@pytest.mark.parametrize("name", FIXTURES)
def test_payload_matches_the_expected_refersion_body(name):
    fixture = load(name)
    sent = json.loads(dumps(build(fixture)), parse_float=Decimal)
    assert sent == fixture["expected_payload"], fixture["description"]


@pytest.mark.parametrize("name", FIXTURES)
def test_money_leaves_as_json_numbers_with_two_places(name):
    text = dumps(build(load(name)))
    for key in ("shipping", "tax", "discount", "price"):
        for value in re.findall(rf'"{key}":([^,}}]+)', text):
            assert re.fullmatch(r"-?\d+\.\d\d", value), f"{key}={value} in {text}"


def test_order_money_is_parsed_as_decimal_never_float():
    order = OrderSchema().load({"id": 1, "status_id": 11, "total_inc_tax": "69.8400", "shipping_cost_ex_tax": "0.1000"})
    assert order["total_inc_tax"] == Decimal("69.8400")
    assert isinstance(order["shipping_cost_ex_tax"], Decimal)
    assert order["coupon_discount"] == Decimal("0")


def test_summing_happens_before_rounding():
    assert money(Decimal("2.4950") + Decimal("0.0050")) == Decimal("2.50")
    assert money(Decimal("2.4950")) + money(Decimal("0.0050")) == Decimal("2.51")  # what we avoid


@pytest.mark.parametrize(("raw", "rounded"), [("0.005", "0.01"), ("0.0049", "0.00"), ("2.675", "2.68"), ("-1.005", "-1.01")])
def test_rounding_is_half_up(raw, rounded):
    assert money(Decimal(raw)) == Decimal(rounded)


def test_customer_is_left_out_when_nothing_is_known():
    fixture = load("odd_cents")
    assert "customer" not in build(fixture)


def test_discount_code_is_left_out_when_every_coupon_is_excluded():
    fixture = load("coupons_one_excluded")
    fixture["excluded_coupons"] = ["affiliate10", "HOLIDAY5"]
    payload = build(fixture)
    assert "discount_code" not in payload
    assert payload["discount"] == Decimal("18.40")


def test_several_coupon_codes_are_joined_with_commas():
    fixture = load("coupons_one_excluded")
    fixture["excluded_coupons"] = []
    assert build(fixture)["discount_code"] == "AFFILIATE10,HOLIDAY5"


def test_a_repeated_coupon_code_is_reported_once_whatever_its_case():
    fixture = load("coupons_one_excluded")
    fixture["excluded_coupons"] = []
    fixture["coupons"] += [{**fixture["coupons"][0], "id": 15, "code": "affiliate10"}, {**fixture["coupons"][1], "id": 16}]
    assert build(fixture)["discount_code"] == "AFFILIATE10,HOLIDAY5"


def test_coupon_codes_keep_their_order_and_drop_blanks_and_excluded_ones():
    coupons = [{"code": " SPRING "}, {"code": ""}, {"code": None}, {}, {"code": "Spring"}, {"code": "VIP"}, {"code": "staff"}]
    assert coupon_codes(coupons, ["STAFF"]) == ["SPRING", "VIP"]


def test_currency_falls_back_to_the_display_currency():
    fixture = load("multi_currency")
    del fixture["order"]["default_currency_code"]
    assert build(fixture)["currency_code"] == "CAD"


class TestCartId:
    def test_sources_in_order_of_trust(self):
        assert CART_ID_SOURCES == ("storefront", "cart_converted", "order")
        known = {"order": "order-cart", "cart_converted": "converted-cart", "storefront": "storefront-cart"}
        assert choose_cart_id(known, key=KEY, store_hash="abc123", order_id=5).value == "storefront-cart"
        del known["storefront"]
        assert choose_cart_id(known, key=KEY, store_hash="abc123", order_id=5).value == "converted-cart"
        del known["cart_converted"]
        chosen = choose_cart_id(known, key=KEY, store_hash="abc123", order_id=5)
        assert (chosen.value, chosen.source, chosen.note) == ("order-cart", "order", None)

    def test_blank_or_overlong_cart_ids_are_passed_over(self):
        known = {"storefront": "x" * 256, "cart_converted": "   ", "order": "real-cart"}
        assert choose_cart_id(known, key=KEY, store_hash="abc123", order_id=5).value == "real-cart"

    def test_fallback_when_no_cart_id_is_known(self):
        chosen = choose_cart_id({"order": ""}, key=KEY, store_hash="abc123", order_id=5)
        assert chosen.source == "fallback"
        assert chosen.note == NO_CART_ID_NOTE
        assert chosen.value == fallback_cart_id(KEY, "abc123", 5)

    @pytest.mark.parametrize("order_id", [1, 5, 10, 100, 250, 12345, 999999999])
    def test_fallback_is_long_stable_and_never_contains_the_order_id(self, order_id):
        value = fallback_cart_id(KEY, "abc123", order_id)
        assert 16 <= len(value) <= 255
        assert str(order_id) not in value
        assert value == fallback_cart_id(KEY, "abc123", order_id)

    def test_fallback_cannot_be_computed_without_the_secret(self):
        assert fallback_cart_id(KEY, "abc123", 5) != fallback_cart_id(b"another-secret-value-000000", "abc123", 5)
        assert fallback_cart_id(KEY, "abc123", 5) != fallback_cart_id(KEY, "abc123", 6)
        assert fallback_cart_id(KEY, "abc123", 5) != fallback_cart_id(KEY, "xyz789", 5)


def test_currency_is_left_out_when_bigcommerce_names_none():
    fixture = load("multi_currency")
    fixture["order"]["default_currency_code"] = None
    fixture["order"]["currency_code"] = "  "
    assert "currency_code" not in build(fixture)


@pytest.mark.parametrize("raw", ["\u200b SKU-1 \ufeff", "\ufeffSKU-1", " \u2060SKU-1\u200d\n"])
def test_invisible_characters_at_either_end_are_trimmed_like_spaces(raw):
    assert text(raw) == "SKU-1"
    assert text("\u200b \u200c") == ""
