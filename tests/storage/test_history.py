"""The read side over a database filled by the real pipeline: webhooks through the Flask
intake, the worker against the fake BigCommerce and Refersion (never rows inserted by hand)."""

import json
import time

import pytest

from bridge.storage import history
from tests.conftest import STORE_HASH, post_webhook, status_updated
from tests.fakes import load_fixture
from tests.web.status_data import today


@pytest.fixture
def pipeline(client, worker, bigcommerce, refersion, db):
    """Orders that end in every decision but paused and dry run; returns their ids by decision."""
    ids = today(client, worker, bigcommerce, refersion)
    post_webhook(client, status_updated(999_001, 11, store_hash="otherstore"))  # a store the bridge does not serve
    worker.run_until_idle()
    return ids


def test_each_order_is_counted_once_under_its_current_decision(db, pipeline):
    counts, by_reason = history.counts(db)
    assert counts == {
        "received": 6,
        "reported": 1,
        "skipped": 2,
        "waiting": 1,
        "retrying": 1,
        "dead": 1,
        "paused": 0,
        "dry_run": 0,
    }
    assert by_reason == {"free_order": 1, "unknown_store": 1}


def test_recent_orders_say_why_in_plain_words(db, pipeline):
    recent = {row["order_id"]: row for row in history.list_orders(db)}
    assert recent[pipeline["reported"]]["decision"] == "reported"
    assert recent[pipeline["reported"]]["refersion_status"] == 200
    assert (recent[pipeline["free"]]["decision"], recent[pipeline["free"]]["reason_code"]) == ("skipped", "free_order")
    assert "free orders are never reported" in recent[pipeline["free"]]["reason"]
    assert recent[pipeline["pending"]]["reason_code"] == "status_not_yet"
    assert (recent[pipeline["retrying"]]["decision"], recent[pipeline["retrying"]]["refersion_status"]) == ("retrying", 503)
    assert recent[pipeline["dead"]]["decision"] == "dead"
    assert "Missing required field" in recent[pipeline["dead"]]["reason"]
    assert all(row["at"].endswith("Z") for row in recent.values())
    assert [row["decision"] for row in history.list_orders(db, decision="dead")] == ["dead"]
    assert len(history.list_orders(db, limit=2)) == 2


def test_a_viewer_sees_only_the_stores_they_may_see(db, pipeline):
    assert {row["store_hash"] for row in history.list_orders(db, stores=[STORE_HASH])} == {STORE_HASH}
    assert history.counts(db, stores=["otherstore"])[0]["received"] == 1
    assert history.order_story(db, store_hash="otherstore", order_id=pipeline["reported"]) is None


def test_an_orders_story_holds_its_events_decisions_and_deliveries(db, pipeline):
    story = history.order_story(db, store_hash=STORE_HASH, order_id=pipeline["dead"])
    assert (story["decision"], story["reasons"][0]["code"]) == ("dead", "delivery_failed")
    assert [event["scope"] for event in story["events"]] == ["store/order/statusUpdated"]
    assert [d["decision"] for d in story["decisions"]] == ["eligible"]  # what the rules said then; the delivery died
    (delivery,) = story["deliveries"]
    assert (delivery["kind"], delivery["state"], delivery["attempts"], delivery["last_status"]) == ("paid", "dead", 1, 400)
    assert delivery["last_answer"] == '{"error": "Missing required field: items"}'
    assert delivery["next_attempt_at"] is None

    waiting = history.order_story(db, store_hash=STORE_HASH, order_id=pipeline["retrying"])
    assert waiting["deliveries"][0]["next_attempt_at"].endswith("Z")
    assert history.order_story(db, store_hash=STORE_HASH, order_id=123456789) is None


def test_store_health_from_what_the_worker_saw(db, pipeline):
    health = history.store_health(db, STORE_HASH)
    assert health["bigcommerce"]["ok"] is True
    assert health["refersion"] == {"ok": True, "paused": False, "detail": health["refersion"]["detail"]}
    assert health["hooks"] == {
        "registered": None,
        "active": None,
        "missing": [],
        "inactive": [],
        "checked_at": None,
        "detail": "Not checked yet.",
    }
    assert health["last_webhook_at"].endswith("Z")


def test_reported_and_skipped_orders_per_day_over_thirty_days(db, pipeline):
    days = history.daily(db, now=time.time())
    assert len(days) == 30
    assert days[-1]["reported"] == 1 and days[-1]["skipped"] == 2
    assert sum(day["reported"] + day["skipped"] for day in days[:-1]) == 0


def test_refused_keys_show_as_paused_and_a_dry_run_shows_the_body_it_would_have_sent(
    client, make_settings, make_worker, bigcommerce, refersion, db
):
    refersion.secret_key = "sec_rotated_in_refersion"
    paused = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(paused, 11))
    make_worker().run_until_idle()
    assert history.list_orders(db)[0]["decision"] == "paused"
    assert history.store_health(db, STORE_HASH)["refersion"]["paused"] is True

    dry = bigcommerce.add(load_fixture("odd_cents"))
    post_webhook(client, status_updated(dry, 11))
    make_worker(make_settings(rules_dry_run="true")).run_until_idle()
    story = history.order_story(db, store_hash=STORE_HASH, order_id=dry)
    assert story["decision"] == "dry_run"
    body = json.loads(story["deliveries"][0]["would_have_sent"])
    assert body["order_id"] == str(dry)


def test_status_puts_it_together_in_the_spec_shape(db, pipeline):
    status = history.status(db, [(STORE_HASH, "api_account")])
    assert set(status) == {"stores", "counts", "skipped_by_reason", "recent", "coverage"}
    (store,) = status["stores"]
    assert set(store) == {"store_hash", "mode", "bigcommerce", "hooks", "refersion", "last_webhook_at"}
    assert set(status["recent"][0]) == {"store_hash", "order_id", "decision", "reason_code", "reason", "refersion_status", "at"}


def test_a_report_waiting_for_its_retry_says_so_rather_than_repeating_why_it_was_eligible(db, pipeline):
    story = history.order_story(db, store_hash=STORE_HASH, order_id=pipeline["retrying"])
    assert story["decision"] == "retrying"
    assert [reason["code"] for reason in story["reasons"]] == ["delivery_retrying"]
    skipped = history.order_story(db, store_hash=STORE_HASH, order_id=pipeline["free"])
    assert [reason["code"] for reason in skipped["reasons"]] == ["free_order"]


def test_a_cart_link_alone_is_not_an_order_heard_of(client, db):
    from tests.conftest import envelope

    post_webhook(client, envelope("store/cart/converted", {"type": "cart", "id": "c-777", "orderId": 777001}))
    assert history.counts(db)[0]["received"] == 0
    assert history.stores_with_order(db, 777001) == []


ADMIN = "adm-tok-coverage-0123456789"


@pytest.fixture
def settings(make_settings):
    return make_settings(server_admin_token=ADMIN, server_session_secret="sess-coverage-0123456789abcdef")


def test_coverage_counts_the_orders_only_reconcile_or_backfill_found(client, worker, clock, bigcommerce, refersion, db):
    from bridge.storage.inbox import BACKFILL
    from bridge.worker import reconcile

    worker.run_until_idle()  # schedules the reconcile chore
    for order_id in (9001, 9002, 9003):
        bigcommerce.add_order(order_id, created_at=clock.now)
        post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    webhook_at = history.store_health(db, STORE_HASH)["last_webhook_at"]
    bigcommerce.add_order(9010, created_at=clock.now)  # its webhook never came
    clock.advance(900)
    worker.run_until_idle()
    bigcommerce.add_order(9020, created_at=clock.now)
    store = worker.ctx.stores.get(db, STORE_HASH)
    reconcile.walk(worker.ctx, store, clock.now - 10, clock.now + 10, scope=BACKFILL)
    worker.run_until_idle()
    assert sorted(refersion.order_ids) == ["9001", "9002", "9003", "9010", "9020"]

    expected = {
        "days": 30,
        "orders": 5,
        "by_webhook": 3,
        "recovered": {"reconcile": 1, "backfill": 1},
        "percent_by_webhook": 60.0,
        "summary": "60% of orders arrived by webhook; 2 were recovered (1 by reconcile, 1 by backfill) (last 30 days).",
    }
    status = history.status(db, [(STORE_HASH, "api_account")])
    assert status["coverage"] == {**expected, "stores": {STORE_HASH: expected}}
    assert history.store_health(db, STORE_HASH)["last_webhook_at"] == webhook_at  # found orders are no webhooks
    assert history.status(db, [(STORE_HASH, "api_account")], now=time.time() + 31 * 86400)["coverage"]["summary"] == (
        "No orders in the last 30 days yet."
    )

    api = client.get("/api/status", headers={"Authorization": f"Bearer {ADMIN}"}).get_json()
    assert api["coverage"]["summary"] == expected["summary"] and api["coverage"]["recovered"] == {"reconcile": 1, "backfill": 1}
    story = client.get("/api/orders/9010", headers={"Authorization": f"Bearer {ADMIN}"}).get_json()
    assert [(event["scope"], event["found_by"]) for event in story["events"]] == [("bridge/reconcile", "reconcile")]

    client.post("/login", data={"token": ADMIN})
    page = client.get("/").get_data(as_text=True)
    assert "60% of orders arrived by webhook; 2 were recovered (1 by reconcile, 1 by backfill) (last 30 days)." in page
    assert "found by reconcile" in client.get(f"/orders/9010?store={STORE_HASH}").get_data(as_text=True)


@pytest.mark.parametrize(
    ("webhook", "reconcile", "backfill", "words"),
    [
        (986, 13, 0, "98.6% of orders arrived by webhook; 13 were recovered by reconcile (last 30 days)."),
        (9999, 1, 0, "99.9% of orders arrived by webhook; 1 was recovered by reconcile (last 30 days)."),  # never rounded up to 100
        (4, 0, 0, "100% of orders arrived by webhook; none needed recovering (last 30 days)."),
        (0, 0, 2, "0% of orders arrived by webhook; 2 were recovered by backfill (last 30 days)."),
    ],
)
def test_coverage_in_words(webhook, reconcile, backfill, words):
    assert history._coverage_figures(30, webhook, reconcile, backfill)["summary"] == words
