"""The ``data`` of each BigCommerce callback scope the bridge handles: one schema per scope.

Each schema loads ``data`` into the ``Envelope`` fields it carries (``order_id``,
``cart_id``, ``refund_id``). Liberal: ids may be numbers or strings of digits ("250"),
unknown keys are ignored, ``type`` is not checked, and what the worker re-fetches anyway
(``status``, the refund) may be missing.
"""

from __future__ import annotations

import re

from marshmallow import ValidationError, fields, post_load, validate

from bridge.schemas import Lenient

MAX_ID = 2**63 - 1  # what SQLite's INTEGER holds


class WholeNumber(fields.Field):
    """An integer, also when spelled as a string of ASCII digits; never a bool or a float."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[0-9]{1,19}", value):
            return int(value)
        raise ValidationError("Not a valid integer.")


class Id(WholeNumber):
    """A BigCommerce id: a whole number from 1 up."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Range(min=1, max=MAX_ID), **kwargs)


class OrderData(Lenient):
    """``store/order/created`` and ``store/order/updated``: ``{type: "order", id}``."""

    order_id = Id(data_key="id", required=True)


class StatusChange(Lenient):
    previous_status_id = WholeNumber(load_default=None, allow_none=True, validate=validate.Range(min=0, max=MAX_ID))
    new_status_id = WholeNumber(load_default=None, allow_none=True, validate=validate.Range(min=0, max=MAX_ID))


class StatusUpdatedData(OrderData):
    """``store/order/statusUpdated``: ``{type, id, status: {previous_status_id, new_status_id}}``."""

    status = fields.Nested(StatusChange, load_default=None, allow_none=True)


class Refund(Lenient):
    refund_id = Id(load_default=None, allow_none=True)


class RefundCreatedData(OrderData):
    """``store/order/refund/created``: ``{type, id, refund: {refund_id}}``.

    Without a refund id the event is still kept (``refund_id`` None): the refunds are
    re-read from the order, and dropping the event would lose that the order changed.
    """

    refund = fields.Nested(Refund, load_default=None, allow_none=True)

    @post_load
    def _refund_id(self, data, **kwargs):
        data["refund_id"] = (data.pop("refund") or {}).get("refund_id")
        return data


class CartConvertedData(Lenient):
    """``store/cart/converted``: ``{type: "cart", id: <cart uuid>, orderId}``."""

    cart_id = fields.String(data_key="id", required=True, validate=validate.Length(min=1, max=255))
    order_id = Id(data_key="orderId", required=True)


class StoreData(Lenient):
    """``store/app/uninstalled``: ``{type: "store"}``; the store is the envelope's producer."""


DATA_SCHEMAS: dict[str, type[Lenient]] = {
    "store/order/created": OrderData,
    "store/order/updated": OrderData,
    "store/order/statusUpdated": StatusUpdatedData,
    "store/order/refund/created": RefundCreatedData,
    "store/cart/converted": CartConvertedData,
    "store/app/uninstalled": StoreData,
}


_BUILT = {scope: schema() for scope, schema in DATA_SCHEMAS.items()}  # built once, reused by every request


def load_data(scope: str, data: dict) -> dict:
    """The Envelope fields in ``data`` for a handled scope; {} for any other (its data is not read)."""
    schema = _BUILT.get(scope)
    return schema.load(data) if schema else {}
