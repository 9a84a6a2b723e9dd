"""Migrations upgrade a database written by an earlier release, as a real file.

``tests/fixtures/databases/main-a52de89.sqlite3`` was written by the code of main at
a52de89 (the script beside it made it): events in every state, deliveries done, pending
and dead, decisions, a cart link and a Refersion pause.
"""

import json
import shutil
from pathlib import Path

import pytest

from bridge.storage.db import connect, migrations
from tests.conftest import STORE_HASH

OLD_FILE = Path(__file__).parents[1] / "fixtures" / "databases" / "main-a52de89.sqlite3"


@pytest.fixture
def upgraded(tmp_path):
    path = tmp_path / "bridge.sqlite3"
    shutil.copy(OLD_FILE, path)
    db = connect(path)
    yield db
    db.close()


def test_the_old_file_is_upgraded_to_every_migration(upgraded):
    assert [m.name for m in migrations.applied(upgraded)] == [m.name for m in migrations._migrations]
    assert {"decisions", "holds", "stores"} <= set(upgraded.table_names())


def test_its_decisions_become_the_first_rows_of_the_history(upgraded):
    rows = list(upgraded.query("SELECT order_id, verdict, reasons FROM decisions ORDER BY order_id"))
    assert [(row["order_id"], row["verdict"]) for row in rows] == [(101, "report"), (102, "wait")]
    assert json.loads(rows[0]["reasons"]) == [{"code": "eligible", "text": "Paid."}]
    assert [row["verdict"] for row in upgraded.query("SELECT verdict FROM orders ORDER BY order_id")] == ["report", "wait"]


def test_its_deliveries_and_pause_are_kept_under_the_same_keys(upgraded):
    states = {row["key"]: row["state"] for row in upgraded.query("SELECT key, state FROM deliveries")}
    assert states == {f"paid:{STORE_HASH}:101": "done", f"paid:{STORE_HASH}:105": "pending", f"paid:{STORE_HASH}:106": "dead"}
    assert [row["service"] for row in upgraded.query("SELECT service FROM pauses")] == ["refersion"]
    assert [row["cart_id"] for row in upgraded.query("SELECT cart_id FROM cart_links")] == ["cart-uuid-103"]


def test_refund_events_kept_for_later_are_queued_to_re_evaluate_their_order(upgraded):
    by_scope = {row["scope"]: row["state"] for row in upgraded.query("SELECT scope, state FROM events")}
    assert by_scope["store/order/refund/created"] == "pending"
    assert by_scope["store/order/statusUpdated"] in ("pending", "done")
    assert by_scope["store/order/created"] == "ignored"


def test_a_worker_finishes_the_old_files_work(tmp_path, make_settings, make_worker, bigcommerce, refersion, clock):
    from tests.fakes import load_fixture

    path = tmp_path / "old.sqlite3"
    shutil.copy(OLD_FILE, path)
    for order_id in (101, 102, 105):
        bigcommerce.add(load_fixture("manual_discount"), id=order_id)
    worker = make_worker(make_settings(database_path=str(path)))
    worker.resume_changed_credentials()  # the old pause was for other keys: lifted
    worker.run_until_idle()
    db = connect(path)
    try:
        states = {row["order_id"]: row["state"] for row in db.query("SELECT order_id, state FROM deliveries")}
        assert states == {101: "done", 102: "done", 105: "done", 106: "dead"}
        assert sorted(refersion.order_ids) == ["102", "105"]  # 101 was reported before; 106 stays dead
    finally:
        db.close()
