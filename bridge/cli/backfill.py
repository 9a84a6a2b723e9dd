"""``bridge backfill``: re-read the orders modified in a window and evaluate each one no webhook
brought, as the worker would (webhooks missed while the bridge or a hook was down).

It walks BigCommerce's order list a page at a time (``worker/reconcile.py``), queues an
evaluation of every order that needs one and evaluates them in this process, waiting for the
store's quota to reset rather than spending it. It queues reports and sends none: the running
worker (``bridge serve`` or ``bridge worker``) sends them, with its retries and pauses. Stopping
it (Ctrl-C) leaves whole pages queued; running it again queues nothing twice.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta

import click

from bridge.cli.common import chosen_stores, command_name, load_settings_or_exit, prepare_database
from bridge.clients.bigcommerce import BigCommerceError
from bridge.storage import db as database
from bridge.storage import inbox
from bridge.storage.db import immediate
from bridge.storage.queue import LEASES, PENDING
from bridge.worker import reconcile
from bridge.worker.context import Context

REDRAW_SECONDS = 0.2  # the progress line is redrawn at most this often


class Moment(click.ParamType):
    """``YYYY-MM-DD`` (a day, in UTC) or an ISO 8601 time (UTC when it names no zone)."""

    name = "DATE"

    def __init__(self, *, end_of_day: bool = False):
        self.end_of_day = end_of_day  # --until 2026-11-29 includes that whole day

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            if len(text) == 10:
                day = date.fromisoformat(text)
                start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                return (start + timedelta(days=1, seconds=-1) if self.end_of_day else start).timestamp()
            when = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a date: give YYYY-MM-DD or an ISO 8601 time such as 2026-11-29T14:30:00Z.", param, ctx)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Pages, orders, to report, skipped, elapsed and ETA: one redrawn line on a terminal, plain lines otherwise."""

    def __init__(self, store_hash: str, *, terminal: bool):
        self.store_hash = store_hash
        self.terminal = terminal
        self.started = time.monotonic()
        self._drawn = 0.0
        self._width = 0

    def show(self, walk: reconcile.Walk, tally: dict[str, int], *, page_done: bool) -> None:
        elapsed = time.monotonic() - self.started
        skipped = walk.skipped + tally.get(reconcile.NOT_REPORTED, 0) + tally.get(reconcile.SETTLED_BEFORE, 0)
        figures = f"pages {walk.pages}, orders {walk.orders}, to report {tally.get(reconcile.TO_REPORT, 0)}, skipped {skipped}"
        if not self.terminal:
            if page_done:
                click.echo(f"{self.store_hash}: {figures}, {_duration(elapsed)} elapsed")
            return
        now = time.monotonic()
        if not page_done and now - self._drawn < REDRAW_SECONDS:
            return
        self._drawn = now
        share = walk.progress
        eta = _duration(elapsed * (1 - share) / share) if share > 0 else "?"
        bar = "#" * round(share * 20)
        line = f"{self.store_hash} [{bar:<20}] {share:4.0%}  {figures}  {_duration(elapsed)} elapsed, ETA {eta}"
        click.echo("\r" + line.ljust(self._width), nl=False)
        self._width = len(line)

    def done(self) -> None:
        if self.terminal and self._width:
            click.echo()


def _heartbeat(path: str, owner: str, stop: threading.Event) -> None:
    """Keep the leases of the events this process evaluates, as the worker's heartbeat does."""
    db = database.connect(path, migrate=False, busy_timeout=LEASES.heartbeat_busy_timeout)
    try:
        while not stop.wait(LEASES.heartbeat_seconds):
            try:
                with immediate(db):
                    inbox.events.renew(db, owner=owner, now=time.time(), lease=LEASES.lease_seconds)
            except Exception:  # the next beat tries again; the lease outlasts two missed beats
                pass
    finally:
        db.close()


def _give_back(ctx: Context) -> int:
    """Return the events this process holds to the queue as they were (no attempt spent)."""
    with immediate(ctx.db):
        held = [row["id"] for row in inbox.events.held(ctx.db, owner=ctx.owner)]
        if held:
            inbox.events.settle(ctx.db, held, owner=ctx.owner, state=PENDING, due_at=ctx.clock())
    return len(held)


@click.command()
@click.option(
    "--since", required=True, type=Moment(), help="Orders modified from this date: YYYY-MM-DD or ISO 8601 (UTC unless a zone is given)."
)
@click.option("--until", type=Moment(end_of_day=True), help="…up to this date (a day counts whole) [default: now].")
@click.option("--store", "store_hash", metavar="HASH", help="Only this store [default: every store the bridge serves].")
@click.pass_context
def backfill(ctx: click.Context, since: float, until: float | None, store_hash: str | None) -> None:
    """Evaluate the orders modified since DATE that no webhook brought (reports are queued for the worker; safe to re-run)."""
    until = time.time() if until is None else until
    if since > until:
        raise click.BadParameter(f"--since ({_utc(since)}) is after --until ({_utc(until)}).", param_hint="'--since'")
    settings = load_settings_or_exit(ctx)
    prepare_database(ctx, settings)
    owner = f"backfill:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    context = Context(settings, db=database.connect(settings.database.path), clock=time.time, rng=random.random, owner=owner, leases=LEASES)
    stop = threading.Event()
    heartbeat = threading.Thread(target=_heartbeat, args=(settings.database.path, owner, stop), name="backfill-heartbeat", daemon=True)
    try:
        stores = chosen_stores(ctx, context.stores.all(context.db), store_hash)
        heartbeat.start()
        click.echo(f"Backfill of orders modified from {_utc(since)} to {_utc(until)}.")
        failed = _run(context, stores, since, until, terminal=sys.stdout.isatty())
    except KeyboardInterrupt:
        returned = _give_back(context)
        click.echo()
        click.echo(
            "Interrupted. The orders queued so far are kept"
            + (f" ({returned} evaluation(s) handed back to the worker)" if returned else "")
            + f"; run `{command_name()} backfill` again with the same dates to go on: nothing is queued twice.",
            err=True,
        )
        ctx.exit(130)
    finally:
        stop.set()
        if heartbeat.is_alive():
            heartbeat.join(timeout=LEASES.heartbeat_busy_timeout + 1)
        context.close()
        context.db.close()
    ctx.exit(1 if failed else 0)


def _run(ctx: Context, stores: list, since: float, until: float, *, terminal: bool) -> bool:
    """Walk and evaluate each store in turn, with progress and a summary; True when a store failed."""
    failed = False
    queued_reports = 0
    for store in stores:
        progress = Progress(store.store_hash, terminal=terminal)
        tally: dict[str, int] = {}

        def evaluate_page(walk: reconcile.Walk, event_ids: list[int], store=store, progress=progress, tally=tally) -> None:
            for how, count in reconcile.evaluate_now(ctx, store, event_ids, sleep=time.sleep).items():
                tally[how] = tally.get(how, 0) + count
            progress.show(walk, tally, page_done=True)

        def wait(seconds: float, store=store, progress=progress) -> bool:
            if not progress.terminal:
                click.echo(f"{store.store_hash}: the API quota is nearly spent; waiting {seconds:.1f} s for it to reset")
            time.sleep(seconds)
            return True

        try:
            walk = reconcile.walk(ctx, store, since, until, scope=inbox.BACKFILL, on_page=evaluate_page, wait=wait)
        except BigCommerceError as error:
            progress.done()
            click.echo(
                f"{store.store_hash}: stopped: {error}. The orders queued so far are kept; run `{command_name()} backfill` again to go on.",
                err=True,
            )
            failed = True
            continue
        progress.done()
        click.echo(_summary(store.store_hash, walk, tally))
        queued_reports += tally.get(reconcile.TO_REPORT, 0)
    if queued_reports:
        click.echo(
            f"{queued_reports} report(s) queued for Refersion: the worker sends them "
            f"(`{command_name()} serve` or `{command_name()} worker`; if none is running, they wait for it)."
        )
    return failed


def _summary(store_hash: str, walk: reconcile.Walk, tally: dict[str, int]) -> str:
    parts = [
        f"{tally.get(reconcile.TO_REPORT, 0)} to report",
        f"{tally.get(reconcile.NOT_REPORTED, 0)} not reported under the rules",
        f"{tally.get(reconcile.NOT_YET, 0)} not eligible yet",
        f"{walk.skipped + tally.get(reconcile.SETTLED_BEFORE, 0)} already reported or decided",
    ]
    if tally.get(reconcile.LEFT_TO_WORKER):
        parts.append(f"{tally[reconcile.LEFT_TO_WORKER]} left to the worker (BigCommerce could not be read yet)")
    return f"Store {store_hash}: {walk.orders} order(s) in {walk.pages} page(s): " + ", ".join(parts) + "."
