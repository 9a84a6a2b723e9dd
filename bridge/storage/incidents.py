"""Incidents the alerts watcher told someone about: one row per store, kind and outage.

An incident is open while ``cleared_at`` is NULL; at most one is open per store and kind.
Opening or clearing one and queueing its alert happen in one transaction, so each alert is
queued exactly once.
"""

from __future__ import annotations

from sqlite_utils import Database

from bridge.storage.db import rows


def open_incidents(db: Database) -> list[dict]:
    return rows(db.execute("SELECT * FROM incidents WHERE cleared_at IS NULL ORDER BY store_hash, kind"))


def latest(db: Database, *, store_hash: str, kind: str) -> dict | None:
    found = rows(db.execute("SELECT * FROM incidents WHERE store_hash = ? AND kind = ? ORDER BY id DESC LIMIT 1", [store_hash, kind]))
    return found[0] if found else None


def open_incident(db: Database, *, store_hash: str, kind: str, at: float, detail: str, cleared_at: float | None = None) -> dict:
    """Record an incident (already over when ``cleared_at`` is given); call in a transaction."""
    return rows(
        db.execute(
            "INSERT INTO incidents (store_hash, kind, opened_at, cleared_at, detail) VALUES (?, ?, ?, ?, ?) RETURNING *",
            [store_hash, kind, at, cleared_at, detail],
        )
    )[0]


def clear(db: Database, *, incident_id: int, at: float) -> None:
    db.execute("UPDATE incidents SET cleared_at = ? WHERE id = ? AND cleared_at IS NULL", [at, incident_id])


def all_incidents(db: Database, store_hash: str | None = None) -> list[dict]:
    if store_hash is None:
        return rows(db.execute("SELECT * FROM incidents ORDER BY id"))
    return rows(db.execute("SELECT * FROM incidents WHERE store_hash = ? ORDER BY id", [store_hash]))


# --- The facts the watcher compares with open incidents ------------------------------------


def dead_counts(db: Database, store_hash: str) -> tuple[int, int]:
    """Dead events and dead deliveries of the store; alerts that could not be posted are left out
    (telling the receiver that it refused an alert reaches nobody), and so are coupon codes
    BigCommerce refused (no report to Refersion failed: the status page lists them with the reason)."""
    events = db.execute("SELECT count(*) FROM events WHERE store_hash = ? AND state = 'dead'", [store_hash]).fetchone()[0]
    deliveries = db.execute(
        "SELECT count(*) FROM deliveries WHERE store_hash = ? AND state = 'dead' AND kind NOT IN ('alert', 'coupon')", [store_hash]
    ).fetchone()[0]
    return events, deliveries


def quiet_since(
    db: Database, store_hash: str, *, now: float, quiet_seconds: float, reconcile_scope: str, recovered_scopes: tuple[str, ...]
) -> float | None:
    """The rule "no webhook for longer than quiet_seconds while reconcile finds orders".

    Holds when the store's last BigCommerce webhook (an event of none of ``recovered_scopes``,
    the scopes the bridge writes itself) is older than ``quiet_seconds`` (or none ever came)
    and the reconcile pass has recorded an order (an event of ``reconcile_scope``) since it.
    Returns the last webhook's time (0 when none ever came), or None when the rule does not
    hold. Kept in this one function so the rule is easy to adjust.
    """
    marks = ", ".join("?" for _ in recovered_scopes)
    last_webhook, last_found = db.execute(
        f"""
        SELECT max(CASE WHEN scope NOT IN ({marks}) THEN received_at END), max(CASE WHEN scope = ? THEN received_at END)
        FROM events WHERE store_hash = ?
        """,
        [*recovered_scopes, reconcile_scope, store_hash],
    ).fetchone()
    if last_found is None or (last_webhook is not None and (now - last_webhook <= quiet_seconds or last_found <= last_webhook)):
        return None
    return last_webhook or 0.0
