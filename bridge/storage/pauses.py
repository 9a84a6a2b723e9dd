"""When a store's work is held back: paused until its credentials change, or held until a time.

A pause follows a refusal of the store's credentials (401/403): retrying with the same
credentials cannot help, so nothing is attempted until they change. A hold follows a
rate limit (429): the store's quota comes back at a known time.
"""

from __future__ import annotations

from sqlite_utils import Database

from bridge.storage.db import rows


def pause(db: Database, *, store_hash: str, service: str, fingerprint: str, reason: str, now: float) -> None:
    """Hold back a store's work for ``service`` until its credentials change."""
    db.execute(
        """
        INSERT INTO pauses (store_hash, service, fingerprint, reason, paused_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (store_hash, service) DO UPDATE SET fingerprint = excluded.fingerprint, reason = excluded.reason
        """,
        [store_hash, service, fingerprint, reason, now],
    )


def pauses(db: Database) -> list[dict]:
    return rows(db.execute("SELECT * FROM pauses ORDER BY paused_at"))


def resume(db: Database, *, store_hash: str, service: str) -> None:
    db.execute("DELETE FROM pauses WHERE store_hash = ? AND service = ?", [store_hash, service])


def hold(db: Database, *, store_hash: str, service: str, until: float, reason: str, strikes: int = 0) -> None:
    """Claim none of a store's work for ``service`` before ``until`` (a later hold wins).

    :param strikes: how many holds came one after another before this one (for backing off).
    """
    db.execute(
        """
        INSERT INTO holds (store_hash, service, until, reason, strikes) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (store_hash, service) DO UPDATE SET
            until = max(holds.until, excluded.until), reason = excluded.reason, strikes = excluded.strikes
        """,
        [store_hash, service, until, reason, strikes],
    )


def find_hold(db: Database, *, store_hash: str, service: str) -> dict | None:
    found = rows(db.execute("SELECT * FROM holds WHERE store_hash = ? AND service = ?", [store_hash, service]))
    return found[0] if found else None


def holds(db: Database, *, now: float) -> list[dict]:
    """Holds still in force."""
    return rows(db.execute("SELECT * FROM holds WHERE until > ? ORDER BY until", [now]))


def held_back(db: Database, *, store_hash: str, service: str, now: float) -> bool:
    """True while the store's ``service`` work is paused (credentials refused) or held (quota spent): no call would help."""
    paused = db.execute("SELECT 1 FROM pauses WHERE store_hash = ? AND service = ?", [store_hash, service]).fetchone()
    hold = find_hold(db, store_hash=store_hash, service=service)
    return paused is not None or (hold is not None and hold["until"] > now)
