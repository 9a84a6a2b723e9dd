"""Customer data retention: what the purge removes, and the SQL that removes it.

After ``database.retention_days`` counted from when the bridge received a row (an event's
``received_at``, a delivery's ``created_at``), and only once the row is settled (never
``pending`` or ``working``: the worker still needs those), customer data is removed:

- ``events.body`` is cut down to the envelope and the ids the bridge reads (order, cart,
  refund, status ids); everything else the sender put in ``data`` goes;
- ``deliveries.payload`` loses its ``customer`` (and any other key naming a person or an
  address); items, amounts, order id, cart id, currency and discount code stay, so the
  row still says exactly what was reported;
- Refersion's answers (``deliveries.response``) are kept, but the customer's own values
  are taken out of them, and out of ``last_error``, should Refersion have echoed them;
- every other text the sender chose (an event's ``scope``, ``note``, ``last_error``) loses
  email and IP addresses.

A purged row gets ``purged_at``, so each row is purged once. ``decisions``, ``orders``,
``cart_links`` hold no customer data and are kept. Stores that uninstalled the app more than
``retention_days`` ago lose their whole history (events, deliveries, decisions, orders,
cart links, holds, pauses, chores) and their installing user's email; their settings row
stays for a re-install.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import simplejson
from sqlite_utils import Database

from bridge.core.personal import mask_personal, remove_values
from bridge.storage.db import immediate, rows
from bridge.storage.queue import PENDING, WORKING

DAY = 86_400.0
BATCH = 500  # rows per transaction: the write lock is never held long enough to make a webhook wait
UNSETTLED = (PENDING, WORKING)
# Keys of a report that name or locate a person, wherever they nest.
PERSONAL_KEYS = frozenset(
    {
        "customer", "email", "first_name", "last_name", "phone", "company", "ip_address", "ip_address_v6",
        "billing_address", "shipping_address", "shipping_addresses", "address", "street_1", "street_2",
    }
)  # fmt: skip
PAID_REPORT_KEYS = ("cart_id", "order_id", "items", "shipping", "tax", "discount", "currency_code", "discount_code")
STORE_TABLES = ("events", "deliveries", "decisions", "orders", "cart_links", "holds", "pauses", "chores", "hook_checks", "incidents")
_DIGITS = re.compile(r"[0-9]{1,19}")
_CART_ID = re.compile(r"[0-9A-Fa-f-]{1,64}")  # BigCommerce cart ids are UUIDs
_PRODUCER = re.compile(r"stores/[A-Za-z0-9]{1,64}")
_TYPE = re.compile(r"[a-z_]{1,32}")


@dataclass
class StoreFigures:
    """What a purge removes (or would remove) for one store."""

    store_hash: str
    events: int = 0
    payloads: int = 0
    oldest_kept: float | None = None  # received_at of the oldest row that keeps its customer data
    deleted: dict[str, int] = field(default_factory=dict)  # rows deleted per table (uninstalled stores)


def cutoff(now: float, retention_days: int) -> float:
    return now - retention_days * DAY


def _store(figures: dict[str, StoreFigures], store_hash: str) -> StoreFigures:
    return figures.setdefault(store_hash, StoreFigures(store_hash))


def _expired_uninstalls(db: Database, before: float) -> list[str]:
    return [
        row["store_hash"]
        for row in rows(
            db.execute(
                "SELECT store_hash FROM stores WHERE uninstalled_at IS NOT NULL AND uninstalled_at < ? ORDER BY store_hash", [before]
            )
        )
    ]


def plan(db: Database, *, now: float, retention_days: int) -> list[StoreFigures]:
    """What :func:`purge` would do now, per store; changes nothing."""
    before = cutoff(now, retention_days)
    figures: dict[str, StoreFigures] = {}
    gone = _expired_uninstalls(db, before)
    for store_hash in gone:
        entry = _store(figures, store_hash)
        for table in STORE_TABLES:
            count = db.execute(f"SELECT count(*) FROM {table} WHERE store_hash = ?", [store_hash]).fetchone()[0]
            if count:
                entry.deleted[table] = count
    marks = ", ".join("?" for _ in gone) or "''"
    for table, column, attr in (("events", "received_at", "events"), ("deliveries", "created_at", "payloads")):
        for row in rows(
            db.execute(
                f"""
                SELECT store_hash, count(*) FILTER (WHERE {column} < ? AND state NOT IN (?, ?)) AS due,
                       min({column}) FILTER (WHERE NOT ({column} < ? AND state NOT IN (?, ?))) AS oldest_kept
                FROM {table} WHERE purged_at IS NULL AND store_hash NOT IN ({marks}) GROUP BY store_hash
                """,
                [before, *UNSETTLED, before, *UNSETTLED, *gone],
            )
        ):
            entry = _store(figures, row["store_hash"])
            setattr(entry, attr, getattr(entry, attr) + row["due"])
            if row["oldest_kept"] is not None:
                entry.oldest_kept = min(entry.oldest_kept or row["oldest_kept"], row["oldest_kept"])
    return [figures[store_hash] for store_hash in sorted(figures)]


def purge(db: Database, *, now: float, retention_days: int, batch: int = BATCH, budget_seconds: float | None = None) -> list[StoreFigures]:
    """Remove customer data past retention and the history of long-uninstalled stores; returns what was done.

    Runs in transactions of at most ``batch`` rows; idempotent (purged rows are marked, deleted rows are gone).
    With ``budget_seconds`` it stops after about that long (``left_to_purge`` then says so): the
    worker's other work goes on between runs.
    """
    before = cutoff(now, retention_days)
    figures: dict[str, StoreFigures] = {}
    deadline = time.monotonic() + budget_seconds if budget_seconds is not None else None

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    for store_hash in _expired_uninstalls(db, before):
        if out_of_time():
            break
        entry = _store(figures, store_hash)
        for table in STORE_TABLES:
            while not out_of_time():
                with immediate(db):
                    deleted = db.execute(
                        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE store_hash = ? LIMIT ?)", [store_hash, batch]
                    ).rowcount
                if deleted:
                    entry.deleted[table] = entry.deleted.get(table, 0) + deleted
                if deleted < batch:
                    break
        with immediate(db):
            db.execute("UPDATE stores SET installed_by = NULL WHERE store_hash = ?", [store_hash])
    while not out_of_time():
        with immediate(db):
            found = _due(db, "events", "received_at", before, batch)
            for row in found:
                scope = mask_personal(row["scope"])
                db.execute(
                    "UPDATE events SET body = ?, scope = ?, note = ?, last_error = ?, purged_at = ? WHERE id = ?",
                    [slim_event_body(row["body"]), scope, mask_personal(row["note"]), mask_personal(row["last_error"]), now, row["id"]],
                )
                _store(figures, row["store_hash"]).events += 1
        if len(found) < batch:
            break
    while not out_of_time():
        with immediate(db):
            found = _due(db, "deliveries", "created_at", before, batch)
            for row in found:
                payload, known = slim_payload(row["payload"], row["kind"])
                db.execute(
                    "UPDATE deliveries SET payload = ?, response = ?, last_error = ?, purged_at = ? WHERE id = ?",
                    [payload, remove_values(row["response"], known), remove_values(row["last_error"], known), now, row["id"]],
                )
                _store(figures, row["store_hash"]).payloads += 1
        if len(found) < batch:
            break
    if figures:
        # The WAL still holds the pages as they were before: copy them back and empty it (best
        # effort: a reader in the way leaves it to the next purge or the next checkpoint).
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for left in plan(db, now=now, retention_days=retention_days):
        if left.store_hash in figures:
            figures[left.store_hash].oldest_kept = left.oldest_kept
    return [figures[store_hash] for store_hash in sorted(figures)]


def left_to_purge(db: Database, *, now: float, retention_days: int) -> bool:
    """Whether a purge now would still find something to do."""
    before = cutoff(now, retention_days)
    return bool(
        _expired_uninstalls(db, before) or _due(db, "events", "received_at", before, 1) or _due(db, "deliveries", "created_at", before, 1)
    )


def _due(db: Database, table: str, column: str, before: float, limit: int) -> list[dict]:
    return rows(
        db.execute(
            f"SELECT * FROM {table} WHERE purged_at IS NULL AND {column} < ? AND state NOT IN (?, ?) ORDER BY {column} LIMIT ?",
            [before, *UNSETTLED, limit],
        )
    )


# --- rewriting one row's text ----------------------------------------------------------------


def _loads(text: str):
    try:
        return simplejson.loads(text, use_decimal=True)
    except (ValueError, TypeError):
        return None


def _dumps(value) -> str:
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"), ensure_ascii=False)


def _whole_number(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and _DIGITS.fullmatch(value) is not None)


def _slim_data(data) -> dict:
    """The ids of a webhook's ``data`` the bridge reads (order, cart, refund, status); nothing else."""
    if not isinstance(data, dict):
        return {}
    kept = {}
    if isinstance(data.get("type"), str) and _TYPE.fullmatch(data["type"]):
        kept["type"] = data["type"]
    value = data.get("id")
    if _whole_number(value) or (isinstance(value, str) and _CART_ID.fullmatch(value)):
        kept["id"] = value
    if _whole_number(data.get("orderId")):
        kept["orderId"] = data["orderId"]
    status = data.get("status")
    if isinstance(status, dict):
        kept["status"] = {key: status[key] for key in ("previous_status_id", "new_status_id") if _whole_number(status.get(key))}
    refund = data.get("refund")
    if isinstance(refund, dict):
        kept["refund"] = {"refund_id": refund["refund_id"]} if _whole_number(refund.get("refund_id")) else {}
    return kept


def slim_event_body(body: str) -> str:
    """A stored webhook body without customer data: the envelope and :func:`_slim_data`."""
    envelope = _loads(body)
    if not isinstance(envelope, dict):
        return "{}"
    kept = {}
    if isinstance(envelope.get("scope"), str):
        kept["scope"] = mask_personal(envelope["scope"])
    if _whole_number(envelope.get("store_id")):
        kept["store_id"] = envelope["store_id"]
    if isinstance(envelope.get("producer"), str) and _PRODUCER.fullmatch(envelope["producer"]):
        kept["producer"] = envelope["producer"]
    if isinstance(envelope.get("hash"), str):
        kept["hash"] = mask_personal(envelope["hash"])
    if _whole_number(envelope.get("created_at")):
        kept["created_at"] = envelope["created_at"]
    kept["data"] = _slim_data(envelope.get("data"))
    return _dumps(kept)


def _personal_values(value, found: list[str]) -> None:
    """Every string under ``value`` (the values of a personal key)."""
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for child in value.values():
            _personal_values(child, found)
    elif isinstance(value, list):
        for child in value:
            _personal_values(child, found)


def _without_personal(value, found: list[str]):
    if isinstance(value, dict):
        kept = {}
        for key, child in value.items():
            if key in PERSONAL_KEYS:
                _personal_values(child, found)
            else:
                kept[key] = _without_personal(child, found)
        return kept
    if isinstance(value, list):
        return [_without_personal(child, found) for child in value]
    return value


def slim_payload(payload: str, kind: str) -> tuple[str, list[str]]:
    """A delivery body without customer data, and the customer values it held (to take out of answers).

    A paid report keeps only the keys Refersion reports on (:data:`PAID_REPORT_KEYS`).
    """
    body = _loads(payload)
    if not isinstance(body, dict):
        return mask_personal(payload), []
    found: list[str] = []
    slim = _without_personal(body, found)
    if kind == "paid":
        slim = {key: slim[key] for key in PAID_REPORT_KEYS if key in slim}
    if slim == body:
        return payload, found  # nothing to remove: the stored text stays byte for byte
    return _dumps(slim), found
