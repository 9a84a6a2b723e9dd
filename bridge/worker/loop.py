"""The worker: turns stored events into decisions and decisions into Refersion reports.

A thin shell around the pure core: it claims work from SQLite, calls BigCommerce and
Refersion through their clients, asks ``rules``, ``payload`` and ``retry`` what to
do, and writes the result back, fenced on its lease.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable

from bridge.clients.bigcommerce import BigCommerceClient, BigCommerceError
from bridge.clients.refersion import RefersionClient, Reply, dumps
from bridge.config import Settings
from bridge.core import rules
from bridge.core.payload import build_paid_order, choose_cart_id
from bridge.core.retry import Action, Failure, Outcome, classify, parse_retry_after
from bridge.storage import db as database
from bridge.storage import inbox, ledger, outbox
from bridge.storage.db import immediate
from bridge.storage.queue import DEAD, HEARTBEAT_SECONDS, PENDING
from bridge.storage.stores import StoreAccess, credentials_fingerprint, store_access

log = logging.getLogger(__name__)

RESUME_CHECK_SECONDS = 10.0
DB_RETRY_SECONDS = 300.0  # how long an answer already received is held while the database refuses it
STOP_GRACE_SECONDS = 20.0  # the same after a stop request (bridge serve waits 30 s before killing)


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
        bigcommerce_sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
    ):
        self.settings = settings
        self.policy = settings.rules
        self.retry = settings.worker.retry
        self.clock = clock
        self.rng = rng
        self.owner = owner or _owner_id()
        self.db = database.connect(settings.database.path)
        self._bigcommerce_sleep = bigcommerce_sleep
        self._bigcommerce: dict[str, tuple[StoreAccess, BigCommerceClient]] = {}
        self._refersion: RefersionClient | None = None
        self._last_resume_check = float("-inf")
        self._stop = threading.Event()
        self._unrecorded: tuple[dict, Reply] | None = None  # an answer the database has not taken yet

    # --- the loop -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set; the item in hand is finished first."""
        self._stop = stop
        log.info("Worker %s started", self.owner)
        # The heartbeat has its own event: leases are renewed until the item in hand is
        # settled, not only until the stop request.
        heartbeat_stop = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(heartbeat_stop,), name="lease-heartbeat", daemon=True)
        heartbeat.start()
        try:
            while not stop.is_set():
                try:
                    worked = self.run_once()
                except Exception as error:
                    # A bug or a database failure does not stop the worker as long as it
                    # can hand back what it held, as a failed attempt: the heartbeat would
                    # otherwise renew the lease of an item nobody works on.
                    log.exception("Worker loop error")
                    self.give_back(f"internal error: {type(error).__name__}")
                    worked = False
                if not worked:
                    stop.wait(self.settings.worker.poll_interval)
        finally:
            stop.set()
            heartbeat_stop.set()
            heartbeat.join(timeout=HEARTBEAT_SECONDS + 1)
            log.info("Worker %s stopped", self.owner)

    def run_once(self) -> bool:
        """Handle at most one event batch and one delivery; True when there was work."""
        if self.clock() - self._last_resume_check >= RESUME_CHECK_SECONDS:
            self.resume_changed_credentials()
        worked = self.process_next_event()
        return self.deliver_next() or worked

    def run_until_idle(self, limit: int = 10_000) -> int:
        """Work until nothing is due (for tests and one-off runs); returns rounds that worked."""
        rounds = 0
        while rounds < limit and self.run_once():
            rounds += 1
        return rounds

    def give_back(self, error: str) -> None:
        """Return everything this worker holds to the queue, each as one failed attempt.

        A Refersion answer that could not be recorded yet is recorded as what it was.
        """
        unrecorded, self._unrecorded = self._unrecorded, None
        try:
            with immediate(self.db):
                if unrecorded is not None:
                    self._record_reply(*unrecorded)
                for table in (inbox.events, outbox.deliveries):
                    for row in table.held(self.db, owner=self.owner):
                        columns = self._failure_columns(row["attempts"] + 1, classify(None, Failure.INTERNAL), None, error)
                        table.settle(self.db, [row["id"]], owner=self.owner, **columns)
        except Exception:
            # Nothing sensible is left to do here: stop, so the leases run out and a
            # restarted worker takes the work up (crash-only).
            log.critical("Could not hand back claimed work; stopping the worker")
            raise

    def _write(self, what: str, write: Callable[[], None]) -> None:
        """Run ``write`` in a transaction, retrying while the database refuses it.

        Used once an outside system has answered: losing that answer would mean asking
        (or sending) again. Gives up after DB_RETRY_SECONDS, or STOP_GRACE_SECONDS
        after a stop request.
        """
        delay = 0.5
        deadline = time.monotonic() + DB_RETRY_SECONDS
        stopping_deadline = None
        while True:
            try:
                with immediate(self.db):
                    write()
                return
            except sqlite3.Error as error:
                now = time.monotonic()
                if self._stop.is_set():
                    stopping_deadline = stopping_deadline or now + STOP_GRACE_SECONDS
                    deadline = min(deadline, stopping_deadline)
                if now >= deadline:
                    raise
                wait = min(delay, deadline - now)
                log.error("Could not record %s (%s); retrying in %.1f s", what, error, wait)
                if self._stop.is_set():
                    time.sleep(wait)
                else:
                    self._stop.wait(wait)  # a stop request shortens the wait, not the retries
                delay = min(delay * 2, 30.0)

    def _heartbeat(self, stop: threading.Event) -> None:
        db = database.connect(self.settings.database.path, migrate=False)
        try:
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    with immediate(db):
                        inbox.events.renew(db, owner=self.owner, now=time.time())
                        outbox.deliveries.renew(db, owner=self.owner, now=time.time())
                except Exception:
                    log.exception("Lease heartbeat failed")
        finally:
            db.close()

    def close(self) -> None:
        for _, client in self._bigcommerce.values():
            client.close()
        if self._refersion is not None:
            self._refersion.close()
        self.db.close()

    # --- pauses -------------------------------------------------------------------

    def resume_changed_credentials(self) -> None:
        """Lift every pause whose credentials have changed since they were refused."""
        self._last_resume_check = self.clock()
        for pause in ledger.pauses(self.db):
            current = credentials_fingerprint(self.settings, pause["store_hash"], pause["service"])
            if current != pause["fingerprint"]:
                ledger.resume(self.db, store_hash=pause["store_hash"], service=pause["service"])
                log.info("Credentials for %s changed: resuming store %s", pause["service"], pause["store_hash"])

    def _pause(self, store_hash: str, service: str, reason: str) -> None:
        fingerprint = credentials_fingerprint(self.settings, store_hash, service) or ""
        ledger.pause(self.db, store_hash=store_hash, service=service, fingerprint=fingerprint, reason=reason, now=self.clock())
        log.warning("Paused %s work for store %s: %s", service, store_hash, reason)

    # --- events -------------------------------------------------------------------

    def _client_for(self, access: StoreAccess) -> BigCommerceClient:
        cached = self._bigcommerce.get(access.store_hash)
        if cached is None or cached[0] != access:
            bc = self.settings.bigcommerce
            client = BigCommerceClient(
                api_url=bc.api_url,
                store_hash=access.store_hash,
                access_token=access.access_token,
                client_id=access.client_id,
                timeout=bc.timeout,
                sleep=self._bigcommerce_sleep,
            )
            cached = self._bigcommerce[access.store_hash] = (access, client)
        return cached[1]

    def process_next_event(self) -> bool:
        claimed = inbox.claim_order_events(self.db, owner=self.owner, now=self.clock())
        if not claimed:
            return False
        store_hash, order_id = claimed[0]["store_hash"], claimed[0]["order_id"]
        ids = [row["id"] for row in claimed]
        access = store_access(self.settings, store_hash)
        if access is None:
            self._settle_events(
                ids, state=inbox.IGNORED, outcome="unknown_store", note=f"The bridge has no credentials for store {store_hash}."
            )
            return True
        try:
            self._evaluate(access, order_id, ids)
        except BigCommerceError as error:
            self._event_failed(claimed, str(error), classify(error.status, error.failure), error.retry_after)
        except Exception as error:
            log.exception("Error while evaluating order %s of store %s", order_id, store_hash)
            self._event_failed(claimed, f"internal error: {type(error).__name__}", classify(None, Failure.INTERNAL), None)
        return True

    def _evaluate(self, access: StoreAccess, order_id: int, ids: list[int]) -> None:
        store_hash = access.store_hash
        earlier = outbox.delivery_state(self.db, kind=outbox.PAID, store_hash=store_hash, order_id=order_id)
        if earlier is not None:
            # Reported (or on its way) already: no BigCommerce call needed to know that.
            decision = rules.decide(None, self.policy, order_id=order_id, delivery_state=earlier)
            self._settle_events(ids, state=inbox.DONE, outcome=decision.reasons[0].code, note=decision.summary)
            return

        client = self._client_for(access)
        order = client.fetch_order(order_id)
        decision = rules.decide(order, self.policy, order_id=order_id)
        cart = payload = None
        if decision.report:
            lines = client.fetch_order_products(order_id)
            coupons = client.fetch_order_coupons(order_id)
            known = ledger.known_cart_ids(self.db, store_hash=store_hash, order_id=order_id)
            cart = choose_cart_id(
                {**known, "order": order["cart_id"]},
                key=self.settings.webhooks.secret.encode(),
                store_hash=store_hash,
                order_id=order_id,
            )
            payload = dumps(build_paid_order(order, lines, coupons, cart_id=cart.value, excluded_coupons=self.policy.excluded_coupons))

        now = self.clock()
        note = decision.summary
        if payload is not None and self.policy.dry_run:
            note = f"Dry run: {note} Nothing was sent."
        with immediate(self.db):
            if payload is not None:
                outbox.enqueue(
                    self.db,
                    kind=outbox.PAID,
                    store_hash=store_hash,
                    order_id=order_id,
                    payload=payload,
                    now=now,
                    dry_run=self.policy.dry_run,
                )
            ledger.record_decision(self.db, store_hash=store_hash, order_id=order_id, decision=decision, order=order, cart=cart, now=now)
            self._settle_events(ids, state=inbox.DONE, outcome=decision.verdict.value, note=note)
        log.info("Order %s of store %s: %s (%s)", order_id, store_hash, decision.verdict.value, ", ".join(decision.codes))

    def _settle_events(self, ids: list[int], *, state: str, outcome: str, note: str) -> None:
        settled = inbox.events.settle(
            self.db, ids, owner=self.owner, state=state, outcome=outcome, note=note, last_error=None, finished_at=self.clock()
        )
        if settled < len(ids):
            log.warning("Lost the lease on %d of events %s; another worker has them", len(ids) - settled, ids)

    def _failure_columns(self, failures: int, outcome: Outcome, retry_after: float | None, error: str) -> dict:
        """How a failed attempt is written back: retried later on the schedule, or dead."""
        now = self.clock()
        delay = None
        if outcome.action is Action.RETRY:
            delay = self.retry.delay(failures, jitter=self.rng(), retry_after=retry_after, overloaded=outcome.overloaded)
        if delay is None:
            return {"state": DEAD, "attempts": failures, "last_error": error}
        return {"state": PENDING, "attempts": failures, "due_at": now + delay, "last_error": error}

    def _event_failed(self, claimed: list[dict], error: str, outcome: Outcome, retry_after: float | None) -> None:
        ids = [row["id"] for row in claimed]
        store_hash, order_id = claimed[0]["store_hash"], claimed[0]["order_id"]
        with immediate(self.db):
            if outcome.action is Action.PAUSE:
                self._pause(store_hash, "bigcommerce", f"BigCommerce refused the store's API credentials: {error}")
                inbox.events.settle(self.db, ids, owner=self.owner, state=PENDING, due_at=self.clock(), last_error=error)
                return
            columns = self._failure_columns(max(row["attempts"] for row in claimed) + 1, outcome, retry_after, error)
            if columns["state"] == DEAD:
                columns["finished_at"] = self.clock()
                log.error("Gave up on order %s of store %s after %d attempts: %s", order_id, store_hash, columns["attempts"], error)
            else:
                log.warning("Order %s of store %s: %s; retrying in %.0f s", order_id, store_hash, error, columns["due_at"] - self.clock())
            inbox.events.settle(self.db, ids, owner=self.owner, **columns)

    # --- deliveries ---------------------------------------------------------------

    def _refersion_client(self) -> RefersionClient:
        if self._refersion is None:
            ref = self.settings.refersion
            self._refersion = RefersionClient(
                orders_url=ref.orders_url, public_key=ref.public_key, secret_key=ref.secret_key, timeout=ref.timeout
            )
        return self._refersion

    def deliver_next(self) -> bool:
        with immediate(self.db):
            row = outbox.deliveries.claim(self.db, owner=self.owner, now=self.clock())
        if row is None:
            return False
        try:
            reply = self._refersion_client().post_paid_order(row["payload"])
        except Exception as error:  # a bug on our side, not an answer from Refersion
            log.exception("Error while sending order %s to Refersion", row["order_id"])
            reply = Reply(None, body=f"internal error: {type(error).__name__}", failure=Failure.INTERNAL)
        self._unrecorded = (row, reply)
        self._write(f"Refersion's answer for order {row['order_id']}", lambda: self._record_reply(row, reply))
        self._unrecorded = None
        return True

    def _record_reply(self, row: dict, reply: Reply) -> None:
        """Write what Refersion answered and what follows from it (call in a transaction)."""
        outcome = classify(reply.status, reply.failure)
        now = self.clock()
        seen = {"last_status": reply.status, "response": reply.body if reply.status else None, "updated_at": now}
        order = f"order {row['order_id']} of store {row['store_hash']}"
        if outcome.action is Action.DONE:
            settle = {"state": outbox.DONE, "done_at": now, "last_error": None}
            log.info("Reported %s to Refersion (HTTP %s)", order, reply.status)
        elif outcome.action is Action.PAUSE:
            self._pause(row["store_hash"], "refersion", f"Refersion refused the API keys ({reply.summary}).")
            settle = {"state": PENDING, "due_at": now, "last_error": reply.summary}
        else:
            retry_after = parse_retry_after(reply.retry_after, now)
            settle = self._failure_columns(row["attempts"] + 1, outcome, retry_after, reply.summary)
            if settle["state"] == DEAD:
                log.error("Refersion delivery of %s is dead after %d attempts: %s", order, settle["attempts"], reply.summary)
            else:
                log.warning("Refersion delivery of %s failed (%s); retrying in %.0f s", order, reply.summary, settle["due_at"] - now)
        if not outbox.deliveries.settle(self.db, [row["id"]], owner=self.owner, **seen, **settle):
            log.warning("Lost the lease on delivery %s before recording Refersion's answer", row["id"])
