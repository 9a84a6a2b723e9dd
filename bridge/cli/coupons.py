"""``bridge coupons push|list``: create a coupon code in BigCommerce from the ``coupons.*`` template,
as Refersion's coupon trigger does, and list the codes pushed."""

from __future__ import annotations

import time

import click

from bridge.cli.common import chosen_stores, load_settings_or_exit, prepare_database
from bridge.core.coupons import code_problem
from bridge.storage import db as database
from bridge.storage import history, outbox, refersion_events
from bridge.storage.stores import StoreRegistry

COUPONS_OFF = (
    "Coupon push is off: add a [coupons] section to the configuration (see config.example.toml: "
    "api, promotion_id or discount_type and amount)."
)


@click.group()
def coupons() -> None:
    """Coupon codes pushed to BigCommerce (Refersion's coupon triggers)."""


@coupons.command()
@click.argument("code")
@click.option("--store", "store_hash", help="Store hash, when the bridge serves several stores.")
@click.pass_context
def push(ctx: click.Context, code: str, store_hash: str | None) -> None:
    """Create CODE in BigCommerce from the [coupons] template, now; a code that exists already is fine."""
    from bridge.worker.deliver import send_now
    from bridge.worker.loop import Worker

    settings = load_settings_or_exit(ctx)
    if settings.coupons is None:
        click.echo(COUPONS_OFF, err=True)
        ctx.exit(2)
    code = code.strip()
    problem = code_problem(code)
    if problem:
        click.echo(f"Not a code BigCommerce accepts: {problem}.", err=True)
        ctx.exit(2)
    prepare_database(ctx, settings)
    db = database.connect(settings.database.path)
    try:
        stores = chosen_stores(ctx, StoreRegistry(settings).all(db), store_hash)
        if len(stores) > 1:
            served = ", ".join(store.store_hash for store in stores)
            click.echo(f"The bridge serves several stores ({served}); choose one with --store.", err=True)
            ctx.exit(2)
        store = stores[0]
        key = outbox.coupon_key(store.store_hash, code)
        now = time.time()
        with database.immediate(db):
            queued = outbox.enqueue(
                db,
                key=key,
                kind=outbox.COUPON,
                store_hash=store.store_hash,
                order_id=None,
                payload=refersion_events.coupon_payload(code, source=refersion_events.TERMINAL),
                now=now,
            )
            if not queued:
                outbox.requeue(db, key=key, now=now)  # a code that failed before is tried again
    finally:
        db.close()
    worker = Worker(settings)
    try:
        sent = send_now(worker.ctx, key)
        shown = history.coupon_pushes(worker.db, key=key)[0]
    finally:
        worker.close()
    words = f"Code {shown['code']} (store {store.store_hash}): {shown['state']}"
    if sent is None and shown["state"] in ("pushed", "already existed"):
        words += " (before this command)"
    click.echo(words + (f": {shown['reason'].rstrip('.')}" if shown["reason"] else "") + ".")
    if shown["state"] in ("paused", "waiting", "retrying"):
        click.echo("The worker (bridge serve or bridge worker) sends it when it can.")
    ctx.exit(0 if shown["state"] in ("pushed", "already existed") else 1)


@coupons.command(name="list")
@click.option("--store", "store_hash", help="Only this store.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="How many, newest first.")
@click.pass_context
def list_(ctx: click.Context, store_hash: str | None, limit: int) -> None:
    """List the codes pushed to BigCommerce, and the failures with BigCommerce's reason."""
    settings = load_settings_or_exit(ctx)
    prepare_database(ctx, settings)
    db = database.connect(settings.database.path)
    try:
        found = history.coupon_pushes(db, stores=None if store_hash is None else [store_hash], limit=limit)
    finally:
        db.close()
    if settings.coupons is None:
        click.echo("Coupon push is off (no [coupons] section); codes pushed before are listed.", err=True)
    if not found:
        click.echo("No coupon code pushed yet.")
    for row in found:
        reason = f"  {row['reason']}" if row["reason"] else ""
        click.echo(f"{row['at']}  {row['store_hash']:<12} {row['code']:<24} {row['state']}{reason}")
