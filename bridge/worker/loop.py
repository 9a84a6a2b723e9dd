"""The worker loop: claim due work, hand each job to its handler, keep leases alive, stop cleanly.

Job kinds live in their own modules (``evaluate``, ``deliver``); this module knows
only the loop: waking when work arrives, handing claimed work to its lanes (threads
with their own connection, several stores served at once, each store on a few lanes
at most), the lease heartbeat, handing work back after an error, and noticing a stop
request at once. ``run_once`` does the same work one item at a time, on one thread
(tests and one-off runs).
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
from bridge.storage.db import durable, immediate
from bridge.storage.queue import LEASES, Leases
from bridge.storage.wake import Listener
from bridge.worker import chores, deliver, evaluate
from bridge.worker.context import ClientPool, Context

log = logging.getLogger(__name__)

RESUME_CHECK_SECONDS = 10.0
CHORE_CHECK_SECONDS = 1.0  # how often an idle worker looks for a due chore (a claim takes the write lock)
MAX_IDLE_WAIT = 1.0  # seconds: the loop never waits longer than this when idle
# An idle worker sleeps in ``poll`` on the wake-up pipe beside the database, which the web's
# intake writes to after each commit of webhooks. Commits from elsewhere (a `bridge replay`, the
# app's pages) are seen by ``PRAGMA data_version`` (a read of shared memory) this often, or at
# the next look at the queues (``worker.poll_interval``) if sooner: each wake-up of an idle
# worker costs CPU (0.66 % of a core at 0.1 s, 0.36-0.46 % at 0.25 s). Without the pipe (a
# read-only folder) the worker looks every WAKE_CHECK_SECONDS instead, to be as quick.
DATA_VERSION_CHECK_SECONDS = 0.25
WAKE_CHECK_SECONDS = 0.01
MAX_ERROR_WAIT = 5.0  # seconds: the longest wait after failures in a row; the worker resumes this soon once the fault clears
# Threads serving claimed work at once, and at most this many of them on one store's work: one
# slow or throttled store holds up only its own lanes, and a store's quota is used by several
# requests in flight (each BigCommerce answer takes a few hundred milliseconds in production).
LANES = int(os.environ.get("WORKER_LANES", "48"))
LANES_PER_STORE = int(os.environ.get("WORKER_LANES_PER_STORE", "6"))
LANE_CACHE_KIB = 256
# Lanes whose connection keeps its prepared statements. A lane's connection keeps about 26 of them
# (about 116 KiB; a claim alone is 27 KiB): 5.5 MiB over 48 lanes in a backlog (issue 11: the
# worker's budget is 80 MB). The dispatcher hands work to the lowest free lane, so under a light
# load these lanes do all of it at full speed; in a backlog the others prepare each statement
# again, about 0.6 ms of CPU per order, while they wait on BigCommerce's quota anyway.
CACHED_LANES = 8
# Refersion deliveries in flight at once, at most. Evaluations (reads of BigCommerce) can be
# repeated harmlessly, but a send the worker dies in the middle of is in doubt and is sent again
# after a restart: at most this many orders can be reported twice by one crash.
SENDING_LANES = int(os.environ.get("WORKER_SENDING_LANES", "4"))
# Seconds a lane's BigCommerce request may wait for its store's quota window to reset: the lane
# serves one store, so its wait holds up no other, and an order's evaluation is not given up
# half done (its calls spent for nothing) at every window. A longer reset holds the store instead.
LANE_QUOTA_WAIT = 3.0


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
        self.quotas: dict = {}  # each store's quota gate, shared by the lanes
        self.clients = ClientPool()  # idle BigCommerce clients, lent to the lanes
        self.ctx = Context(
            settings,
            db=database.connect(settings.database.path, synchronous=database.NORMAL),
            clock=clock,
            rng=rng,
            owner=self.owner,
            leases=leases,
            quotas=self.quotas,
        )
        self.db = self.ctx.db
        self.lanes: list[Lane] = []
        self.chore_lane: Lane | None = None
        self.fatal: BaseException | None = None  # what stopped a lane for good: raised by run()
        self.wake = Listener(settings.database.path)  # poked by the intake's commits, a freed lane, a stop
        self._reports_first = False
        self._sending = threading.BoundedSemaphore(SENDING_LANES)
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
        threading.Thread(target=lambda: (stop.wait(), self.wake.poke()), name="stop-watch", daemon=True).start()
        try:
            self.lanes = [Lane(self, index, stop) for index in range(LANES)]
            self.chore_lane = Lane(self, "chores", stop)
            failures = 0
            while not stop.is_set():
                try:
                    worked = self.dispatch()
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
            for lane in self._all_lanes():
                lane.finish()  # the item in hand is settled first; the heartbeat keeps its lease meanwhile
            heartbeat_stop.set()
            heartbeat.join(timeout=self.leases.heartbeat_seconds + self.leases.heartbeat_busy_timeout + 1)
            log.info("Worker %s stopped", self.owner)
        if self.fatal is not None:
            raise self.fatal

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
        """Wait until work may have arrived (a wake-up from the intake, a lane freed, a commit by
        another connection), ``timeout`` passes (work may fall due: a retry, a chore) or ``stop``
        is set."""
        version = self._data_version()
        deadline = time.monotonic() + timeout
        check_every = DATA_VERSION_CHECK_SECONDS if self.wake.listening else WAKE_CHECK_SECONDS
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.wake.wait(min(remaining, check_every)) or self._data_version() != version:
                return

    def _data_version(self) -> int:
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def dispatch(self) -> bool:
        """Hand due work to free lanes (and a due chore to the chore lane); True when any was handed.

        Claims are made here, one at a time, in the lane's name; a store whose work already
        keeps LANES_PER_STORE lanes busy, and an order being evaluated, are left for later.
        """
        if self.ctx.clock() - self._last_resume_check >= RESUME_CHECK_SECONDS:
            self.resume_changed_credentials()
            chores.schedule_all(self.ctx)  # stores installed since get their chores
        handed = False
        if self.chore_lane.free and self.ctx.clock() >= self._next_chore_check:
            self._next_chore_check = self.ctx.clock() + CHORE_CHECK_SECONDS
            self.chore_lane.hand(self._run_chore, None, None)
            handed = True
        now = self.ctx.clock()
        if not (inbox.events.any_due(self.db, now=now) or outbox.deliveries.any_due(self.db, now=now)):
            return handed  # nothing due: no claim, no write lock
        for lane in self.lanes:
            if not lane.free:
                continue
            busy = [lane.doing for lane in self.lanes if lane.doing is not None]
            per_store: dict[str, int] = {}
            for store_hash, _ in busy:
                per_store[store_hash] = per_store.get(store_hash, 0) + 1
            full = [store_hash for store_hash, count in per_store.items() if count >= LANES_PER_STORE]
            orders = [(store_hash, order_id) for store_hash, order_id in busy if order_id is not None]
            # Reports and evaluations take turns for the free lanes: a backlog of webhooks must not
            # keep reports (which cost no BigCommerce call) waiting, nor the other way round.
            self._reports_first = not self._reports_first
            for claim in (self._claim_delivery, self._claim_evaluation)[:: 1 if self._reports_first else -1]:
                if claim(lane, skip_stores=full, skip_orders=orders):
                    handed = True
                    break
            else:
                break  # nothing due that a free lane may take
        return handed

    def _claim_evaluation(self, lane: Lane, **skip) -> bool:
        now, lease = self.ctx.clock(), self.leases.lease_seconds
        claimed = inbox.claim_order_events(self.db, owner=lane.ctx.owner, now=now, lease=lease, **skip)
        if claimed:
            first = claimed[0]
            lane.hand(lambda ctx: self._evaluate_then_report(ctx, claimed), first["store_hash"], first["order_id"])
        return bool(claimed)

    def _claim_delivery(self, lane: Lane, **skip) -> bool:
        if not self._sending.acquire(blocking=False):
            return False  # SENDING_LANES deliveries in flight already
        with immediate(self.db):
            row = outbox.deliveries.claim(self.db, owner=lane.ctx.owner, now=self.ctx.clock(), lease=self.leases.lease_seconds, **skip)
        if row is None:
            self._sending.release()
            return False
        lane.hand(lambda ctx: self._send(ctx, row), row["store_hash"], row["order_id"])
        return True

    def _send(self, ctx: Context, row: dict) -> None:
        try:
            deliver.handle_row(ctx, row)
        finally:
            self._sending.release()

    def _evaluate_then_report(self, ctx: Context, claimed: list[dict]) -> None:
        """Evaluate an order; a report it queued goes out on the same lane at once, when fewer than
        SENDING_LANES deliveries are in flight (else the dispatcher sends it soon after)."""
        evaluate.handle_claimed(ctx, claimed)
        if self._sending.acquire(blocking=False):
            try:
                deliver.send_now(ctx, outbox.paid_key(claimed[0]["store_hash"], claimed[0]["order_id"]), due_only=True)
            finally:
                self._sending.release()

    def _run_chore(self, ctx: Context) -> None:
        if chores.run_next(ctx):
            self._next_chore_check = ctx.clock()  # another may be due: look again at once

    def run_until_idle(self, limit: int = 10_000) -> int:
        """Work until nothing is due (for tests and one-off runs); returns rounds that worked."""
        rounds = 0
        while rounds < limit and self.run_once():
            rounds += 1
        return rounds

    def deliver_next(self) -> bool:
        return deliver.handle_next(self.ctx)

    def give_back(self, error: str) -> None:
        """Return everything this worker's loop holds to the queue, each as one failed attempt."""
        give_back(self.ctx, error)
        self.owner = self.ctx.owner

    def _all_lanes(self) -> list[Lane]:
        return [*self.lanes, *([self.chore_lane] if self.chore_lane is not None else [])]

    def _heartbeat(self, stop: threading.Event) -> None:
        # Its own connection, waiting briefly for the lock: a renewal that cannot happen
        # now must give up in time for the next one (see Leases).
        db = database.connect(
            self.settings.database.path, migrate=False, busy_timeout=self.leases.heartbeat_busy_timeout, synchronous=database.NORMAL
        )
        try:
            while not stop.wait(self.leases.heartbeat_seconds):
                try:
                    with immediate(db):
                        for owner in [self.owner, *(lane.ctx.owner for lane in self._all_lanes())]:
                            for table in (inbox.events, outbox.deliveries):
                                table.renew(db, owner=owner, now=time.time(), lease=self.leases.lease_seconds)
                            chore_rows.renew(db, owner=owner, now=time.time(), lease=self.leases.lease_seconds)
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
        for lane in self._all_lanes():
            lane.close()
        self.clients.close()
        self.wake.close()
        self.ctx.close()
        self.db.close()


def give_back(ctx: Context, error: str) -> None:
    """Return everything ``ctx``'s owner holds to the queue, each as one failed attempt.

    An answer that could not be recorded yet is recorded as what it was.
    """
    unrecorded, ctx.unrecorded = ctx.unrecorded, None
    try:
        with durable(ctx.db), immediate(ctx.db):
            if unrecorded is not None:
                deliver.record_reply(ctx, *unrecorded)
            for table in (inbox.events, outbox.deliveries):
                for row in table.held(ctx.db, owner=ctx.owner):
                    columns = ctx.failure_columns(row["attempts"] + 1, classify(None, Failure.INTERNAL), None, error)
                    table.settle(ctx.db, [row["id"]], owner=ctx.owner, **columns)
            chore_rows.release(ctx.db, owner=ctx.owner)
    except Exception:
        if unrecorded is not None:
            # An answer from Refersion that the database will not take: stop (crash-only),
            # so the lease runs out and a restarted worker takes the delivery up.
            log.critical("Could not record an answer nor hand back claimed work; stopping the worker")
            raise
        # Nothing was sent: take a new identity, so the heartbeat stops renewing what the
        # old one held; its leases run out and it is claimed again once the database takes
        # writes (a full or read-only disk), while the web half keeps answering 503.
        old, ctx.owner = ctx.owner, _owner_id()
        log.critical("Could not hand back the work of %s; it is taken up again once its leases run out", old, exc_info=True)


def _cached(index: int | str) -> bool:
    """Whether the lane keeps its prepared statements: the chore lane and the first CACHED_LANES."""
    return not isinstance(index, int) or index < CACHED_LANES


class Lane:
    """One of the worker's threads: its own connection and lease owner, one claimed item at a time.

    The dispatcher claims an item in the lane's name and hands it over; the lane runs its
    handler, and on an error hands back what it holds (as the single-threaded loop does).
    An answer the database will not take stops the whole worker (crash-only).
    """

    def __init__(self, worker: Worker, index: int | str, stop: threading.Event):
        self.worker = worker
        self.ctx = Context(
            worker.settings,
            db=database.connect(
                worker.settings.database.path,
                migrate=False,
                synchronous=database.NORMAL,
                cached_statements=database.CACHED_STATEMENTS if _cached(index) else 0,
            ),
            clock=worker.ctx.clock,
            rng=worker.ctx.rng,
            owner=f"{worker.owner}/{index}",
            leases=worker.leases,
            quotas=worker.quotas,
            clients=worker.clients,
        )
        self.ctx.stop = stop
        self.ctx.db_retry_seconds = worker.ctx.db_retry_seconds
        self.ctx.quota_wait = LANE_QUOTA_WAIT
        # A lane reads and writes a few rows per item: a small page cache (SQLite's default is
        # 2 MB per connection) keeps dozens of lanes within the worker's memory budget.
        self.ctx.db.execute(f"PRAGMA cache_size = -{LANE_CACHE_KIB}")
        self.doing: tuple[str, int | None] | None = None  # (store hash, order id) of the item in hand
        self._job: Callable[[Context], object] | None = None
        self._ready = threading.Event()
        self._closing = False
        self.free = True
        self._thread = threading.Thread(target=self._serve, name=f"lane-{index}", daemon=True)
        self._thread.start()

    def hand(self, job: Callable[[Context], object], store_hash: str | None, order_id: int | None) -> None:
        self.free = False
        self.doing = (store_hash, order_id) if store_hash is not None else None
        self._job = job
        self._ready.set()

    def _serve(self) -> None:
        while True:
            self._ready.wait()
            self._ready.clear()
            if self._closing:
                return
            try:
                self._job(self.ctx)
            except Exception as error:
                log.exception("Lane %s: error while working", self.ctx.owner)
                try:
                    give_back(self.ctx, f"internal error: {type(error).__name__}")
                except Exception as fatal:
                    # An answer in hand the database would not take: the whole worker stops (crash-only).
                    self.worker.fatal = fatal
                    self.ctx.stop.set()
            finally:
                self.ctx.return_clients()
                self._job, self.doing, self.free = None, None, True
                self.worker.wake.poke()  # room for more work

    def finish(self, timeout: float = 60.0) -> None:
        """Wait for the item in hand, then end the thread."""
        self._closing = True
        self._ready.set()
        self._thread.join(timeout)

    def close(self) -> None:
        self.finish(timeout=5.0)
        self.ctx.close()
        self.ctx.db.close()
