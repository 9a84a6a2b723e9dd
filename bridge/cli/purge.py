"""``bridge purge [--dry-run]``: remove customer data past ``database.retention_days`` now."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from bridge.cli.common import load_settings_or_exit, prepare_database
from bridge.storage import db as database
from bridge.storage import purge as retention


def _date(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") if timestamp is not None else "none"


def _describe(entry: retention.StoreFigures, dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    name = entry.store_hash or "(no store)"
    if entry.deleted:
        counts = ", ".join(f"{count} {table}" for table, count in entry.deleted.items())
        return f"store {name}: uninstalled over the retention period ago: {verb} its whole history ({counts})"
    return (
        f"store {name}: {verb} customer data from {entry.events} event(s) and {entry.payloads} delivery payload(s); "
        f"oldest customer data kept: {_date(entry.oldest_kept)}"
    )


@click.command()
@click.option("--dry-run", is_flag=True, help="Say per store what would be removed, and change nothing.")
@click.pass_context
def purge(ctx: click.Context, dry_run: bool) -> None:
    """Remove customer data (emails, names, addresses, IPs) older than database.retention_days."""
    settings = load_settings_or_exit(ctx)
    prepare_database(ctx, settings)
    days = settings.database.retention_days
    db = database.connect(settings.database.path)
    try:
        if dry_run:
            figures = retention.plan(db, now=time.time(), retention_days=days)
        else:
            figures = retention.purge(db, now=time.time(), retention_days=days)
    finally:
        db.close()
    changed = [entry for entry in figures if entry.events or entry.payloads or entry.deleted]
    if not changed:
        click.echo(f"Nothing to purge: no settled row is older than {days} days (database.retention_days).")
    for entry in figures if dry_run else changed:
        click.echo(_describe(entry, dry_run))
    if dry_run and changed:
        click.echo("Dry run: nothing was changed.")
