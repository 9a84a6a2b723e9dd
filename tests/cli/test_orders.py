"""``bridge orders why|list`` and ``bridge replay`` over a database the real pipeline filled."""

import os

import pytest
from click.testing import CliRunner

from bridge.cli import cli
from tests.conftest import REFERSION_SECRET, STORE_HASH, WEBHOOK_SECRET, post_webhook, status_updated
from tests.fakes import load_fixture


@pytest.fixture
def run(environ):
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}

    def invoke(*args):
        return CliRunner().invoke(cli, list(args), env={**clean, **environ})

    return invoke


@pytest.fixture
def dead_order(client, worker, bigcommerce, refersion):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    refersion.answer_next(400, body='{"error": "Missing required field: items"}')
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    return order_id


def test_why_tells_the_story_in_plain_words(run, dead_order):
    result = run("orders", "why", str(dead_order))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Order #{dead_order} of store {STORE_HASH}: DEAD"
    assert "Refersion refused the report for good" in result.output
    assert "store/order/statusUpdated" in result.output
    assert 'Refersion answered HTTP 400: {"error": "Missing required field: items"}' in result.output
    for secret in (WEBHOOK_SECRET, REFERSION_SECRET):
        assert secret not in result.output


def test_why_for_an_order_never_heard_of_says_so_and_fails(run, db):
    result = run("orders", "why", "424242")
    assert result.exit_code == 1
    assert "never heard of order #424242" in result.output


def test_list_shows_decisions_newest_first_and_filters(run, client, worker, bigcommerce, dead_order):
    free = bigcommerce.add(load_fixture("odd_cents"), total_inc_tax="0.0000")
    post_webhook(client, status_updated(free, 11))
    worker.run_until_idle()
    result = run("orders", "list")
    assert result.exit_code == 0
    assert [line.split()[1] for line in result.output.splitlines()] == [f"#{free}", f"#{dead_order}"]
    only_dead = run("orders", "list", "--decision", "dead")
    assert [line.split()[1] for line in only_dead.output.splitlines()] == [f"#{dead_order}"]
    assert run("orders", "list", "--decision", "nonsense").exit_code == 2


def test_replay_re_queues_a_dead_delivery_once_and_the_worker_sends_it(run, worker, refersion, db, dead_order):
    result = run("replay", str(dead_order))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Re-queued the paid delivery of order #{dead_order} (store {STORE_HASH})."
    again = run("replay", str(dead_order))
    assert again.output.strip() == f"Nothing to replay: nothing is dead or paused for order #{dead_order}."
    worker.run_until_idle()
    assert refersion.order_ids == [str(dead_order)]


def test_replay_dead_re_queues_every_dead_delivery(run, dead_order, db):
    result = run("replay", "--dead")
    assert f"order #{dead_order}" in result.output
    assert next(db.query("SELECT state, attempts FROM deliveries")) == {"state": "pending", "attempts": 0}


def test_replay_needs_an_order_or_dead(run):
    result = run("replay")
    assert result.exit_code == 2
    assert "give either ORDER_ID or --dead" in result.output


def test_replay_dead_names_a_coupon_push_by_its_key_not_an_order(run, db):
    import time

    from bridge.storage import outbox
    from bridge.storage.db import immediate

    key = outbox.coupon_key(STORE_HASH, "ANNA-10")
    with immediate(db):
        payload = '{"code": "ANNA-10"}'
        outbox.enqueue(db, key=key, kind=outbox.COUPON, store_hash=STORE_HASH, order_id=None, payload=payload, now=time.time())
        db.execute("UPDATE deliveries SET state = 'dead' WHERE key = ?", [key])
    result = run("replay", "--dead")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Re-queued the coupon delivery {key} (store {STORE_HASH})."
