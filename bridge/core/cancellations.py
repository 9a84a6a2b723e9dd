"""Which reported items a refund or a cancellation takes back in Refersion (SPEC 4 step 5). Pure.

The paid report kept every reported item with its BigCommerce order-product id
(``payload.reported_lines``). A refund names order-product ids and quantities; each maps
back to the item reported for it, capped at what earlier cancellations left, so the
cancellations of an order never take back more of a line than was reported, whatever
the order and number of refunds. Lines that were never reported (gift certificates,
bundle children) map to nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from bridge.core.payload import money

PRODUCT = "PRODUCT"
# What a refund can return besides products, in a merchant's words.
REFUNDED_WORDS = {
    "SHIPPING": "shipping",
    "HANDLING": "handling",
    "ORDER": "an amount of the order",
    "GIFT_WRAPPING": "gift wrapping",
    "FEE": "a fee",
}
WHOLE_ORDER = "order"  # the key suffix of the cancellation of whatever no refund took back

# Outcome codes of a cancellation with nothing to send.
NO_PRODUCTS, LINES_NOT_REPORTED, NOTHING_LEFT = "no_products_refunded", "lines_not_reported", "nothing_left_to_cancel"


@dataclass(frozen=True)
class Line:
    """One reported item: what Refersion was told about an order-product line."""

    order_product_id: int
    sku: str
    price: Decimal
    quantity: int


@dataclass(frozen=True)
class Plan:
    """What one refund (or the whole order) cancels: ``lines`` to send, else why nothing is sent."""

    label: str  # "Refund 7" or "The order"
    lines: tuple[Line, ...]
    code: str | None = None  # set when ``lines`` is empty
    text: str = ""
    taken: dict[int, int] = field(default_factory=dict)  # every quantity cancelled once this plan is sent
    full: bool = False  # once sent, every reported item of the order is cancelled

    @property
    def sends(self) -> bool:
        return bool(self.lines)

    def body(self, order_id: int) -> dict:
        """The body of ``conversion/cancel``: the order id and each item as it was reported."""
        return {
            "order_id": str(order_id),
            "items": [{"sku": line.sku, "price": line.price, "quantity": line.quantity} for line in self.lines],
        }

    def meta(self, refund_id: int | str) -> dict:
        """What the outbox keeps besides the body: the refund and the order-product id of each item."""
        return {
            "refund_id": refund_id,
            "lines": [
                {"order_product_id": line.order_product_id, "sku": line.sku, "price": line.price, "quantity": line.quantity}
                for line in self.lines
            ],
            "full": self.full,
        }


def reported(items: Iterable[Mapping] | None) -> list[Line]:
    """The reported items from a paid report's ``meta["items"]`` (None: nothing known)."""
    return [
        Line(int(item["order_product_id"]), str(item["sku"]), money(Decimal(str(item["price"]))), int(item["quantity"]))
        for item in items or ()
        if int(item.get("quantity") or 0) > 0
    ]


def taken(cancelled: Iterable[Iterable[Mapping]]) -> dict[int, int]:
    """Quantities already cancelled per order-product id, from earlier cancellations' ``meta["lines"]``."""
    total: dict[int, int] = {}
    for lines in cancelled:
        for line in lines or ():
            key = int(line["order_product_id"])
            total[key] = total.get(key, 0) + int(line["quantity"])
    return total


def refunded_products(items: Iterable[Mapping]) -> dict[int, int]:
    """A refund's PRODUCT items as quantities per order-product id (other item types return no product)."""
    wanted: dict[int, int] = {}
    for item in items:
        if item.get("item_type") != PRODUCT or item.get("item_id") is None:
            continue
        quantity = int(item.get("quantity") or 0)
        if quantity > 0:
            wanted[int(item["item_id"])] = wanted.get(int(item["item_id"]), 0) + quantity
    return wanted


def _left(line: Line, already: Mapping[int, int]) -> int:
    return max(0, line.quantity - already.get(line.order_product_id, 0))


def _cancel(lines: Sequence[Line], already: Mapping[int, int], wanted: Mapping[int, int] | None) -> tuple[tuple[Line, ...], dict[int, int]]:
    """The lines to cancel (each capped at what is left of it) and the quantities taken afterwards.

    ``wanted`` None: everything still uncancelled.
    """
    after = dict(already)
    chosen = []
    for line in lines:
        asked = _left(line, after) if wanted is None else wanted.get(line.order_product_id, 0)
        quantity = min(asked, _left(line, after))
        if quantity > 0:
            chosen.append(Line(line.order_product_id, line.sku, line.price, quantity))
            after[line.order_product_id] = after.get(line.order_product_id, 0) + quantity
    return tuple(chosen), after


def _all_taken(lines: Sequence[Line], after: Mapping[int, int]) -> bool:
    return bool(lines) and all(_left(line, after) == 0 for line in lines)


def items_words(lines: Iterable[Line]) -> str:
    """``2 × SKU-A, 1 × SKU-B``."""
    return ", ".join(f"{line.quantity} × {line.sku}" for line in lines)


def for_refund(refund_id: int, refund_items: Iterable[Mapping], lines: Sequence[Line], already: Mapping[int, int]) -> Plan:
    """What one BigCommerce refund cancels, given the reported ``lines`` and what was cancelled ``already``."""
    refund_items = list(refund_items)
    label = f"Refund {refund_id}"
    wanted = refunded_products(refund_items)
    if not wanted:
        kinds = [REFUNDED_WORDS.get(item.get("item_type"), "") for item in refund_items]
        kinds = list(dict.fromkeys(kind for kind in kinds if kind)) or ["no product"]
        text = f"{label} returned {' and '.join(kinds)} only, no product: nothing is cancelled in Refersion."
        return Plan(label, (), NO_PRODUCTS, text, dict(already), _all_taken(lines, already))
    chosen, after = _cancel(lines, already, wanted)
    if chosen:
        text = f"{label} cancels {items_words(chosen)} in Refersion."
        return Plan(label, chosen, None, text, after, _all_taken(lines, after))
    reported_ids = {line.order_product_id for line in lines}
    if not reported_ids & set(wanted):
        text = (
            f"{label} is for lines that were not reported to Refersion (gift certificates or parts of a bundle): nothing to cancel there."
        )
        return Plan(label, (), LINES_NOT_REPORTED, text, dict(already), _all_taken(lines, already))
    text = f"{label}: its products were already cancelled in Refersion by earlier refunds; nothing more to cancel."
    return Plan(label, (), NOTHING_LEFT, text, dict(already), _all_taken(lines, already))


def for_whole_order(status_word: str, lines: Sequence[Line], already: Mapping[int, int]) -> Plan:
    """What a full refund or a cancellation of the order cancels: everything not cancelled yet."""
    label = "The order"
    chosen, after = _cancel(lines, already, None)
    if chosen:
        text = f"The order was {status_word}: {items_words(chosen)} not yet cancelled by a refund are cancelled in Refersion."
        return Plan(label, chosen, None, text, after, True)
    text = f"The order was {status_word}: every reported item was already cancelled in Refersion by its refunds."
    return Plan(label, (), NOTHING_LEFT, text, dict(already), _all_taken(lines, already))
