"""Replaying what gave up: dead deliveries and events go back to the queue, paused stores resume.

One write path for the status page's retry button, ``POST /api/orders/<id>/replay`` and
``bridge replay``.
"""

from __future__ import annotations

from sqlite_utils import Database

from bridge.storage import inbox, outbox, pauses
from bridge.storage.db import rows


def replay(db: Database, *, now: float, store_hash: str | None = None, order_id: int | None = None) -> dict:
    """Re-queue dead work (of one store, one order, or all) and lift the pauses holding the order back.

    Call inside a transaction. Idempotent: a second call finds nothing dead or paused.
    Returns what was re-queued: ``{"deliveries": [...], "events": [...], "resumed": [store, service]...}``.
    """
    resumed = []
    if order_id is not None:
        # A paused order is held back by its store's pause: the operator says the keys work now.
        held = rows(
            db.execute(
                """
                SELECT DISTINCT p.store_hash, p.service FROM pauses p
                JOIN deliveries d ON d.store_hash = p.store_hash AND d.state IN ('pending', 'working')
                WHERE d.order_id = ? AND (? IS NULL OR d.store_hash = ?)
                """,
                [order_id, store_hash, store_hash],
            )
        )
        for pause in held:
            pauses.resume(db, store_hash=pause["store_hash"], service=pause["service"])
            resumed.append({"store_hash": pause["store_hash"], "service": pause["service"]})
    return {
        "deliveries": outbox.replay(db, store_hash=store_hash, order_id=order_id, now=now),
        "events": inbox.replay(db, store_hash=store_hash, order_id=order_id, now=now),
        "resumed": resumed,
    }
