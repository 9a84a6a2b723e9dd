"""The inbox: BigCommerce webhook events, stored once each and worked off by the worker."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlite_utils import Database

from bridge.core.hooks import APP_SCOPES, APP_UNINSTALLED, CART_CONVERTED, ORDER_SCOPES
from bridge.storage import stores
from bridge.storage.carts import link_cart
from bridge.storage.db import immediate, rows
from bridge.storage.queue import LEASES, PENDING, LeasedTable

log = logging.getLogger(__name__)

HANDLED_SCOPES = (*ORDER_SCOPES, CART_CONVERTED, *APP_SCOPES)
# Events the bridge writes itself for an order it found in BigCommerce's order list that no
# webhook brought (worker/reconcile.py). Never accepted from a sender: not in HANDLED_SCOPES.
RECONCILE, BACKFILL = "bridge/reconcile", "bridge/backfill"
RECOVERED_SCOPES = (RECONCILE, BACKFILL)
EVALUATED_SCOPES = (*ORDER_SCOPES, *RECOVERED_SCOPES)  # the events the worker evaluates together

DONE, IGNORED, DEFERRED = "done", "ignored", "deferred"

events = LeasedTable("events", services=("bigcommerce",))


@dataclass(frozen=True)
class Envelope:
    """A validated BigCommerce callback."""

    scope: str
    store_hash: str
    data: dict = field(repr=False)
    hash: str | None = None
    created_at: int | None = None
    order_id: int | None = None
    cart_id: str | None = None
    refund_id: int | None = None  # store/order/refund/created only; kept in the body, not a column
    # Stands in for created_at when a sender left it out (see dedupe_key).
    nonce: str = field(default_factory=lambda: secrets.token_hex(8), repr=False)

    @property
    def content_hash(self) -> str:
        """BigCommerce's ``hash`` of ``data``, or our own when a sender left it out."""
        if self.hash:
            return self.hash
        canonical = json.dumps(self.data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canonical.encode()).hexdigest()

    @property
    def dedupe_key(self) -> str:
        """Scope, hash and created_at together identify an event.

        ``hash`` covers only ``data``: two distinct events (two store/order/updated for
        one order) share it. Without ``created_at`` a re-delivery cannot be told from a
        new event, so such an event is never taken for a duplicate: evaluating an order
        twice is harmless (the outbox key stops a second report), losing an event is not.
        """
        created = str(self.created_at) if self.created_at is not None else f"none-{self.nonce}"
        return f"{self.store_hash}|{self.scope}|{self.content_hash}|{created}"


def _initial_state(envelope: Envelope, known_store: bool, app_install: bool) -> tuple[str, str | None, str | None]:
    if not known_store:
        return IGNORED, "unknown_store", f"The bridge has no credentials for store {envelope.store_hash}."
    if envelope.scope in ORDER_SCOPES:
        return PENDING, None, None
    if envelope.scope == CART_CONVERTED:
        return DONE, "cart_linked", f"Cart {envelope.cart_id} became order #{envelope.order_id}."
    if envelope.scope == APP_UNINSTALLED:
        if app_install:
            return DONE, "uninstalled", UNINSTALLED_NOTE
        return IGNORED, "not_app_install", "The store is served with the store-level API account in the config: nothing to uninstall."
    return IGNORED, "scope_not_handled", f"The bridge does not act on {envelope.scope} events."


UNINSTALLED_NOTE = "The app was uninstalled: its access token and users were deleted; its queued work is kept, held until a re-install."


def record_event(db: Database, envelope: Envelope, body: str, *, known_store: bool, now: float, app_install: bool = False) -> int | None:
    """Store a received event durably, in a transaction of its own; returns its id, or None for a re-delivery."""
    with immediate(db):
        return insert_event(db, envelope, body, known_store=known_store, now=now, app_install=app_install)


def insert_event(db: Database, envelope: Envelope, body: str, *, known_store: bool, now: float, app_install: bool = False) -> int | None:
    """Store a received event (call in a transaction); returns its id, or None for a re-delivery.

    ``app_install``: the store is served as an app install, so a ``store/app/uninstalled``
    event uninstalls it, in the same transaction.
    """
    state, outcome, note = _initial_state(envelope, known_store, app_install)
    uninstalls = envelope.scope == APP_UNINSTALLED and state == DONE
    if uninstalls and _before_install(db, envelope):
        # BigCommerce retries an undelivered event for two days: an uninstall that
        # happened before the store installed the app again must not undo that install.
        state, outcome, note = IGNORED, "stale_uninstall", "The store installed the app again after this uninstall."
        uninstalls = False
    inserted = rows(
        db.execute(
            """
            INSERT INTO events (dedupe_key, store_hash, scope, hash, event_created_at, order_id, body,
                                received_at, state, due_at, outcome, note, finished_at)
            VALUES (:key, :store, :scope, :hash, :created, :order, :body, :now, :state, :now, :outcome, :note, :finished)
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id
            """,
            {
                "key": envelope.dedupe_key,
                "store": envelope.store_hash,
                "scope": envelope.scope,
                "hash": envelope.content_hash,
                "created": envelope.created_at,
                "order": envelope.order_id,
                "body": body,
                "now": now,
                "state": state,
                "outcome": outcome,
                "note": note,
                "finished": None if state == PENDING else now,
            },
        )
    )
    if not inserted:
        return None
    if envelope.scope == CART_CONVERTED and known_store:
        link_cart(
            db, store_hash=envelope.store_hash, order_id=envelope.order_id, source="cart_converted", cart_id=envelope.cart_id, now=now
        )
    if uninstalls:
        stores.uninstall(db, store_hash=envelope.store_hash, now=now)
        log.info("Store %s uninstalled the app: its access token and users are deleted, its queued work held", envelope.store_hash)
    elif outcome == "stale_uninstall":
        log.info("Ignored an uninstall of store %s older than its latest install", envelope.store_hash)
    return inserted[0]["id"]


def _before_install(db: Database, envelope: Envelope) -> bool:
    installed_at = stores.installed_at(db, envelope.store_hash)
    return envelope.created_at is not None and installed_at is not None and envelope.created_at < installed_at


def record_recovered(db: Database, *, store_hash: str, order_id: int, date_modified: str, scope: str, now: float) -> int | None:
    """Queue an evaluation of an order found by reconcile or backfill; its id, or None when this
    version of the order (``date_modified``) was queued so already, by either (call in a transaction)."""
    if scope not in RECOVERED_SCOPES:
        raise ValueError(f"not a recovery scope: {scope}")
    data = {"type": "order", "id": order_id, "date_modified": date_modified}
    body = json.dumps({"scope": scope, "producer": f"stores/{store_hash}", "data": data}, separators=(",", ":"))
    inserted = rows(
        db.execute(
            """
            INSERT INTO events (dedupe_key, store_hash, scope, hash, order_id, body, received_at, state, due_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id
            """,
            [
                f"{store_hash}|recovered|{order_id}|{date_modified}",
                store_hash,
                scope,
                hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest(),
                order_id,
                body,
                now,
                PENDING,
                now,
            ],
        )
    )
    return inserted[0]["id"] if inserted else None


def open_order_events(db: Database, *, store_hash: str, order_id: int) -> int:
    """How many of the order's events wait to be evaluated (pending or being worked on)."""
    marks = ", ".join("?" for _ in EVALUATED_SCOPES)
    return db.execute(
        f"SELECT count(*) FROM events WHERE store_hash = ? AND order_id = ? AND state IN ('pending', 'working') AND scope IN ({marks})",
        [store_hash, order_id, *EVALUATED_SCOPES],
    ).fetchone()[0]


def claim_order_events(
    db: Database,
    *,
    owner: str,
    now: float,
    lease: float = LEASES.lease_seconds,
    skip_stores: Collection[str] = (),
    skip_orders: Collection[tuple[str, int]] = (),
) -> list[dict]:
    """Claim the next due order event together with every other pending event for the same order.

    The worker reads the order's current state once for all of them: three webhooks
    fired by one checkout cost one round of BigCommerce calls, not three.
    """
    with immediate(db):
        first = events.claim(db, owner=owner, now=now, lease=lease, skip_stores=skip_stores, skip_orders=skip_orders)
        if first is None:
            return []
        scopes = ", ".join(f"'{scope}'" for scope in EVALUATED_SCOPES)
        siblings = events.claim_pending(
            db,
            owner=owner,
            now=now,
            lease=lease,
            where=f"store_hash = :store AND order_id = :order AND id != :id AND scope IN ({scopes})",
            params={"store": first["store_hash"], "order": first["order_id"], "id": first["id"]},
        )
    return [first, *siblings]


def replay(db: Database, *, store_hash: str | None = None, order_id: int | None = None, now: float) -> list[dict]:
    """Queue dead events (BigCommerce unreadable for days) again, with fresh attempts (call in a transaction)."""
    return events.requeue_dead(db, now=now, store_hash=store_hash, order_id=order_id, finished_at=None)


def release_deferred(db: Database, *, store_hash: str, order_id: int, now: float, outcome: str, note: str) -> int:
    """Put the order's deferred events back in the queue, due now (call in a transaction); how many."""
    marks = ", ".join("?" for _ in EVALUATED_SCOPES)
    return db.execute(
        f"""
        UPDATE events SET state = ?, due_at = ?, outcome = ?, note = ?, last_error = NULL, finished_at = NULL
        WHERE store_hash = ? AND order_id = ? AND state = ? AND scope IN ({marks})
        """,
        [PENDING, now, outcome, note, store_hash, order_id, DEFERRED, *EVALUATED_SCOPES],
    ).rowcount
