"""The SQLite database: connection set-up, transactions and migrations.

WAL mode lets the web processes write events while the worker reads and writes
its queues; ``synchronous=FULL`` because a webhook is acknowledged only after its
event is on disk, and an acknowledged event must survive a power cut.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

BUSY_TIMEOUT = 30.0  # seconds a writer waits for another writer's lock
FULL, NORMAL = "FULL", "NORMAL"
CACHED_STATEMENTS = 128  # Python's own default

migrations = Migrations("bridge")


def connect(
    path: str | Path,
    *,
    migrate: bool = True,
    busy_timeout: float = BUSY_TIMEOUT,
    synchronous: str = FULL,
    cached_statements: int = CACHED_STATEMENTS,
) -> Database:
    """Open (creating if needed) the database file, migrated to the current schema.

    :param migrate: False for the web's per-request connections: the app factory has
        migrated once already, and the check takes the write lock.
    :param busy_timeout: seconds to wait for another writer's lock.
    :param synchronous: ``FULL`` (every commit on disk before it returns) or ``NORMAL`` for the
        worker's connections, whose commits a power cut may undo harmlessly (see ``durable``).
    :param cached_statements: prepared statements kept for reuse (each a few KiB, a claim tens);
        0 prepares every statement afresh.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False, cached_statements=cached_statements)
    db = Database(conn)
    _until_unlocked(lambda: db.execute("PRAGMA journal_mode=WAL"), busy_timeout)
    db.execute(f"PRAGMA synchronous={synchronous}")
    # Freed space is zeroed, so customer data purged after the retention period (storage/purge.py)
    # leaves no copy in the file's free pages or cells.
    db.execute("PRAGMA secure_delete=ON")
    if migrate:

        def apply() -> None:
            with immediate(db):
                migrations.apply(db)

        _until_unlocked(apply, busy_timeout)
    return db


def _until_unlocked(step, busy_timeout: float) -> None:
    """Run a set-up step, trying again while the file is locked, for up to ``busy_timeout``.

    SQLite answers "database is locked" to a connection that switches a new file to WAL, or
    migrates it, while another process does the same (``bridge web`` and ``bridge worker``
    starting together on a fresh database), sometimes without waiting in its busy handler.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def durable(db: Database) -> Iterator[Database]:
    """Commits made inside are on disk before they return (``synchronous=FULL``), whatever the
    connection's own setting.

    The worker's connections run at ``NORMAL``: in WAL mode a commit then skips its fsync, and a
    power cut (never a crash of the process) may undo the last commits. That is harmless for a
    claim (the item is claimed again), a decision or a queued report (the order is evaluated
    again, and the outbox key stops a second report) — but not for an answer from Refersion or
    BigCommerce, which would be asked, or sent, again: those are written inside ``durable``.
    """
    (before,) = db.conn.execute("PRAGMA synchronous").fetchone()
    db.conn.execute(f"PRAGMA synchronous={FULL}")
    try:
        yield db
    finally:
        db.conn.execute(f"PRAGMA synchronous={before}")


def rows(cursor: sqlite3.Cursor) -> list[dict]:
    """A cursor's rows as dicts keyed by column name."""
    names = [column[0] for column in cursor.description or ()]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


@contextlib.contextmanager
def immediate(db: Database) -> Iterator[Database]:
    """A write transaction that takes the lock up front (``BEGIN IMMEDIATE``).

    Claims read-then-write; taking the write lock before the read means two workers
    can never claim the same row.
    """
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")


@migrations()
def m001_pipeline(db: Database) -> None:
    """Events received, order decisions, the Refersion outbox, cart links, pauses."""
    db.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            dedupe_key TEXT NOT NULL UNIQUE,
            store_hash TEXT NOT NULL,
            scope TEXT NOT NULL,
            hash TEXT NOT NULL,
            event_created_at INTEGER,
            order_id INTEGER,
            body TEXT NOT NULL,
            received_at REAL NOT NULL,
            state TEXT NOT NULL,
            due_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT,
            lease_until REAL,
            outcome TEXT,
            note TEXT,
            last_error TEXT,
            finished_at REAL
        )
        """
    )
    db.execute("CREATE INDEX events_due ON events (state, due_at)")
    db.execute("CREATE INDEX events_order ON events (store_hash, order_id)")
    db.execute(
        """
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            store_hash TEXT NOT NULL,
            order_id INTEGER NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            due_at REAL NOT NULL,
            lease_owner TEXT,
            lease_until REAL,
            last_status INTEGER,
            last_error TEXT,
            response TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            done_at REAL
        )
        """
    )
    db.execute("CREATE INDEX deliveries_due ON deliveries (state, due_at)")
    db.execute("CREATE INDEX deliveries_order ON deliveries (store_hash, order_id)")
    db.execute(
        """
        CREATE TABLE orders (
            store_hash TEXT NOT NULL,
            order_id INTEGER NOT NULL,
            verdict TEXT NOT NULL,
            reasons TEXT NOT NULL,
            status_id INTEGER,
            payment_status TEXT,
            total TEXT,
            currency TEXT,
            cart_id_source TEXT,
            note TEXT,
            evaluated_at REAL NOT NULL,
            PRIMARY KEY (store_hash, order_id)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE cart_links (
            store_hash TEXT NOT NULL,
            order_id INTEGER NOT NULL,
            source TEXT NOT NULL,
            cart_id TEXT NOT NULL,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (store_hash, order_id, source)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE pauses (
            store_hash TEXT NOT NULL,
            service TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            reason TEXT NOT NULL,
            paused_at REAL NOT NULL,
            PRIMARY KEY (store_hash, service)
        )
        """
    )


@migrations()
def m002_foundations(db: Database) -> None:
    """Decision history, deliveries of several kinds, store holds and the store registry.

    Upgrades a database written before: its decisions become the first history rows,
    and refund events kept as 'deferred' are queued, as they now re-evaluate their order.
    """
    db.execute(
        """
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            store_hash TEXT NOT NULL,
            order_id INTEGER NOT NULL,
            verdict TEXT NOT NULL,
            reasons TEXT NOT NULL,
            order_modified REAL,
            status_id INTEGER,
            payment_status TEXT,
            total TEXT,
            currency TEXT,
            cart_id_source TEXT,
            note TEXT,
            at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX decisions_order ON decisions (store_hash, order_id, id)")
    db.execute("ALTER TABLE orders ADD COLUMN order_modified REAL")
    db.execute(
        """
        INSERT INTO decisions (store_hash, order_id, verdict, reasons, status_id, payment_status, total, currency,
                               cart_id_source, note, at)
        SELECT store_hash, order_id, verdict, reasons, status_id, payment_status, total, currency, cart_id_source, note, evaluated_at
        FROM orders ORDER BY evaluated_at
        """
    )
    # Coupon pushes belong to no order; each row keeps what its sender needs besides the body.
    db["deliveries"].transform(not_null={"order_id": False})
    db.execute("ALTER TABLE deliveries ADD COLUMN meta TEXT")
    db.execute("ALTER TABLE deliveries ADD COLUMN outcome TEXT")
    # Set when the order changed while the row was in a worker's hands: its send re-reads the order.
    db.execute("ALTER TABLE deliveries ADD COLUMN recheck INTEGER NOT NULL DEFAULT 0")
    db.execute(
        """
        CREATE TABLE holds (
            store_hash TEXT NOT NULL,
            service TEXT NOT NULL,
            until REAL NOT NULL,
            reason TEXT NOT NULL,
            strikes INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (store_hash, service)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE stores (
            store_hash TEXT PRIMARY KEY,
            mode TEXT NOT NULL,
            access_token TEXT,
            scopes TEXT,
            installed_by TEXT,
            refersion_public_key TEXT,
            refersion_secret_key TEXT,
            installed_at REAL,
            uninstalled_at REAL,
            updated_at REAL NOT NULL
        )
        """
    )
    db.execute(
        """
        UPDATE events SET state = 'pending', due_at = received_at, outcome = NULL, note = NULL, finished_at = NULL
        WHERE state = 'deferred' AND scope = 'store/order/refund/created'
        """
    )


@migrations()
def m003_app_installs(db: Database) -> None:
    """Per-store settings beside the installs, and the users of each installed store.

    ``stores`` rows exist for app installs and for any store whose settings were changed
    on the settings page (the configured store too). A NULL setting means "the config's".
    """
    db.execute("ALTER TABLE stores ADD COLUMN dry_run INTEGER")
    db.execute("ALTER TABLE stores ADD COLUMN excluded_coupons TEXT")
    db.execute(
        """
        CREATE TABLE store_users (
            store_hash TEXT NOT NULL,
            user_id INTEGER NOT NULL,
            email TEXT,
            is_owner INTEGER NOT NULL DEFAULT 0,
            added_at REAL NOT NULL,
            PRIMARY KEY (store_hash, user_id)
        )
        """
    )


@migrations()
def m004_chores(db: Database) -> None:
    """The worker's periodic chores, per store, with their memory across restarts (see storage/chores.py)."""
    db.execute(
        """
        CREATE TABLE chores (
            name TEXT NOT NULL,
            store_hash TEXT NOT NULL,
            due_at REAL NOT NULL,
            state TEXT NOT NULL DEFAULT '{}',
            lease_owner TEXT,
            lease_until REAL,
            last_run_at REAL,
            last_error TEXT,
            PRIMARY KEY (name, store_hash)
        )
        """
    )


@migrations()
def m005_used_jwts(db: Database) -> None:
    """The ids (``jti``) of the app callbacks' signed payloads already used, until they expire."""
    db.execute("CREATE TABLE used_jwts (jti TEXT PRIMARY KEY, expires_at REAL NOT NULL)")


@migrations()
def m006_purge(db: Database) -> None:
    """When each event and delivery had its customer data removed (see storage/purge.py).

    The partial indexes hold only rows not purged yet, so a daily purge reads only those.
    """
    db.execute("ALTER TABLE events ADD COLUMN purged_at REAL")
    db.execute("ALTER TABLE deliveries ADD COLUMN purged_at REAL")
    db.execute("CREATE INDEX events_unpurged ON events (received_at) WHERE purged_at IS NULL")
    db.execute("CREATE INDEX deliveries_unpurged ON deliveries (created_at) WHERE purged_at IS NULL")


@migrations()
def m007_hook_checks(db: Database) -> None:
    """The last check of each store's BigCommerce webhooks (see storage/hook_checks.py)."""
    db.execute(
        """
        CREATE TABLE hook_checks (
            store_hash TEXT PRIMARY KEY,
            checked_at REAL NOT NULL,
            wanted INTEGER NOT NULL,
            problems TEXT NOT NULL DEFAULT '{}',
            down_since REAL,
            healthy_at REAL,
            repaired_at REAL,
            repaired TEXT,
            repaired_since REAL,
            note TEXT
        )
        """
    )


@migrations()
def m008_incidents(db: Database) -> None:
    """Incidents the alerts watcher opened and cleared, per store and kind (see storage/incidents.py)."""
    db.execute(
        """
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            store_hash TEXT NOT NULL,
            kind TEXT NOT NULL,
            opened_at REAL NOT NULL,
            cleared_at REAL,
            detail TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE UNIQUE INDEX incidents_open ON incidents (store_hash, kind) WHERE cleared_at IS NULL")


@migrations()
def m009_delivery_notes(db: Database) -> None:
    """A sentence on a delivery that was recorded but not sent (a refund of shipping only, an order never reported)."""
    db.execute("ALTER TABLE deliveries ADD COLUMN note TEXT")


@migrations()
def m010_refersion_events(db: Database) -> None:
    """Refersion's outbound webhooks as received (see storage/refersion_events.py).

    One row per signed body, and at most one per conversion trigger id, per deployment:
    the store comes from the URL, which the signature does not cover, so a body seen once
    cannot be replayed against another store. Only
    trigger events keep their body (ids and the code); other topics carry affiliates' and
    customers' details the bridge has no use for, so only their topic and digest are kept.
    Coupon pushes are deliveries without an order: ``deliveries.order_id`` is NULL for them
    (nullable since m002), never 0, which would read as an order.
    """
    db.execute(
        """
        CREATE TABLE refersion_events (
            id INTEGER PRIMARY KEY,
            store_hash TEXT NOT NULL,
            topic TEXT NOT NULL,
            body_sha256 TEXT NOT NULL,
            trigger_id TEXT,
            trigger_type TEXT,
            trigger TEXT,
            affiliate_id TEXT,
            body TEXT,
            outcome TEXT NOT NULL,
            note TEXT,
            delivery_key TEXT,
            received_at REAL NOT NULL,
            UNIQUE (body_sha256)
        )
        """
    )
    db.execute("CREATE UNIQUE INDEX refersion_events_trigger ON refersion_events (trigger_id) WHERE trigger_id IS NOT NULL")
    db.execute("CREATE INDEX refersion_events_received ON refersion_events (store_hash, received_at)")


@migrations()
def m011_storefront(db: Database) -> None:
    """The cart ids the storefront script posted (claims, a few distinct ones per order) and each store's storefront
    origins as last read from BigCommerce (see storage/storefront.py)."""
    db.execute(
        """
        CREATE TABLE storefront_claims (
            store_hash TEXT NOT NULL,
            order_id INTEGER NOT NULL,
            cart_id TEXT NOT NULL,
            origin TEXT NOT NULL,
            claimed_at REAL NOT NULL,
            matched INTEGER,
            checked_at REAL,
            PRIMARY KEY (store_hash, order_id, cart_id)
        )
        """
    )
    db.execute("CREATE INDEX storefront_claims_recent ON storefront_claims (store_hash, claimed_at)")
    db.execute(
        """
        CREATE TABLE storefront_origins (
            store_hash TEXT PRIMARY KEY,
            origins TEXT NOT NULL DEFAULT '[]',
            read_at REAL,
            error TEXT
        )
        """
    )
