"""``bridge orders why|list`` and ``bridge replay``: the status page's story, in the terminal."""

from __future__ import annotations

import time

import click

from bridge.cli.common import load_settings_or_exit, prepare_database
from bridge.storage import db as database
from bridge.storage import history
from bridge.storage.replays import replay as replay_work


def _open(ctx: click.Context):
    settings = load_settings_or_exit(ctx)
    prepare_database(ctx, settings)
    return database.connect(settings.database.path)


def _pick_store(ctx: click.Context, db, order_id: int, store: str | None) -> str:
    stores = history.stores_with_order(db, order_id)
    if store is not None:
        stores = [hash_ for hash_ in stores if hash_ == store]
    if not stores:
        where = f" for store {store}" if store else ""
        click.echo(f"The bridge never heard of order #{order_id}{where}: no webhook for it has arrived.", err=True)
        ctx.exit(1)
    if len(stores) > 1:
        click.echo(f"Order #{order_id} exists in several stores ({', '.join(stores)}); choose one with --store.", err=True)
        ctx.exit(2)
    return stores[0]


def print_story(story: dict) -> None:
    """Print one order's story (``history.order_story``) as plain lines: decision, reasons, events, deliveries."""
    click.echo(f"Order #{story['order_id']} of store {story['store_hash']}: {story['decision'].upper().replace('_', ' ')}")
    for reason in story["reasons"]:
        click.echo(f"  {reason['text']} [{reason['code']}]")
    if story["note"]:
        click.echo(f"  {story['note']}")
    if (story.get("storefront") or {}).get("text"):
        click.echo(f"  {story['storefront']['text']}")
    click.echo("Events received:")
    for event in story["events"]:
        found = f" (found by {event['found_by']})" if event.get("found_by") else ""
        outcome = f": {event['outcome']}" if event["outcome"] else ""
        click.echo(f"  {event['received_at']}  {event['scope']}{found}  ({event['state']}{outcome})")
    if story["decisions"]:
        click.echo("Decisions, oldest first:")
        for decision in story["decisions"]:
            codes = ", ".join(reason["code"] for reason in decision["reasons"])
            click.echo(f"  {decision['at']}  {decision['decision']}  ({codes})")
    for delivery in story["deliveries"]:
        click.echo(f"Delivery ({delivery['kind']}): {delivery['state']}, {delivery['attempts']} failed attempt(s)")
        if delivery["last_status"] is not None:
            click.echo(f"  Refersion answered HTTP {delivery['last_status']}: {delivery['last_answer'] or '(empty)'}")
        elif delivery["last_answer"]:
            click.echo(f"  Last problem: {delivery['last_answer']}")
        if delivery["next_attempt_at"]:
            click.echo(f"  Next attempt at {delivery['next_attempt_at']}")
        if "would_have_sent" in delivery:
            click.echo(f"  Dry run: would have sent {delivery['would_have_sent']}")
    if story.get("cancellations"):
        click.echo("Refunds and cancellations:")
        for cancellation in story["cancellations"]:
            click.echo(f"  {cancellation['text']} [{cancellation['state']}]")
            if cancellation["last_status"] is not None:
                click.echo(f"    Refersion answered HTTP {cancellation['last_status']}: {cancellation['last_answer'] or '(empty)'}")


@click.group()
def orders() -> None:
    """What happened to orders, and why."""


@orders.command()
@click.argument("order_id", type=click.IntRange(1))
@click.option("--store", help="Store hash, when the order id exists in several stores.")
@click.pass_context
def why(ctx: click.Context, order_id: int, store: str | None) -> None:
    """Tell an order's whole story: why it was (not) reported."""
    db = _open(ctx)
    try:
        store_hash = _pick_store(ctx, db, order_id, store)
        story = history.order_story(db, store_hash=store_hash, order_id=order_id)
    finally:
        db.close()
    print_story(story)


@orders.command(name="list")
@click.option("--decision", type=click.Choice(history.DECISIONS), help="Only orders with this decision.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="How many, newest first.")
@click.pass_context
def list_(ctx: click.Context, decision: str | None, limit: int) -> None:
    """List the most recent orders with their decision and reason."""
    db = _open(ctx)
    try:
        found = history.list_orders(db, decision=decision, limit=limit)
    finally:
        db.close()
    if not found:
        click.echo("No orders yet." if decision is None else f"No {decision} orders.")
    for row in found:
        click.echo(f"{row['at']}  #{row['order_id']:<10} {row['store_hash']:<12} {row['decision']:<9} {row['reason']}")


@click.command()
@click.argument("order_id", type=click.IntRange(1), required=False)
@click.option("--dead", is_flag=True, help="Replay every dead delivery (and event) instead of one order's.")
@click.option("--store", help="Only this store.")
@click.pass_context
def replay(ctx: click.Context, order_id: int | None, dead: bool, store: str | None) -> None:
    """Re-queue an order's dead or paused work, or every dead delivery with --dead."""
    if (order_id is None) == (not dead):
        raise click.UsageError("give either ORDER_ID or --dead")
    db = _open(ctx)
    try:
        if order_id is not None:
            store = _pick_store(ctx, db, order_id, store)
        with database.immediate(db):
            done = replay_work(db, now=time.time(), store_hash=store, order_id=order_id)
    finally:
        db.close()
    for row in done["deliveries"]:
        of = f"of order #{row['order_id']}" if row["order_id"] is not None else row["key"]  # a coupon push has no order
        click.echo(f"Re-queued the {row['kind']} delivery {of} (store {row['store_hash']}).")
    for row in done["events"]:
        click.echo(f"Re-queued {row['scope']} for order #{row['order_id']} (store {row['store_hash']}).")
    for row in done["resumed"]:
        click.echo(f"Resumed store {row['store_hash']} ({row['service']} was paused).")
    if not any(done.values()):
        click.echo("Nothing to replay: nothing is dead or paused" + (f" for order #{order_id}." if order_id else "."))
