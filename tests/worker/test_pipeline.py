"""Webhook in, Refersion out: each order reported exactly once, on its current state.

Real Flask intake, real SQLite, real worker; BigCommerce and Refersion are fakes on
local HTTP servers.
"""

import json
from decimal import Decimal

import pytest

from tests.conftest import REFERSION_PUBLIC, REFERSION_SECRET, envelope, post_webhook, status_updated
from tests.fakes import load_fixture


def order_row(db, order_id):
    return next(db.query("SELECT * FROM orders WHERE order_id = ?", [order_id]))


def test_a_paid_order_is_reported_with_the_expected_payload_and_headers(client, worker, bigcommerce, refersion, db):
    fixture = load_fixture("coupons_one_excluded")
    order_id = bigcommerce.add(fixture)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()

    (received,) = refersion.received
    expected = dict(fixture["expected_payload"])
    expected["discount_code"] = "AFFILIATE10,HOLIDAY5"  # the test settings exclude no coupon
    assert json.loads(received.raw, parse_float=Decimal) == json.loads(json.dumps(expected), parse_float=Decimal)
    assert received.headers["Refersion-Public-Key"] == REFERSION_PUBLIC
    assert received.headers["Refersion-Secret-Key"] == REFERSION_SECRET
    assert received.headers["Content-Type"] == "application/json"
    delivery = next(db.query("SELECT * FROM deliveries"))
    assert (delivery["state"], delivery["last_status"], delivery["attempts"]) == ("done", 200, 0)
    assert "success" in delivery["response"]
    row = order_row(db, order_id)
    assert (row["verdict"], row["cart_id_source"]) == ("report", "order")
    assert json.loads(row["reasons"])[0]["code"] == "eligible"


def test_excluded_coupons_from_the_config_are_not_passed_on(make_settings, make_worker, client, bigcommerce, refersion):
    worker = make_worker(make_settings(rules_excluded_coupons="holiday5"))
    order_id = bigcommerce.add(load_fixture("coupons_one_excluded"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.received[0].body["discount_code"] == "AFFILIATE10"


def test_the_same_webhook_five_times_reports_once(client, worker, bigcommerce, refersion):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    for _ in range(5):
        post_webhook(client, status_updated(order_id, 11))
        worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]


def test_status_11_then_2_then_10_reports_once(client, worker, bigcommerce, refersion, db):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    for step, (previous, new) in enumerate([(0, 11), (11, 2), (2, 10)]):
        bigcommerce.update(order_id, status_id=new)
        post_webhook(client, status_updated(order_id, new, previous, created_at=1_790_000_000 + step))
        worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]
    outcomes = [row["outcome"] for row in db.query("SELECT outcome FROM events ORDER BY id")]
    assert outcomes == ["report", "already_reported", "already_reported"]
    # order, lines (one page, whose quantities make the order's items_total), coupons (a 204): once, for the first event only
    assert bigcommerce.calls(order_id) == 3


def test_events_arriving_newest_first_report_once_on_the_current_state(client, worker, bigcommerce, refersion):
    order_id = bigcommerce.add(load_fixture("manual_discount"), status_id=10)
    post_webhook(client, status_updated(order_id, 10, 11, created_at=1_790_000_300))
    post_webhook(client, status_updated(order_id, 11, 1, created_at=1_790_000_200))
    post_webhook(client, envelope("store/order/created", {"type": "order", "id": order_id}, created_at=1_790_000_100))
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]


def test_events_waiting_together_cost_one_round_of_calls(client, worker, bigcommerce, refersion, db):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, envelope("store/order/created", {"type": "order", "id": order_id}))
    post_webhook(client, envelope("store/order/updated", {"type": "order", "id": order_id}))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]
    assert bigcommerce.calls(order_id) == 3
    assert {row["state"] for row in db.query("SELECT state FROM events")} == {"done"}


def test_pending_then_awaiting_fulfillment_is_reported_once_on_the_second_event(client, worker, bigcommerce, refersion, db):
    order_id = bigcommerce.add(load_fixture("manual_discount"), status_id=1, payment_status="pending")
    post_webhook(client, envelope("store/order/created", {"type": "order", "id": order_id}))
    worker.run_until_idle()
    assert refersion.received == []
    row = order_row(db, order_id)
    assert row["verdict"] == "wait"
    assert [reason["code"] for reason in json.loads(row["reasons"])] == ["status_not_yet", "payment_not_yet"]
    assert bigcommerce.calls(order_id) == 1  # not eligible: lines and coupons are not read

    bigcommerce.update(order_id, status_id=11, payment_status="captured")
    post_webhook(client, status_updated(order_id, 11, 1))
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]
    assert order_row(db, order_id)["verdict"] == "report"


def test_the_cart_id_from_cart_converted_beats_the_orders_own(client, worker, bigcommerce, refersion):
    order_id = bigcommerce.add(load_fixture("manual_discount"), cart_id="order-own-cart-id")
    post_webhook(client, envelope("store/cart/converted", {"type": "cart", "id": "5e1c0a77-converted-cart", "orderId": order_id}))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.received[0].body["cart_id"] == "5e1c0a77-converted-cart"


def test_without_any_cart_id_an_unguessable_one_is_sent_and_the_order_is_marked(client, worker, bigcommerce, refersion, db):
    order_id = bigcommerce.add(load_fixture("manual_discount"), cart_id=None)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    cart_id = refersion.received[0].body["cart_id"]
    assert 16 <= len(cart_id) <= 255 and str(order_id) not in cart_id
    row = order_row(db, order_id)
    assert row["cart_id_source"] == "fallback"
    assert row["note"] == "No cart id: only coupon attribution can credit an affiliate."


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"total_inc_tax": "0.0000"}, "free_order"),
        ({"is_deleted": True}, "deleted"),
        ({"status_id": 5}, "status_excluded"),
        ({"payment_status": "declined"}, "payment_excluded"),
    ],
)
def test_ineligible_orders_are_recorded_with_their_reason_and_not_sent(client, worker, bigcommerce, refersion, db, changes, code):
    order_id = bigcommerce.add(load_fixture("manual_discount"), **changes)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.attempts == []
    row = order_row(db, order_id)
    assert row["verdict"] == "skip"
    assert json.loads(row["reasons"])[0]["code"] == code


def test_an_order_bigcommerce_does_not_know_is_recorded_as_not_found(client, worker, bigcommerce, refersion, db):
    post_webhook(client, status_updated(9999, 11))
    worker.run_until_idle()
    assert refersion.attempts == []
    assert json.loads(order_row(db, 9999)["reasons"])[0]["code"] == "order_not_found"


def test_dry_run_evaluates_and_records_but_sends_nothing(make_settings, make_worker, client, bigcommerce, refersion, db):
    worker = make_worker(make_settings(rules_dry_run="true"))
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.attempts == []
    delivery = next(db.query("SELECT state, payload FROM deliveries"))
    assert delivery["state"] == "dry_run"
    assert json.loads(delivery["payload"])["order_id"] == str(order_id)
    assert next(db.query("SELECT note FROM events"))["note"].startswith("Dry run:")


def test_bigcommerce_errors_retry_the_event_on_the_schedule(client, worker, bigcommerce, refersion, db, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    bigcommerce.fail_next(503)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    event = next(db.query("SELECT * FROM events"))
    assert (event["state"], event["attempts"]) == ("pending", 1)
    assert event["due_at"] - clock.now == pytest.approx(5)
    assert "503" in event["last_error"]
    assert refersion.attempts == []

    clock.advance(5)
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]
    assert next(db.query("SELECT state, last_error FROM events")) == {"state": "done", "last_error": None}


def test_events_die_when_the_schedule_runs_out(make_settings, make_worker, client, bigcommerce, db, clock):
    worker = make_worker(make_settings(worker_retry_schedule="[5, 10]"))
    bigcommerce.fail_next(500, times=10)
    post_webhook(client, status_updated(1, 11))
    for _ in range(3):
        worker.run_until_idle()
        clock.advance(20)
    event = next(db.query("SELECT * FROM events"))
    assert (event["state"], event["attempts"]) == ("dead", 3)


def test_refused_bigcommerce_credentials_pause_the_store_until_they_change(
    make_settings, make_worker, client, bigcommerce, refersion, db, clock
):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    bigcommerce.access_token = "rotated-token-000000"
    worker = make_worker()
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    clock.advance(3600)
    worker.run_until_idle()
    event = next(db.query("SELECT * FROM events"))
    assert (event["state"], event["attempts"]) == ("pending", 0)  # paused: no attempt burnt
    assert bigcommerce.calls() == 1
    (pause,) = db.query("SELECT * FROM pauses")
    assert pause["service"] == "bigcommerce" and "401" in pause["reason"]

    fixed = make_worker(make_settings(bigcommerce_access_token="rotated-token-000000"))
    fixed.run_until_idle()
    assert refersion.order_ids == [str(order_id)]
    assert list(db.query("SELECT * FROM pauses")) == []


def test_an_event_whose_store_lost_its_credentials_is_ignored(make_settings, make_worker, client, bigcommerce, refersion, db):
    post_webhook(client, status_updated(250, 11))
    other = make_worker(make_settings(bigcommerce_store_hash="other1"))
    other.run_until_idle()
    assert next(db.query("SELECT state, outcome FROM events")) == {"state": "ignored", "outcome": "unknown_store"}
    assert bigcommerce.calls() == 0


def test_two_updates_without_created_at_are_both_acted_on(client, worker, bigcommerce, refersion):
    """Identical data, no created_at: the second (sent once the order is paid) must not
    be mistaken for a re-delivery of the first."""
    order_id = bigcommerce.add(load_fixture("manual_discount"), status_id=7, payment_status="pending")
    body = envelope("store/order/updated", {"type": "order", "id": order_id}, created_at=None)
    post_webhook(client, body)
    worker.run_until_idle()
    assert refersion.received == []
    bigcommerce.update(order_id, status_id=11, payment_status="captured")
    post_webhook(client, body)
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]


def test_a_line_whose_sku_and_name_are_null_is_reported_not_lost(client, worker, bigcommerce, refersion, db):
    fixture = load_fixture("manual_discount")
    fixture["products"][0].update(sku=None, name=None)
    fixture["order"]["billing_address"] = None
    order_id = bigcommerce.add(fixture, handling_cost_ex_tax=None, discount_amount=None, is_deleted=None)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    (received,) = refersion.received
    assert received.body["items"] == [{"sku": f"product-{fixture['products'][0]['product_id']}", "quantity": 1, "price": 45.0}]
    assert received.body["customer"] == {"ip_address": "203.0.113.24"}  # the billing address was null
    assert next(db.query("SELECT state FROM deliveries"))["state"] == "done"


def test_custom_lines_get_a_sku_of_their_own_and_gift_certificates_are_left_out(client, worker, bigcommerce, refersion, db):
    fixture = load_fixture("manual_discount")
    line = fixture["products"][0]
    fixture["products"] = [
        {**line, "id": 401, "product_id": 0, "sku": "", "name": "Custom engraving"},
        {**line, "id": 402, "product_id": None, "sku": None, "name": "Gift wrap by hand"},
        {**line, "id": 403, "product_id": 0, "sku": "", "type": "giftcertificate", "name": "$25 Gift Certificate"},
    ]
    order_id = bigcommerce.add(fixture)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert [item["sku"] for item in refersion.received[0].body["items"]] == ["line-401", "line-402"]
    meta = json.loads(next(db.query("SELECT meta FROM deliveries"))["meta"])
    assert [item["order_product_id"] for item in meta["items"]] == [401, 402]


def test_an_order_of_only_gift_certificates_is_skipped_and_reported_when_the_merchant_says_so(
    client, make_settings, make_worker, bigcommerce, refersion, db
):
    fixture = load_fixture("manual_discount")
    fixture["products"][0].update(type="giftcertificate", sku="", product_id=0, name="$50 Gift Certificate")
    order_id = bigcommerce.add(fixture)
    post_webhook(client, status_updated(order_id, 11))
    make_worker().run_until_idle()
    assert refersion.attempts == []
    assert json.loads(order_row(db, order_id)["reasons"])[0]["code"] == "gift_certificates_only"

    second = bigcommerce.add(fixture, id=order_id + 1)
    post_webhook(client, status_updated(second, 11))
    make_worker(make_settings(rules_report_gift_certificates="true")).run_until_idle()
    assert [item["sku"] for item in refersion.received[0].body["items"]] == [f"line-{fixture['products'][0]['id']}"]


def test_orders_from_channels_outside_rules_channel_ids_are_skipped(client, make_settings, make_worker, bigcommerce, refersion, db):
    worker = make_worker(make_settings(rules_channel_ids="1"))
    marketplace = bigcommerce.add(load_fixture("manual_discount"), channel_id=664)
    storefront = bigcommerce.add(load_fixture("odd_cents"), channel_id=1)
    for order_id in (marketplace, storefront):
        post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.order_ids == [str(storefront)]
    assert json.loads(order_row(db, marketplace)["reasons"])[0]["code"] == "channel_excluded"


def test_every_decision_and_every_event_settled_without_one_gets_a_log_line(client, worker, bigcommerce, refersion, caplog):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    with caplog.at_level("INFO", logger="bridge"):
        post_webhook(client, status_updated(order_id, 11))
        worker.run_until_idle()
        post_webhook(client, status_updated(order_id, 10, 11, created_at=1_790_000_100))
        worker.run_until_idle()
        post_webhook(client, status_updated(77, 11, store_hash="otherstore"))
        worker.run_until_idle()
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("bridge.")]
    assert f"Order {order_id} of store abc123: report (eligible)" in lines
    assert f"Order {order_id} of store abc123: skip (already_reported)" in lines
    assert any(f"order {order_id} of store abc123 (paid)" in line and "Reported" in line for line in lines)
    assert any("otherstore" in line and "gnored" in line for line in lines)
