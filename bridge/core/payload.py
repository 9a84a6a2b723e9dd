"""The Refersion paid-order payload, built from a BigCommerce order (SPEC section 4 step 3).

Pure functions. Money arrives as Decimal, is summed first and rounded last, half up,
to two places, and leaves as Decimal so the JSON encoder writes exact numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from bridge.core.rules import GIFT_CERTIFICATE

_SURROGATE = re.compile("[\ud800-\udfff]")
# Characters str.strip() keeps but nobody can see: zero-width spaces and joiners, the BOM.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
CENT = Decimal("0.01")
ZERO = Decimal("0")
MAX_CART_ID_LENGTH = 255

# Where a cart id came from, most trusted first.
CART_ID_SOURCES = ("storefront", "cart_converted", "order")
STOREFRONT_SOURCE = CART_ID_SOURCES[0]
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


def text(value) -> str:
    """A string from BigCommerce, trimmed; missing, null and odd values read as "".

    Lone surrogates (JSON may spell them) cannot be encoded: they become U+FFFD.
    """
    if not isinstance(value, str):
        return ""
    return _SURROGATE.sub("\ufffd", value).strip().strip(_INVISIBLE).strip()


def usable_cart_id(value: str | None) -> str | None:
    value = text(value)
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
        code = text(coupon.get("code"))
        if code and code.casefold() not in skip:
            skip.add(code.casefold())
            codes.append(code)
    return codes


def transaction_currency(order: Mapping) -> str:
    """The currency the shopper paid in, falling back to the display currency; "" when neither is known."""
    for key in ("default_currency_code", "currency_code"):
        if text(order.get(key)):
            return text(order.get(key))
    return ""


def line_sku(line: Mapping) -> str:
    """The line's sku, else ``product-{product_id}``, else (a custom line) ``line-{id}``."""
    sku = text(line.get("sku"))
    if sku:
        return sku
    return f"product-{line['product_id']}" if line.get("product_id") else f"line-{line['id']}"


def _item(line: Mapping) -> dict:
    item = {"sku": line_sku(line), "quantity": line["quantity"], "price": money(line["price_ex_tax"])}
    name = text(line.get("name"))
    if name:
        item["name"] = name
    return item


def reportable_lines(lines: Sequence[Mapping], *, report_gift_certificates: bool = False) -> list[Mapping]:
    """Product lines that are reported: not bundle children, quantity above zero, and gift
    certificates only when the merchant reports them."""
    return [
        line
        for line in lines
        if not line.get("parent_order_product_id")
        and (line.get("quantity") or 0) > 0
        and (report_gift_certificates or line.get("type") != GIFT_CERTIFICATE)
    ]


def reported_lines(lines: Sequence[Mapping], *, report_gift_certificates: bool = False) -> list[dict]:
    """What each reported item was, with its BigCommerce order-product id, so refunds can be
    mapped back to reported lines later. In the order of the payload's ``items``."""
    return [
        {"order_product_id": line["id"], **_item(line)}
        for line in reportable_lines(lines, report_gift_certificates=report_gift_certificates)
    ]


def _customer(order: Mapping) -> dict:
    billing = order.get("billing_address") or {}
    customer = {
        "first_name": text(billing.get("first_name")),
        "last_name": text(billing.get("last_name")),
        "email": text(billing.get("email")),
        "ip_address": text(order.get("ip_address")) or text(order.get("ip_address_v6")),
    }
    return {key: value for key, value in customer.items() if value}


def build_paid_order(
    order: Mapping,
    lines: Sequence[Mapping],
    coupons: Sequence[Mapping],
    *,
    cart_id: str,
    excluded_coupons: Iterable[str] = (),
    report_gift_certificates: bool = False,
) -> dict:
    """The body of Refersion's paid-order webhook for one order.

    :param order: normalised BigCommerce order (Decimal money, see ``bigcommerce.OrderSchema``).
    :param lines: its normalised product lines; :param coupons: its coupons.
    """
    payload = {
        "cart_id": cart_id,
        "order_id": str(order["id"]),
        "items": [_item(line) for line in reportable_lines(lines, report_gift_certificates=report_gift_certificates)],
        "shipping": money(order["shipping_cost_ex_tax"] + order["handling_cost_ex_tax"]),
        "tax": money(order["total_tax"]),
        # A negative discount_amount is a surcharge, not a discount: it counts as 0.
        "discount": money(max(order["coupon_discount"], ZERO) + max(order["discount_amount"], ZERO)),
    }
    currency = transaction_currency(order)
    if currency:  # left out rather than sent empty: Refersion then uses the account's currency
        payload["currency_code"] = currency
    codes = coupon_codes(coupons, excluded_coupons)
    if codes:
        payload["discount_code"] = ",".join(codes)
    customer = _customer(order)
    if customer:
        payload["customer"] = customer
    return payload


# What became of the cart id the storefront script reported for an order (SPEC section 4 step 3).
STOREFRONT_CONFIRMED = "Cart id confirmed by the storefront script."
STOREFRONT_MISMATCH = "The storefront reported a cart id that does not match the order's cart: ignored."
STOREFRONT_SILENT = "The storefront script did not report this order: check Script Manager."
STOREFRONT_LATE = "The storefront reported a cart id after the order's report was built: not used."
STOREFRONT_PENDING = "The storefront reported a cart id: it is checked against the order's cart when the order is reported."


@dataclass(frozen=True)
class StorefrontCheck:
    value: str | None  # the server-known cart id the claim confirmed; None when it confirmed none
    note: str


def check_storefront_claim(claim: str | None, known: Mapping[str, str | None]) -> StorefrontCheck:
    """Weigh the cart id the storefront posted for an order against the cart ids the server knows.

    The post is public and forgeable, so it counts only when it names one of the order's own
    carts (the order's ``cart_id`` or the converted cart): a UUID only the shopper's session
    knows. Then it picks which of them is reported; it can never bring in a new value.

    :param known: the server's cart ids by source (any ``storefront`` entry is not one of them).
    """
    claimed = usable_cart_id(claim)
    if claimed is None:
        return StorefrontCheck(None, STOREFRONT_SILENT)
    for source in CART_ID_SOURCES:
        value = usable_cart_id(known.get(source)) if source != STOREFRONT_SOURCE else None
        if value is not None and value.casefold() == claimed.casefold():
            return StorefrontCheck(value, STOREFRONT_CONFIRMED)
    return StorefrontCheck(None, STOREFRONT_MISMATCH)


def check_storefront_claims(claims: Sequence[str], known: Mapping[str, str | None]) -> StorefrontCheck:
    """Weigh every cart id the storefront posted for an order: the first that names one of the
    order's own carts is used, so forged posts beside the shopper's own cannot spoil it."""
    checks = [check_storefront_claim(claim, known) for claim in claims]
    return next((check for check in checks if check.value is not None), checks[-1] if checks else check_storefront_claim(None, known))
