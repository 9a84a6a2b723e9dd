"""Refersion's outbound webhooks: each verified event stored once per deployment, whichever store
the URL names (the signature does not cover the URL), and a coupon trigger's push queued in the
same transaction (one write path: events here, deliveries in outbox).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlite_utils import Database

from bridge.storage import outbox
from bridge.storage.db import immediate, rows

QUEUED, IGNORED = "queued", "ignored"
REFERSION_TRIGGER, TERMINAL = "refersion trigger", "bridge coupons push"  # where a push was asked for


@dataclass(frozen=True)
class Trigger:
    """A conversion trigger as Refersion's webhook names it (``{id, affiliate_id, trigger, type}``)."""

    trigger_id: str
    affiliate_id: str | None
    trigger: str
    type: str  # COUPON, SKU or EMAIL


def coupon_payload(code: str, *, source: str, trigger_id: str | None = None, affiliate_id: str | None = None) -> str:
    """The body of a coupon delivery: the code, and where the request came from."""
    return json.dumps({"code": code, "source": source, "trigger_id": trigger_id, "affiliate_id": affiliate_id}, separators=(",", ":"))


def record(
    db: Database,
    *,
    store_hash: str,
    topic: str,
    body: bytes,
    body_sha256: str,
    trigger: Trigger | None,
    ignored_because: str | None,
    now: float,
) -> dict:
    """Store one verified event and, unless ``ignored_because``, queue its code's push; in one transaction.

    Returns ``{"stored": bool, "outcome", "note", "delivery_key"}``; ``stored`` is False for a
    replay (the same body, or the same trigger id, already stored, for this store or another).
    """
    key = outbox.coupon_key(store_hash, trigger.trigger) if trigger is not None and ignored_because is None else None
    outcome = IGNORED if key is None else QUEUED
    with immediate(db):
        inserted = rows(
            db.execute(
                """
                INSERT INTO refersion_events (store_hash, topic, body_sha256, trigger_id, trigger_type, trigger, affiliate_id,
                                              body, outcome, note, delivery_key, received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT DO NOTHING
                RETURNING id
                """,
                [
                    store_hash,
                    topic,
                    body_sha256,
                    trigger.trigger_id if trigger else None,
                    trigger.type if trigger else None,
                    trigger.trigger if trigger else None,
                    trigger.affiliate_id if trigger else None,
                    body.decode("utf-8") if trigger else None,
                    outcome,
                    ignored_because,
                    key,
                    now,
                ],
            )
        )
        if inserted and key is not None:
            outbox.enqueue(
                db,
                key=key,
                kind=outbox.COUPON,
                store_hash=store_hash,
                order_id=None,
                payload=coupon_payload(
                    trigger.trigger, source=REFERSION_TRIGGER, trigger_id=trigger.trigger_id, affiliate_id=trigger.affiliate_id
                ),
                now=now,
            )
    return {"stored": bool(inserted), "outcome": outcome, "note": ignored_because, "delivery_key": key}
