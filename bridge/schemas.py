"""marshmallow building blocks shared by every boundary (webhooks in, API answers in)."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema


class Lenient(Schema):
    """Reads what it knows and ignores the rest: senders add fields without notice."""

    class Meta:
        unknown = EXCLUDE
