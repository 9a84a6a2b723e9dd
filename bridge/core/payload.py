"""The Refersion paid-order payload, built from a BigCommerce order (SPEC section 4 step 3).

Pure functions. Money arrives as Decimal, is summed first and rounded last, half up,
to two places, and leaves as Decimal so the JSON encoder writes exact numbers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
MAX_CART_ID_LENGTH = 255

# Where a cart id came from, most trusted first.
CART_ID_SOURCES = ("storefront", "cart_converted", "order")
FALLBACK_SOURCE = "fallback"
NO_CART_ID_NOTE = "No cart id: only coupon attribution can credit an affiliate."


def money(amount: Decimal) -> Decimal:
    """Round a money amount half up to cents."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class CartId:
    value: str
    source: str

    @property
    def note(self) -> str | None:
        return NO_CART_ID_NOTE if self.source == FALLBACK_SOURCE else None


def usable_cart_id(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if 0 < len(value) <= MAX_CART_ID_LENGTH else None


def choose_cart_id(known: Mapping[str, str | None], *, key: bytes, store_hash: str, order_id: int) -> CartId:
    """The cart id to report: the best known one, else an unguessable fallback.

    :param known: candidate cart ids by source (see ``CART_ID_SOURCES``).
    :param key: the server secret the fallback is derived from.
    """
    for source in CART_ID_SOURCES:
        value = usable_cart_id(known.get(source))
        if value:
            return CartId(value, source)
    return CartId(fallback_cart_id(key, store_hash, order_id), FALLBACK_SOURCE)


def fallback_cart_id(key: bytes, store_hash: str, order_id: int) -> str:
    """An unguessable, stable cart id for an order whose real cart id is unknown.

    HMAC-SHA256 keyed with a server secret, so nobody can compute (and pre-claim) the
    value of a future order. Spelled in the letters a-p only, so it can never contain
    the (numeric) order id; 32 letters carry 128 bits.
    """
    digest = hmac.new(key, f"refersion-cart-id\x00{store_hash}\x00{order_id}".encode(), hashlib.sha256).digest()
    letters = "".join(chr(ord("a") + (byte >> 4)) + chr(ord("a") + (byte & 15)) for byte in digest[:16])
    return f"bcnocart-{letters}"


def coupon_codes(coupons: Iterable[Mapping], excluded: Iterable[str]) -> list[str]:
    """The order's coupon codes in order, without excluded or repeated ones (case-insensitive)."""
    skip = {code.casefold() for code in excluded}
    codes: list[str] = []
    for coupon in coupons:
        code = (coupon.get("code") or "").strip()
        if code and code.casefold() not in skip:
            skip.add(code.casefold())
            codes.append(code)
    return codes


def _item(line: Mapping) -> dict:
    item = {
        "sku": line["sku"].strip() or f"product-{line['product_id']}",
        "quantity": line["quantity"],
        "price": money(line["price_ex_tax"]),
    }
    if line["name"].strip():
        item["name"] = line["name"].strip()
    return item


def reportable_lines(lines: Sequence[Mapping]) -> list[Mapping]:
    """Product lines that are reported: not bundle children, quantity above zero."""
    return [line for line in lines if not line["parent_order_product_id"] and line["quantity"] > 0]


def _customer(order: Mapping) -> dict:
    billing = order["billing_address"]
    customer = {
        "first_name": billing["first_name"].strip(),
        "last_name": billing["last_name"].strip(),
        "email": billing["email"].strip(),
        "ip_address": (order["ip_address"] or order["ip_address_v6"]).strip(),
    }
    return {key: value for key, value in customer.items() if value}


def build_paid_order(
    order: Mapping, lines: Sequence[Mapping], coupons: Sequence[Mapping], *, cart_id: str, excluded_coupons: Iterable[str] = ()
) -> dict:
    """The body of Refersion's paid-order webhook for one order.

    :param order: normalised BigCommerce order (Decimal money, see ``bigcommerce.OrderSchema``).
    :param lines: its normalised product lines; :param coupons: its coupons.
    """
    payload = {
        "cart_id": cart_id,
        "order_id": str(order["id"]),
        "currency_code": order["default_currency_code"] or order["currency_code"],
        "items": [_item(line) for line in reportable_lines(lines)],
        "shipping": money(order["shipping_cost_ex_tax"] + order["handling_cost_ex_tax"]),
        "tax": money(order["total_tax"]),
        "discount": money(order["coupon_discount"] + order["discount_amount"]),
    }
    codes = coupon_codes(coupons, excluded_coupons)
    if codes:
        payload["discount_code"] = ",".join(codes)
    customer = _customer(order)
    if customer:
        payload["customer"] = customer
    return payload
