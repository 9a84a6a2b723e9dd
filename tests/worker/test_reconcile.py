"""The reconcile chore: orders no webhook brought are found in BigCommerce's order list and
evaluated as a webhook's would be, once each; the window is remembered across restarts and an
outage reported with ``bring_forward`` is walked. Real worker, real SQLite, sandbox BigCommerce."""

import time

import pytest

from bridge.clients.bigcommerce import rfc2822
from bridge.sandbox.bigcommerce import parse_date
from bridge.storage import chores as chore_rows
from bridge.storage.db import immediate
from bridge.worker import reconcile
from tests.conftest import STORE_HASH, post_webhook, status_updated

INTERVAL = 900.0


@pytest.fixture(autouse=True)
def only_this_chore(monkeypatch):
    """The reconcile chore alone: the others (due on the same clock) would spend the sandbox's quota and move its rows."""
    from bridge.worker import chores
    from bridge.worker import reconcile as under_test

    monkeypatch.setattr(chores, "CHORES", [under_test.CHORE])


def state(db):
    return chore_rows.find(db, name="reconcile", store_hash=STORE_HASH)["state"]


def listings(bigcommerce):
    return bigcommerce.recorded(r"/v2/orders$")


def events(db, order_id):
    return [row["scope"] for row in db.query("SELECT scope FROM events WHERE order_id = ? ORDER BY id", [order_id])]


def test_an_order_whose_webhook_never_arrived_is_reported_after_one_interval(worker, clock, bigcommerce, refersion, db):
    scheduled = clock.now
    worker.run_until_idle()  # schedules the chore: its first pass is one interval from now
    bigcommerce.add_order(7001)  # created in BigCommerce; no webhook reaches the bridge
    clock.advance(INTERVAL - 1)
    worker.run_until_idle()
    assert refersion.order_ids == []
    clock.advance(1)
    worker.run_until_idle()
    assert refersion.order_ids == ["7001"]
    assert events(db, 7001) == ["bridge/reconcile"]
    listing = listings(bigcommerce)[0]
    assert parse_date(listing.query["min_date_modified"]) == int(scheduled - reconcile.OVERLAP_SECONDS)  # not all history
    assert state(db)["until"] == pytest.approx(clock.now - reconcile.LAG_SECONDS)
    clock.advance(INTERVAL)
    worker.run_until_idle()
    assert refersion.order_ids == ["7001"]  # the next pass (it overlaps the last) queues nothing again
    assert events(db, 7001) == ["bridge/reconcile"]


def test_an_order_whose_webhook_arrived_is_not_evaluated_again(client, worker, clock, bigcommerce, refersion, db):
    worker.run_until_idle()
    bigcommerce.add_order(7101)
    bigcommerce.add_order(7102, status_id=1)  # pending: skipped for now, on this version of the order
    for order_id, status in [(7101, 11), (7102, 1)]:
        post_webhook(client, status_updated(order_id, status))
    worker.run_until_idle()
    reads = bigcommerce.calls(7101) + bigcommerce.calls(7102)
    clock.advance(INTERVAL)
    worker.run_until_idle()
    assert len(listings(bigcommerce)) >= 1
    assert bigcommerce.calls(7101) + bigcommerce.calls(7102) == reads  # not one more read of either
    assert events(db, 7101) == events(db, 7102) == ["store/order/statusUpdated"]
    assert refersion.order_ids == ["7101"]


def test_a_newer_version_of_an_order_decided_on_before_is_evaluated(client, worker, clock, bigcommerce, refersion, db):
    worker.run_until_idle()
    bigcommerce.add_order(7201, status_id=1)
    post_webhook(client, status_updated(7201, 1))
    worker.run_until_idle()
    time.sleep(1.1)  # date_modified has one-second steps
    bigcommerce.update_order(7201, status_id=11, payment_status="captured")  # its webhook is lost
    clock.advance(INTERVAL)
    worker.run_until_idle()
    assert refersion.order_ids == ["7201"]
    assert events(db, 7201) == ["store/order/statusUpdated", "bridge/reconcile"]


def test_the_window_is_remembered_across_a_worker_restart(make_worker, clock, bigcommerce, refersion, db):
    first = make_worker()
    first.run_until_idle()
    clock.advance(INTERVAL)
    first.run_until_idle()
    walked, asked = state(db)["until"], len(listings(bigcommerce))
    first.close()
    clock.advance(3 * INTERVAL)
    bigcommerce.add_order(7301, created_at=clock.now - INTERVAL)  # while no worker ran
    second = make_worker()
    second.run_until_idle()
    assert refersion.order_ids == ["7301"]
    assert parse_date(listings(bigcommerce)[asked].query["min_date_modified"]) == int(walked - reconcile.OVERLAP_SECONDS)


def test_bring_forward_with_since_walks_an_older_outage_then_forgets_it(worker, clock, bigcommerce, refersion, db):
    worker.run_until_idle()
    clock.advance(INTERVAL)
    worker.run_until_idle()
    bigcommerce.add_order(7401, created_at=clock.now - 2 * 86400)  # during an outage two days ago
    clock.advance(60)
    worker.run_until_idle()
    assert refersion.order_ids == []
    with immediate(db):
        chore_rows.bring_forward(db, name="reconcile", store_hash=STORE_HASH, due_at=clock.now, state={"since": clock.now - 3 * 86400})
    clock.advance(1)  # the worker looks for due chores once a second
    worker.run_until_idle()
    assert refersion.order_ids == ["7401"]
    assert "since" not in state(db)
    assert state(db)["until"] == pytest.approx(clock.now - reconcile.LAG_SECONDS)


def test_a_pass_stops_before_the_quota_is_spent_and_the_next_goes_on_from_there(worker, clock, bigcommerce, refersion, db):
    bigcommerce.max_page_size = 2
    worker.run_until_idle()
    start = int(clock.now)
    for order_id in range(7501, 7511):
        bigcommerce.add_order(order_id, created_at=start + (order_id - 7501))
    bigcommerce.set_quota(STORE_HASH, reconcile.RESERVE + 3, window_ms=400)
    clock.advance(INTERVAL)
    worker.run_once()  # the pass alone: three pages, then the headers say only the reserve is left
    assert len(listings(bigcommerce)) == 3
    assert state(db)["resume"] == start + 3  # the last date listed (each page starts at the last one's): resumed there
    assert db.execute("SELECT count(*) FROM holds WHERE store_hash = ?", [STORE_HASH]).fetchone()[0] == 1
    for _ in range(100):  # the worker goes on in real time, the quota's window being real time too
        time.sleep(0.1)
        clock.advance(INTERVAL / 10)
        worker.run_until_idle()
        if len(refersion.order_ids) == 10:
            break
    assert sorted(refersion.order_ids) == [str(order_id) for order_id in range(7501, 7511)]
    assert [r.status for r in listings(bigcommerce)].count(429) == 0


def test_no_chore_when_the_interval_is_zero(make_settings, make_worker, clock, bigcommerce, db):
    worker = make_worker(make_settings(worker_reconcile_interval="0"))
    bigcommerce.add_order(7601)
    worker.run_until_idle()
    clock.advance(10 * INTERVAL)
    worker.run_until_idle()
    assert chore_rows.find(db, name="reconcile", store_hash=STORE_HASH) is None
    assert listings(bigcommerce) == []


def test_the_first_window_starts_when_the_chore_was_scheduled_not_at_the_dawn_of_time():
    since, until = reconcile.window({}, now=10_000.0, first_since=5_000.0)
    assert (since, until) == (5_000.0 - reconcile.OVERLAP_SECONDS, 10_000.0 - reconcile.LAG_SECONDS)
    since, _ = reconcile.window({"until": 9_000.0, "since": 1_000.0}, now=10_000.0, first_since=0.0)
    assert since == 1_000.0
    assert rfc2822(0) == "Thu, 01 Jan 1970 00:00:00 +0000"


def test_bridge_orders_why_says_who_found_the_order(worker, clock, bigcommerce, refersion, environ):
    import os

    from click.testing import CliRunner

    from bridge.cli import cli

    worker.run_until_idle()
    bigcommerce.add_order(7701, created_at=clock.now)
    clock.advance(INTERVAL)
    worker.run_until_idle()
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}
    result = CliRunner().invoke(cli, ["orders", "why", "7701"], env={**clean, **environ})
    assert result.exit_code == 0, result.output
    assert "bridge/reconcile (found by reconcile)  (done: report)" in result.output


def test_a_pass_waits_while_the_store_is_held_by_any_process(worker, clock, bigcommerce, refersion, db):
    """A 429 another process met (or a platform hold) is in the database, not in this client: no listing until it ends."""
    from bridge.storage import pauses

    worker.run_until_idle()
    bigcommerce.add_order(7701)
    with immediate(db):
        pauses.hold(db, store_hash=STORE_HASH, service="bigcommerce", until=clock.now + INTERVAL + 30, reason="429 elsewhere")
    clock.advance(INTERVAL)
    worker.run_until_idle()
    assert listings(bigcommerce) == []
    clock.advance(INTERVAL)
    worker.run_until_idle()
    assert refersion.order_ids == ["7701"]


def test_a_long_window_is_walked_a_few_pages_a_run_with_other_work_in_between(worker, clock, bigcommerce, refersion, db, monkeypatch):
    monkeypatch.setattr(reconcile, "PAGES_PER_RUN", 2)
    bigcommerce.max_page_size = 2
    worker.run_until_idle()
    start = int(clock.now)
    for order_id in range(7801, 7811):  # five pages or more
        bigcommerce.add_order(order_id, created_at=start + (order_id - 7801))
    clock.advance(INTERVAL)
    worker.run_once()  # one run: its page budget, then the chore is due again at once
    assert len(listings(bigcommerce)) == 2 and "resume" in state(db)
    assert chore_rows.find(db, name="reconcile", store_hash=STORE_HASH)["due_at"] <= clock.now
    worker.run_until_idle()
    assert sorted(refersion.order_ids) == [str(order_id) for order_id in range(7801, 7811)]
    assert "resume" not in state(db) and "until" in state(db)
