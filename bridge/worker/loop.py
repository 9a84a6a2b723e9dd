"""The worker loop: claim due work, hand each job to its handler, keep leases alive, stop cleanly.

Job kinds live in their own modules (``evaluate``, ``deliver``); this module knows
only the loop: polling, the lease heartbeat, handing work back after an error, and
noticing a stop request within a second.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable

from bridge.config import Settings
from bridge.core.retry import Failure, classify
from bridge.storage import chores as chore_rows
from bridge.storage import db as database
from bridge.storage import inbox, outbox, pauses
from bridge.storage.db import immediate
from bridge.storage.queue import LEASES, Leases
from bridge.worker import chores, deliver, evaluate
from bridge.worker.context import Context

log = logging.getLogger(__name__)

RESUME_CHECK_SECONDS = 10.0
CHORE_CHECK_SECONDS = 1.0  # how often an idle worker looks for a due chore (a claim takes the write lock)
MAX_IDLE_WAIT = 1.0  # seconds: the loop never waits longer than this when idle
# How often an idle worker looks whether another connection (a webhook's, a replay's) has
# committed: ``PRAGMA data_version`` reads shared memory, so this costs little CPU and wakes
# the worker within milliseconds of new work instead of a poll interval later.
WAKE_CHECK_SECONDS = 0.01
MAX_ERROR_WAIT = 5.0  # seconds: the longest wait after failures in a row; the worker resumes this soon once the fault clears


def _owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Works off the inbox and the outbox of one database."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        owner: str | None = None,
        leases: Leases = LEASES,
    ):
        leases.check()
        self.settings = settings
        self.owner = owner or _owner_id()
        self.leases = leases
        self.ctx = Context(settings, db=database.connect(settings.database.path), clock=clock, rng=rng, owner=self.owner, leases=leases)
        self.db = self.ctx.db
        self._last_resume_check = float("-inf")
        self._next_chore_check = float("-inf")

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; the item in hand is finished first."""
        self.ctx.stop = stop
        log.info("Worker %s started", self.owner)
        # The heartbeat has its own event: leases are renewed until the item in hand is
        # settled, not only until the stop request.
        heartbeat_stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(heartbeat_stop,), name="lease-heartbeat", daemon=True)
        heartbeat.start()
        try:
            failures = 0
            while not stop.is_set():
                try:
                    worked = self.run_once()
                    failures = 0
                except Exception as error:
                    # A bug or a database failure (locked, full, read-only) does not stop the
                    # worker: what it held goes back as a failed attempt, and it waits longer
                    # after each failure in a row, so a full disk is retried, not spun on.
                    failures += 1
                    if failures <= 3 or failures % 100 == 0:
                        log.exception("Worker loop error (%d in a row)", failures)
                    self.give_back(f"internal error: {type(error).__name__}")
                    stop.wait(min(self.settings.worker.poll_interval * 2**failures, MAX_ERROR_WAIT))
                    continue
                if not worked:
                    self.wait_for_work(stop, min(self.settings.worker.poll_interval, MAX_IDLE_WAIT))
        finally:
            stop.set()
            heartbeat_stop.set()
            heartbeat.join(timeout=self.leases.heartbeat_seconds + self.leases.heartbeat_busy_timeout + 1)
            log.info("Worker %s stopped", self.owner)

    def run_once(self) -> bool:
        """Handle at most one evaluation, one delivery and one due chore; True when there was work."""
        if self.ctx.clock() - self._last_resume_check >= RESUME_CHECK_SECONDS:
            self.resume_changed_credentials()
            chores.schedule_all(self.ctx)  # stores installed since get their chores
        worked = evaluate.handle_next(self.ctx)
        worked = deliver.handle_next(self.ctx) or worked
        if self.ctx.clock() >= self._next_chore_check:
            ran = chores.run_next(self.ctx)
            self._next_chore_check = self.ctx.clock() if ran else self.ctx.clock() + CHORE_CHECK_SECONDS
            worked = ran or worked
        return worked

    def wait_for_work(self, stop: threading.Event, timeout: float) -> None:
        """Wait until another connection commits (most likely new work), ``timeout`` passes
        (work may fall due: a retry, a chore) or ``stop`` is set."""
        version = self._data_version()
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            time.sleep(WAKE_CHECK_SECONDS)  # costs less CPU than Event.wait with a timeout
            if time.monotonic() >= deadline or self._data_version() != version:
                return

    def _data_version(self) -> int:
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def run_until_idle(self, limit: int = 10_000) -> int:
        """Work until nothing is due (for tests and one-off runs); returns rounds that worked."""
        rounds = 0
        while rounds < limit and self.run_once():
            rounds += 1
        return rounds

    def deliver_next(self) -> bool:
        return deliver.handle_next(self.ctx)

    def give_back(self, error: str) -> None:
        """Return everything this worker holds to the queue, each as one failed attempt.

        An answer that could not be recorded yet is recorded as what it was.
        """
        unrecorded, self.ctx.unrecorded = self.ctx.unrecorded, None
        try:
            with immediate(self.db):
                if unrecorded is not None:
                    deliver.record_reply(self.ctx, *unrecorded)
                for table in (inbox.events, outbox.deliveries):
                    for row in table.held(self.db, owner=self.owner):
                        columns = self.ctx.failure_columns(row["attempts"] + 1, classify(None, Failure.INTERNAL), None, error)
                        table.settle(self.db, [row["id"]], owner=self.owner, **columns)
                chore_rows.release(self.db, owner=self.owner)
        except Exception:
            if unrecorded is not None:
                # An answer from Refersion that the database will not take: stop (crash-only),
                # so the lease runs out and a restarted worker takes the delivery up.
                log.critical("Could not record an answer nor hand back claimed work; stopping the worker")
                raise
            # Nothing was sent: take a new identity, so the heartbeat stops renewing what the
            # old one held; its leases run out and it is claimed again once the database takes
            # writes (a full or read-only disk), while the web half keeps answering 503.
            old, self.owner = self.owner, _owner_id()
            self.ctx.owner = self.owner
            log.critical("Could not hand back the work of %s; it is taken up again once its leases run out", old, exc_info=True)

    def _heartbeat(self, stop: threading.Event) -> None:
        # Its own connection, waiting briefly for the lock: a renewal that cannot happen
        # now must give up in time for the next one (see Leases).
        db = database.connect(self.settings.database.path, migrate=False, busy_timeout=self.leases.heartbeat_busy_timeout)
        try:
            while not stop.wait(self.leases.heartbeat_seconds):
                try:
                    with immediate(db):
                        for table in (inbox.events, outbox.deliveries):
                            table.renew(db, owner=self.owner, now=time.time(), lease=self.leases.lease_seconds)
                        chore_rows.renew(db, owner=self.owner, now=time.time(), lease=self.leases.lease_seconds)
                except Exception:
                    log.exception("Lease heartbeat failed")
        finally:
            db.close()

    def resume_changed_credentials(self) -> None:
        """Lift every pause whose credentials have changed since they were refused."""
        self._last_resume_check = self.ctx.clock()
        with immediate(self.db):
            for pause in pauses.pauses(self.db):
                store = self.ctx.stores.get(self.db, pause["store_hash"])
                current = store.fingerprint(pause["service"]) if store else None
                if current != pause["fingerprint"]:
                    pauses.resume(self.db, store_hash=pause["store_hash"], service=pause["service"])
                    log.info("Credentials for %s changed: resuming store %s", pause["service"], pause["store_hash"])

    def close(self) -> None:
        self.ctx.close()
        self.db.close()
