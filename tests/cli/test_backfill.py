"""``bridge backfill``: every order modified in the window that no webhook brought is evaluated
once, as the worker would; reported orders cost no BigCommerce read; a re-run adds nothing; the
quota is never overspent. Real SQLite, sandbox BigCommerce on a real local server."""

import os
import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from bridge.cli import cli
from bridge.worker import reconcile
from tests.conftest import STORE_HASH, post_webhook, status_updated

HOUR = 3600


@pytest.fixture
def run(environ):
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}

    def invoke(*args):
        return CliRunner().invoke(cli, ["backfill", *args], env={**clean, **environ})

    return invoke


def day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def events(db, scope="bridge/backfill"):
    return sorted(row["order_id"] for row in db.query("SELECT order_id FROM events WHERE scope = ?", [scope]))


def queued_reports(db):
    return sorted(row["order_id"] for row in db.query("SELECT order_id FROM deliveries WHERE kind = 'paid'"))


def reads(bigcommerce, order_ids):
    return sum(bigcommerce.calls(order_id) for order_id in order_ids)


@pytest.fixture
def shop(client, worker, bigcommerce, refersion):
    """Orders over the last days on pages of three: one reported by its webhook before, the rest
    never heard of (eligible, pending, free), and one modified before the window."""
    now = time.time()
    bigcommerce.max_page_size = 3
    eligible = [8001, 8002, 8003, 8004, 8005, 8006]
    for offset, order_id in enumerate(eligible):
        bigcommerce.add_order(order_id, created_at=now - 40 * HOUR + offset * HOUR)
    bigcommerce.add_order(8010, status_id=1, created_at=now - 30 * HOUR)  # pending: not eligible yet
    bigcommerce.add_order(8011, total="0", lines=[{"sku": "FREE", "qty": 1, "price": "0"}], created_at=now - 20 * HOUR)
    bigcommerce.add_order(8020, created_at=now - 10 * HOUR)
    post_webhook(client, status_updated(8020, 11))  # its webhook arrived: reported already
    worker.run_until_idle()
    bigcommerce.update_order(8020, status_id=2)  # shipped since; that webhook was lost
    bigcommerce.add_order(8030, created_at=now - 100 * HOUR)  # before the window
    assert refersion.order_ids == ["8020"]
    return {"now": now, "eligible": eligible, "since": day(now - 48 * HOUR)}


def test_every_order_of_the_window_is_evaluated_once_and_reported_ones_cost_no_read(run, shop, worker, bigcommerce, refersion, db):
    before = reads(bigcommerce, [8020])
    result = run("--since", shop["since"])
    assert result.exit_code == 0, result.output
    assert events(db) == [*shop["eligible"], 8010, 8011]  # not 8020 (reported), not 8030 (outside)
    assert queued_reports(db) == [*shop["eligible"], 8020]
    assert reads(bigcommerce, [8020]) == before  # the reported order: no read at all
    assert refersion.order_ids == ["8020"]  # reports are left to the worker
    assert f"Store {STORE_HASH}: 9 order(s) in" in result.output
    assert "6 to report, 1 not reported under the rules, 1 not eligible yet, 1 already reported or decided" in result.output
    assert "6 report(s) queued for Refersion: the worker sends them" in result.output
    worker.run_until_idle()
    assert sorted(refersion.order_ids) == sorted(str(order_id) for order_id in [*shop["eligible"], 8020])


def test_a_re_run_queues_nothing_and_reads_no_order(run, shop, bigcommerce, db):
    assert run("--since", shop["since"]).exit_code == 0
    evaluated = [row["id"] for row in db.query("SELECT id FROM events")]
    order_ids = [*shop["eligible"], 8010, 8011, 8020]
    before = reads(bigcommerce, order_ids)
    result = run("--since", shop["since"])
    assert result.exit_code == 0, result.output
    assert [row["id"] for row in db.query("SELECT id FROM events")] == evaluated
    assert reads(bigcommerce, order_ids) == before
    assert "0 to report, 0 not reported under the rules, 0 not eligible yet, 9 already reported or decided" in result.output


def test_until_and_store_narrow_the_walk(run, shop, db):
    result = run("--since", shop["since"], "--until", day(shop["now"] - 36 * HOUR), "--store", STORE_HASH)
    assert result.exit_code == 0, result.output
    assert events(db) == [8001, 8002, 8003, 8004, 8005]
    result = run("--since", shop["since"], "--store", "nosuchstore")
    assert result.exit_code == 2
    assert f"The bridge does not serve store nosuchstore (it serves: {STORE_HASH})." in result.output


def test_a_day_alone_is_a_whole_utc_day(run, bigcommerce, db):
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    bigcommerce.add_order(8101)
    result = run("--since", today, "--until", today)
    assert result.exit_code == 0, result.output
    assert events(db) == [8101]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "Invalid value for '--since': 'yesterday' is not a date: give YYYY-MM-DD or an ISO 8601 time"),
        (["--since", "2026-13-01"], "Invalid value for '--since': '2026-13-01' is not a date"),
        (["--since", "2026-11-01", "--until", "11/02/2026"], "Invalid value for '--until': '11/02/2026' is not a date"),
        (
            ["--since", "2026-11-02", "--until", "2026-11-01T23:00:00+00:00"],
            "--since (2026-11-02 00:00:00 UTC) is after --until (2026-11-01 23:00:00 UTC)",
        ),
        ([], "Missing option '--since'"),
    ],
)
def test_bad_dates_exit_2_with_one_clear_line(run, args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_not_on_a_terminal_progress_is_plain_lines(run, shop):
    result = run("--since", shop["since"])
    assert "\r" not in result.output and "\x1b" not in result.output
    progress = [line for line in result.output.splitlines() if line.startswith(f"{STORE_HASH}: pages")]
    assert progress[-1].startswith(f"{STORE_HASH}: pages ") and "orders 9, to report 6, skipped 2," in progress[-1]  # 8011, 8020
    assert len(progress) >= 3  # a line a page


def test_the_walk_waits_for_the_quota_to_reset_instead_of_being_refused(run, shop, bigcommerce, db):
    bigcommerce.reset_records()
    bigcommerce.set_quota(STORE_HASH, reconcile.RESERVE + 4, window_ms=300)
    started = time.monotonic()
    result = run("--since", shop["since"])
    assert result.exit_code == 0, result.output
    assert events(db) == [*shop["eligible"], 8010, 8011]
    assert queued_reports(db) == [*shop["eligible"], 8020]
    answered = [request.status for request in bigcommerce.requests]
    assert answered.count(429) == 0
    assert len(answered) > reconcile.RESERVE + 4  # more than one window's quota: it did wait
    assert time.monotonic() - started > 0.3


def test_ctrl_c_mid_walk_leaves_nothing_half_done_and_a_re_run_finishes_the_job(spawn, run, bigcommerce, db):
    import signal

    from tests.processes import wait_for

    now = time.time()
    bigcommerce.max_page_size = 2
    order_ids = list(range(8201, 8221))
    for offset, order_id in enumerate(order_ids):
        bigcommerce.add_order(order_id, created_at=now - 3 * HOUR + offset)
    bigcommerce.latency = 0.2  # slow enough to be stopped mid-evaluation
    process = spawn(["backfill", "--since", day(now - 4 * HOUR)])
    wait_for(lambda: f"{STORE_HASH}: pages 2," in process.output, timeout=30)
    time.sleep(0.5)  # the next page is listed (0.2 s); its first order's evaluation takes a second
    assert process.stop(signal.SIGINT, timeout=20) == 130, process.output
    assert "Interrupted. The orders queued so far are kept" in process.output
    assert "Traceback" not in process.output
    assert [row["state"] for row in db.query("SELECT state FROM events WHERE state = 'working'")] == []
    assert 0 < len(events(db)) < len(order_ids)

    bigcommerce.latency = 0.0
    result = run("--since", day(now - 4 * HOUR))
    assert result.exit_code == 0, result.output
    assert events(db) == order_ids  # each queued once over both runs
    assert queued_reports(db) == order_ids
