"""What every job handler of one worker shares: the database, the clock, the clients,
and the few ways a failed attempt is written back."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from sqlite_utils import Database

from bridge.clients.bigcommerce import BigCommerceClient, QuotaGate
from bridge.clients.refersion import RefersionClient
from bridge.config import Settings
from bridge.core.retry import Action, Outcome
from bridge.storage import pauses
from bridge.storage.db import durable, immediate
from bridge.storage.queue import DEAD, PENDING, Leases
from bridge.storage.stores import Store, StoreRegistry

log = logging.getLogger(__name__)

DB_RETRY_SECONDS = 300.0  # how long an answer already received is held while the database refuses it
STOP_GRACE_SECONDS = 20.0  # the same after a stop request (bridge serve waits 30 s before killing)
RATE_LIMIT_HOLD_SECONDS = 10.0  # a 429 without a reset time: platform load, not our quota
MIN_HOLD_SECONDS = 1.0  # doubled for each 429 that follows a hold closely, so a "reset in 0 ms" cannot spin
MAX_HOLD_SECONDS = 300.0  # the quota window is 30 s: a longer reset is not believed
HOLD_MEMORY_SECONDS = 60.0  # a 429 this soon after the last hold ended counts as one more in a row
# An answer in hand asks for the write lock this often, for up to PROMPT_LOCK_SECONDS, before
# queueing in SQLite's busy handler: that handler sleeps 1, 2, 5 … 100 ms between tries, and with
# webhooks committing all the time it lost the lock to them for up to 0.6 s (RELIABILITY.md) —
# time in which a crash sends the order again.
LOCK_POLL_SECONDS = 0.0005
PROMPT_LOCK_SECONDS = 2.0
SQLITE_BUSY = 5
SQLITE_ERROR = 1  # SQL error: a missing table or column, a syntax error


def mendable(error: sqlite3.Error) -> bool:
    """False for an error no wait can mend (a missing table, a misused connection): a bug, raised at
    once rather than retried for DB_RETRY_SECONDS. A locked, full, read-only or failing disk is waited for."""
    if isinstance(error, (sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return False
    return not (isinstance(error, sqlite3.OperationalError) and (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF == SQLITE_ERROR)


class ClientPool:
    """Idle BigCommerce clients by store, shared by a worker's lanes: a lane borrows one for an
    item and gives it back after, so a worker serving many stores on many lanes holds about as
    many clients (sessions, kept-alive connections) as it has requests in flight, not lanes × stores."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[Store, BigCommerceClient]]] = {}

    def borrow(self, store: Store) -> BigCommerceClient | None:
        with self._lock:
            idle = self._idle.get(store.store_hash, [])
            while idle:
                known, client = idle.pop()
                if known == store:
                    return client
                client.close()  # the store's credentials changed since
        return None

    def give_back(self, store: Store, client: BigCommerceClient) -> None:
        with self._lock:
            self._idle.setdefault(store.store_hash, []).append((store, client))

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for _, client in idle:
                    client.close()
            self._idle.clear()


class Context:
    """One worker's shared state; handlers receive it and keep none of their own."""

    def __init__(
        self,
        settings: Settings,
        *,
        db: Database,
        clock: Callable[[], float],
        rng: Callable[[], float],
        owner: str,
        leases: Leases,
        quotas: dict[str, QuotaGate] | None = None,
        clients: ClientPool | None = None,
    ):
        """:param quotas: each store's quota gate, shared with the other contexts of one worker (its lanes).
        :param clients: idle BigCommerce clients shared by the lanes (keep-alive connections, few sessions)."""
        self.settings = settings
        self.policy = settings.rules
        self.retry = settings.worker.retry
        self.stores = StoreRegistry(settings)
        self.stores.check_secrets(db)  # refuse to start with stored secrets it cannot read
        self.db = db
        self.clock = clock
        self.rng = rng
        self.owner = owner
        self.leases = leases
        self.stop = threading.Event()
        self.db_retry_seconds = DB_RETRY_SECONDS
        self.unrecorded: tuple | None = None  # (delivery row, reply) the database has not taken yet
        self._bigcommerce: dict[str, tuple[Store, BigCommerceClient]] = {}
        self._refersion: dict[tuple[str, str], RefersionClient] = {}
        self.quotas = {} if quotas is None else quotas
        self.clients = clients
        self.quota_wait = 0.0  # seconds a BigCommerce request may wait for its store's quota (lanes: see loop.py)

    # --- clients, one per store and credentials ----------------------------------------

    def bigcommerce(self, store: Store) -> BigCommerceClient:
        cached = self._bigcommerce.get(store.store_hash)
        if cached is None or cached[0] != store:
            if cached is not None:
                cached[1].close()
            client = self.clients.borrow(store) if self.clients is not None else None
            if client is None:
                bc = self.settings.bigcommerce
                client = BigCommerceClient(
                    api_url=bc.api_url,
                    store_hash=store.store_hash,
                    access_token=store.access_token,
                    client_id=store.client_id,
                    timeout=bc.timeout,
                    clock=self.clock,
                    quota=self.quotas.setdefault(store.store_hash, QuotaGate()),
                    quota_wait=self.quota_wait,
                )
            cached = self._bigcommerce[store.store_hash] = (store, client)
        return cached[1]

    def return_clients(self) -> None:
        """Give the BigCommerce clients this context used back to the shared pool (a lane, after each item)."""
        if self.clients is not None:
            for store, client in self._bigcommerce.values():
                self.clients.give_back(store, client)
            self._bigcommerce.clear()

    def refersion(self, store: Store) -> RefersionClient:
        """The client for the store's Refersion key pair (stores sharing a pair share it)."""
        key = (store.refersion.public_key, store.fingerprint("refersion"))
        client = self._refersion.get(key)
        if client is None:
            ref = self.settings.refersion
            client = self._refersion[key] = RefersionClient.for_keys(ref, store.refersion.public_key, store.refersion.secret_key)
        return client

    def close(self) -> None:
        for _, client in self._bigcommerce.values():
            client.close()
        for client in self._refersion.values():
            client.close()

    # --- writing outcomes back ------------------------------------------------------

    def failure_columns(self, failures: int, outcome: Outcome, retry_after: float | None, error: str) -> dict:
        """How a failed attempt is written back: retried later on the schedule, or dead."""
        now = self.clock()
        delay = None
        if outcome.action is Action.RETRY:
            delay = self.retry.delay(failures, jitter=self.rng(), retry_after=retry_after, overloaded=outcome.overloaded)
        if delay is None:
            return {"state": DEAD, "attempts": failures, "last_error": error}
        return {"state": PENDING, "attempts": failures, "due_at": now + delay, "last_error": error}

    def pause(self, store_hash: str, service: str, reason: str) -> None:
        """Hold a store's work for ``service`` until its credentials change (call in a transaction)."""
        store = self.stores.get(self.db, store_hash)
        fingerprint = store.fingerprint(service) if store else ""
        pauses.pause(self.db, store_hash=store_hash, service=service, fingerprint=fingerprint, reason=reason, now=self.clock())
        log.warning("Paused %s work for store %s: %s", service, store_hash, reason)

    def hold(self, store_hash: str, service: str, retry_after: float | None, reason: str) -> float:
        """Claim none of a store's ``service`` work until its quota resets; returns that time (call in a transaction).

        The remote's reset time is honoured between MIN_HOLD_SECONDS, doubled for every 429
        in a row, and MAX_HOLD_SECONDS. A hold because the quota headers announced the quota
        spent (the BigCommerce client sent nothing) is no strike.
        """
        now = self.clock()
        previous = pauses.find_hold(self.db, store_hash=store_hash, service=service)
        strikes = min(previous["strikes"] + 1, 20) if previous and previous["until"] > now - HOLD_MEMORY_SECONDS else 0
        cached = self._bigcommerce.get(store_hash) if service == "bigcommerce" else None
        if cached is not None and cached[1].held_back:
            strikes = 0  # nothing was refused: the client stopped itself at the announced end of the quota
        wanted = retry_after if retry_after is not None else RATE_LIMIT_HOLD_SECONDS
        seconds = min(max(wanted, MIN_HOLD_SECONDS * 2**strikes), MAX_HOLD_SECONDS)
        pauses.hold(self.db, store_hash=store_hash, service=service, until=now + seconds, reason=reason, strikes=strikes)
        log.info("Holding %s work for store %s for %.1f s: %s", service, store_hash, seconds, reason)
        return now + seconds

    def write(self, what: str, write: Callable[[], None]) -> None:
        """Run ``write`` in a transaction, retrying while the database refuses it.

        Used once an outside system has answered: losing that answer would mean asking
        (or sending) again. Gives up after DB_RETRY_SECONDS, or STOP_GRACE_SECONDS
        after a stop request.
        """
        delay = 0.5
        deadline = time.monotonic() + self.db_retry_seconds
        stopping_deadline = None
        while True:
            try:
                self._write_promptly(write)
                return
            except sqlite3.Error as error:
                if not mendable(error):
                    raise
                now = time.monotonic()
                if self.stop.is_set():
                    stopping_deadline = stopping_deadline or now + STOP_GRACE_SECONDS
                    deadline = min(deadline, stopping_deadline)
                if now >= deadline:
                    raise
                wait = min(delay, deadline - now)
                log.error("Could not record %s (%s); retrying in %.1f s", what, error, wait)
                if self.stop.is_set():
                    time.sleep(wait)
                else:
                    self.stop.wait(wait)  # a stop request shortens the wait, not the retries
                delay = min(delay * 2, 30.0)

    def _write_promptly(self, write: Callable[[], None]) -> None:
        with durable(self.db):  # an answer from outside, on disk before anything follows from it
            self._write_promptly_now(write)

    def _write_promptly_now(self, write: Callable[[], None]) -> None:
        """Run ``write`` in a write transaction, polling for the lock every LOCK_POLL_SECONDS for
        up to PROMPT_LOCK_SECONDS, then waiting in SQLite's busy handler as any other write."""
        conn = self.db.conn
        (busy_timeout_ms,) = conn.execute("PRAGMA busy_timeout").fetchone()
        deadline = time.monotonic() + PROMPT_LOCK_SECONDS
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            while time.monotonic() < deadline:
                try:
                    with immediate(self.db):
                        write()
                    return
                except sqlite3.OperationalError as error:
                    if error.sqlite_errorcode & 0xFF != SQLITE_BUSY:
                        raise
                time.sleep(LOCK_POLL_SECONDS)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        with immediate(self.db):
            write()
