"""``bridge purge [--dry-run]``: per store, what goes (or would go), and the oldest customer data kept."""

from __future__ import annotations

import time

from click.testing import CliRunner

from bridge.cli import cli
from bridge.storage import outbox
from bridge.storage.db import immediate
from tests.conftest import STORE_HASH

DAY = 86_400.0
PAYLOAD = '{"cart_id":"c-%d","order_id":"%d","items":[],"customer":{"email":"buyer%d@example.com"}}'


def queue_done(db, order_id: int, created_at: float) -> None:
    with immediate(db):
        outbox.enqueue(
            db, key=outbox.paid_key(STORE_HASH, order_id), kind=outbox.PAID, store_hash=STORE_HASH, order_id=order_id,
            payload=PAYLOAD % (order_id, order_id, order_id), now=created_at,
        )  # fmt: skip
        db.execute("UPDATE deliveries SET state = 'done', done_at = ? WHERE order_id = ?", [created_at, order_id])


def purge(environ, *args):
    return CliRunner().invoke(cli, ["purge", *args], env=environ)


def test_a_dry_run_says_per_store_what_would_go_and_changes_nothing(environ, db):
    now = time.time()
    queue_done(db, 1, now - 120 * DAY)
    queue_done(db, 2, now - 100 * DAY)
    queue_done(db, 3, now - 30 * DAY)
    before = list(db.query("SELECT * FROM deliveries ORDER BY id"))

    result = purge(environ, "--dry-run")
    assert result.exit_code == 0, result.output
    kept = time.strftime("%Y-%m-%d", time.gmtime(now - 30 * DAY))
    assert result.output.splitlines() == [
        f"store {STORE_HASH}: would remove customer data from 0 event(s) and 2 delivery payload(s); oldest customer data kept: {kept}",
        "Dry run: nothing was changed.",
    ]
    assert list(db.query("SELECT * FROM deliveries ORDER BY id")) == before


def test_a_purge_removes_then_finds_nothing(environ, db):
    queue_done(db, 1, time.time() - 120 * DAY)
    result = purge(environ)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"store {STORE_HASH}: removed customer data from 0 event(s) and 1 delivery payload(s)")
    assert "buyer1@example.com" not in next(db.query("SELECT payload FROM deliveries"))["payload"]
    again = purge(environ)
    assert again.output == "Nothing to purge: no settled row is older than 90 days (database.retention_days).\n"


def test_the_retention_period_is_the_config_s(environ, db):
    queue_done(db, 1, time.time() - 20 * DAY)
    assert "Nothing to purge" in purge(environ).output
    assert "1 delivery payload(s)" in purge({**environ, "BRIDGE_DATABASE_RETENTION_DAYS": "10"}).output
