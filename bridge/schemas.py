"""marshmallow building blocks shared by every boundary (webhooks in, API answers in)."""

from __future__ import annotations

import re

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate


class Lenient(Schema):
    """Reads what it knows and ignores the rest: senders add fields without notice."""

    class Meta:
        unknown = EXCLUDE


MAX_ORDER_ID = 2**63 - 1  # SQLite's integer range
_DIGITS = re.compile(r"[0-9]{1,19}")
ORDER_ID_ERROR = "An order number is digits only, from 1 to 9223372036854775807, as in 1042."
STORE_HASH = validate.Regexp(r"\A[A-Za-z0-9]{1,64}\Z", error="A store hash is letters and digits only (at most 64), as in stores/abc123.")


class OrderId(fields.Field):
    """An order number typed by a person or put in a URL: ASCII digits only, 1..2^63-1."""

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        if not isinstance(value, str) or not _DIGITS.fullmatch(value) or not 1 <= int(value) <= MAX_ORDER_ID:
            raise ValidationError(ORDER_ID_ERROR)
        return int(value)


class OrderQuery(Lenient):
    """An order id (from the path) and an optional ``store`` (from the query string)."""

    order = OrderId(required=True)
    store = fields.String(load_default=None, validate=STORE_HASH)
