"""Refunds and cancellations of reported orders reach Refersion's ``conversion/cancel`` once each.

Real Flask intake, real SQLite, the real worker; BigCommerce (with its refunds) and
Refersion are the sandbox servers on local HTTP.
"""

import json
import os
from decimal import Decimal

import pytest
from click.testing import CliRunner

from bridge.cli import cli
from bridge.storage import history, outbox
from bridge.storage.db import immediate
from bridge.web.app import create_app
from tests.conftest import STORE_HASH, post_webhook, status_updated

ADMIN_TOKEN = "adm-7f3c9b2e4d1a8f6c5b0e9d2a41c7"
CANCEL_PATH = r"^/v2/conversion/cancel$"
A, B = 501, 502  # order-product ids of the two lines


@pytest.fixture
def settings_for(make_settings, refersion):
    def make(**overrides):
        return make_settings(refersion_api_url=refersion.api_url, **overrides)

    return make


@pytest.fixture
def worker(make_worker, settings_for):
    return make_worker(settings_for())


def place(bigcommerce, order_id=301, **options):
    shift = order_id - 301  # order-product ids are unique in a store
    lines = [
        {"id": A + shift * 10, "sku": "SKU-A", "qty": 3, "price": "10.00"},
        {"id": B + shift * 10, "sku": "SKU-B", "qty": 1, "price": "5.00"},
    ]
    bigcommerce.add_order(order_id, lines=lines, shipping="4.00", **options)
    return order_id


def report(client, worker, bigcommerce, order_id=301, **options):
    place(bigcommerce, order_id, **options)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    return order_id


def hook(client, bigcommerce, scope, order_id, **options):
    assert post_webhook(client, bigcommerce.webhook_body(scope, order_id, **options)).status_code == 200


def refund_hook(client, bigcommerce, order_id, refund, **options):
    hook(client, bigcommerce, "store/order/refund/created", order_id, refund_id=refund["id"], **options)


def status_hook(client, bigcommerce, order_id, **options):
    hook(client, bigcommerce, "store/order/statusUpdated", order_id, **options)


def sent(refersion):
    """The bodies of every cancellation Refersion accepted, as exact JSON (money as Decimal)."""
    return [json.loads(received.raw, parse_float=Decimal) for received in refersion.cancellations]


def quantities(refersion):
    return [{item["sku"]: item["quantity"] for item in body["items"]} for body in sent(refersion)]


def story(db, order_id):
    return history.order_story(db, store_hash=STORE_HASH, order_id=order_id)


def events(db, scope):
    return list(db.query("SELECT state, outcome, note FROM events WHERE scope = ? ORDER BY id", [scope]))


def test_a_full_refund_cancels_every_reported_line_as_reported(client, worker, bigcommerce, refersion, db):
    order_id = report(client, worker, bigcommerce)
    refund = bigcommerce.refund(order_id, [(A, 3), (B, 1)], shipping="4.00")
    assert bigcommerce.order(order_id)["status_id"] == 4
    refund_hook(client, bigcommerce, order_id, refund)
    status_hook(client, bigcommerce, order_id)
    worker.run_until_idle()

    (body,) = sent(refersion)
    assert body == {
        "order_id": str(order_id),
        "items": [{"sku": "SKU-A", "price": Decimal("10.00"), "quantity": 3}, {"sku": "SKU-B", "price": Decimal("5.00"), "quantity": 1}],
    }
    assert '"price":10.00' in refersion.cancellations[0].raw  # a JSON number, never a string
    assert refersion.cancellations[0].headers["Refersion-Secret-Key"]
    told = story(db, order_id)
    assert told["decision"] == "reported"
    assert [(c["refund_id"], c["state"]) for c in told["cancellations"]] == [(refund["id"], "done"), ("order", "skipped")]
    assert told["cancellations"][0]["last_status"] == 200 and "conversion_id" in told["cancellations"][0]["last_answer"]
    assert "already cancelled" in told["cancellations"][1]["reason"]
    assert "Cancelled in full" in told["reasons"][0]["text"]


def test_a_cancelled_order_cancels_every_reported_line(client, worker, bigcommerce, refersion, db):
    order_id = report(client, worker, bigcommerce)
    bigcommerce.update(order_id, status_id=5, payment_status="void")
    status_hook(client, bigcommerce, order_id)
    worker.run_until_idle()

    assert quantities(refersion) == [{"SKU-A": 3, "SKU-B": 1}]
    (cancellation,) = story(db, order_id)["cancellations"]
    assert (cancellation["refund_id"], cancellation["state"]) == ("order", "done")
    assert [item["quantity"] for item in cancellation["items"]] == [3, 1]
    assert events(db, "store/order/statusUpdated")[-1]["outcome"] == "cancellation_queued"


def test_two_partial_refunds_of_one_line_cancel_exactly_their_quantities_never_more(client, worker, bigcommerce, refersion, db, clock):
    order_id = report(client, worker, bigcommerce)
    first = bigcommerce.refund(order_id, [(A, 2)])
    assert bigcommerce.order(order_id)["status_id"] == 14
    refund_hook(client, bigcommerce, order_id, first)
    status_hook(client, bigcommerce, order_id)
    worker.run_until_idle()
    assert quantities(refersion) == [{"SKU-A": 2}]

    clock.advance(5)
    second = bigcommerce.refund(order_id, [(A, 1)])
    refund_hook(client, bigcommerce, order_id, second, created_at=1_790_000_900)
    worker.run_until_idle()
    assert quantities(refersion) == [{"SKU-A": 2}, {"SKU-A": 1}]

    # A refund of the same line again (BigCommerce would refuse it; a bug or a race must not over-cancel).
    third = bigcommerce.refund(order_id, [(A, 1), (B, 1)])
    bigcommerce.update(order_id, status_id=4, payment_status="refunded")
    refund_hook(client, bigcommerce, order_id, third, created_at=1_790_000_950)
    status_hook(client, bigcommerce, order_id, created_at=1_790_000_951)
    worker.run_until_idle()
    assert quantities(refersion) == [{"SKU-A": 2}, {"SKU-A": 1}, {"SKU-B": 1}]
    total_a = sum(item["quantity"] for body in sent(refersion) for item in body["items"] if item["sku"] == "SKU-A")
    assert total_a == 3


def test_a_refund_of_shipping_only_sends_nothing_and_the_story_says_so(client, worker, bigcommerce, refersion, db):
    order_id = report(client, worker, bigcommerce)
    refund = bigcommerce.refund(order_id, shipping="4.00")
    refund_hook(client, bigcommerce, order_id, refund)
    status_hook(client, bigcommerce, order_id)
    worker.run_until_idle()

    assert refersion.calls(CANCEL_PATH) == []
    (cancellation,) = story(db, order_id)["cancellations"]
    assert (cancellation["state"], cancellation["outcome"]) == ("skipped", "no_products_refunded")
    assert "returned shipping only" in cancellation["reason"]
    assert {row["outcome"] for row in events(db, "store/order/refund/created")} == {"nothing_to_cancel"}


def test_a_repeated_refund_webhook_cancels_once(client, worker, bigcommerce, refersion, db):
    order_id = report(client, worker, bigcommerce)
    refund = bigcommerce.refund(order_id, [(A, 1)])
    refund_hook(client, bigcommerce, order_id, refund, created_at=1_790_000_600)
    refund_hook(client, bigcommerce, order_id, refund, created_at=1_790_000_600)  # a re-delivery: stored once
    worker.run_until_idle()
    refund_hook(client, bigcommerce, order_id, refund, created_at=1_790_000_601)  # the same refund told again
    worker.run_until_idle()

    assert quantities(refersion) == [{"SKU-A": 1}]
    assert [row["outcome"] for row in events(db, "store/order/refund/created")] == ["cancellation_queued", "already_handled"]


@pytest.mark.parametrize("status_first", [False, True], ids=["refund-first", "status-first"])
@pytest.mark.parametrize("full", [False, True], ids=["status-14", "status-4"])
def test_a_refund_webhook_and_its_status_change_yield_one_cancellation(client, worker, bigcommerce, refersion, db, status_first, full):
    order_id = report(client, worker, bigcommerce)
    refund = bigcommerce.refund(order_id, [(A, 3), (B, 1)] if full else [(A, 1)], shipping="4.00" if full else "0")
    assert bigcommerce.order(order_id)["status_id"] == (4 if full else 14)
    steps = [lambda: refund_hook(client, bigcommerce, order_id, refund), lambda: status_hook(client, bigcommerce, order_id)]
    for step in reversed(steps) if status_first else steps:
        step()
        worker.run_until_idle()

    assert quantities(refersion) == [{"SKU-A": 3, "SKU-B": 1} if full else {"SKU-A": 1}]
    sent_kinds = [(c["refund_id"], c["state"]) for c in story(db, order_id)["cancellations"]]
    assert sent_kinds[0] == (refund["id"], "done")
    assert sent_kinds[1:] == ([("order", "skipped")] if full else [])


def test_a_refund_before_the_paid_report_is_delivered_waits_for_it(client, worker, bigcommerce, refersion, db, clock):
    order_id = place(bigcommerce)
    refersion.unavailable(retry_after="60", path=r"/tracker/orders/paid")
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert outbox.find(db, outbox.paid_key(STORE_HASH, order_id))["attempts"] == 1

    refund = bigcommerce.refund(order_id, [(A, 1)])
    refund_hook(client, bigcommerce, order_id, refund)
    worker.run_until_idle()
    clock.advance(5)
    worker.run_until_idle()
    assert refersion.calls(CANCEL_PATH) == []
    assert {row["outcome"] for row in events(db, "store/order/refund/created")} == {"awaiting_report"}

    clock.advance(120)  # the report is retried and delivered, then the refund follows
    worker.run_until_idle()
    clock.advance(5)
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]
    assert quantities(refersion) == [{"SKU-A": 1}]
    paths = [call.path for call in refersion.calls()]
    assert paths.index("/v2/conversion/cancel") > max(i for i, path in enumerate(paths) if path == "/tracker/orders/paid")


def test_an_order_already_refunded_in_part_when_first_seen_is_reported_as_placed_then_cancelled(
    client, worker, bigcommerce, refersion, db, clock
):
    order_id = place(bigcommerce)
    refund = bigcommerce.refund(order_id, [(B, 1)])
    status_hook(client, bigcommerce, order_id)  # statusUpdated to 14, and the refund webhook, claimed together
    refund_hook(client, bigcommerce, order_id, refund)
    worker.run_until_idle()
    clock.advance(2)
    worker.run_until_idle()

    assert [item["quantity"] for item in refersion.paid_orders()[0]["items"]] == [3, 1]
    assert quantities(refersion) == [{"SKU-B": 1}]


def test_a_cancellation_is_never_sent_before_its_paid_report_is_done(client, worker, bigcommerce, refersion, db, clock):
    order_id = place(bigcommerce)
    refersion.unavailable(retry_after="60", path=r"/tracker/orders/paid")
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    body = '{"order_id":"301","items":[{"sku":"SKU-A","price":10.00,"quantity":1}]}'
    meta = json.dumps({"refund_id": 9, "lines": [{"order_product_id": A, "sku": "SKU-A", "price": 10, "quantity": 1}], "full": False})
    with immediate(db):
        key = outbox.cancel_key(STORE_HASH, order_id, 9)
        outbox.enqueue(db, key=key, kind=outbox.CANCEL, store_hash=STORE_HASH, order_id=order_id, payload=body, meta=meta, now=clock())
    worker.run_until_idle()
    row = outbox.find(db, key)
    assert refersion.calls(CANCEL_PATH) == []
    assert (row["state"], row["attempts"], row["last_error"]) == (
        "pending",
        0,
        "Waiting for the order's paid report to be delivered first.",
    )

    clock.advance(120)
    worker.run_until_idle()
    clock.advance(5)
    worker.run_until_idle()
    assert outbox.find(db, key)["state"] == "done" and quantities(refersion) == [{"SKU-A": 1}]


def test_a_refund_of_an_order_never_reported_is_recorded_not_sent(client, make_worker, settings_for, bigcommerce, refersion, db):
    worker = make_worker(settings_for(rules_channel_ids="1"))
    order_id = place(bigcommerce, channel_id=2)  # skipped: a channel the rules leave out, whatever its refunds
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert story(db, order_id)["decision"] == "skipped"

    refund = bigcommerce.refund(order_id, [(A, 1)])
    refund_hook(client, bigcommerce, order_id, refund)
    worker.run_until_idle()
    (event,) = events(db, "store/order/refund/created")
    assert (event["state"], event["outcome"]) == ("done", "not_reported")
    assert "never reported" in event["note"]
    assert refersion.calls(CANCEL_PATH) == [] and story(db, order_id)["cancellations"] == []

    other = place(bigcommerce, 302)  # refunded in full before the bridge ever saw it
    refund = bigcommerce.refund(other, [(A + 10, 3), (B + 10, 1)], shipping="4.00")
    refund_hook(client, bigcommerce, other, refund)
    worker.run_until_idle()
    (_, event) = events(db, "store/order/refund/created")
    assert (event["state"], event["outcome"]) == ("done", "not_reported")
    assert refersion.calls(CANCEL_PATH) == []


def test_a_refund_while_the_report_is_dead_waits_and_is_cancelled_once_the_report_is_replayed(
    client, worker, bigcommerce, refersion, db, clock
):
    order_id = place(bigcommerce)
    refersion.reject(400, "Temporary validation glitch", path=r"/tracker/orders/paid")
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert outbox.find(db, outbox.paid_key(STORE_HASH, order_id))["state"] == "dead"
    calls = bigcommerce.calls(order_id)

    refund = bigcommerce.refund(order_id, [(A, 1)])
    refund_hook(client, bigcommerce, order_id, refund)
    worker.run_until_idle()
    (event,) = events(db, "store/order/refund/created")
    assert (event["state"], event["outcome"]) == ("deferred", "awaiting_replay")
    assert "Replay the report" in story(db, order_id)["events"][-1]["note"]
    assert refersion.calls(CANCEL_PATH) == [] and bigcommerce.calls(order_id) == calls

    with immediate(db):  # the operator's replay (bridge replay ORDER_ID, the retry button)
        outbox.replay(db, store_hash=STORE_HASH, order_id=order_id, now=clock())
    worker.run_until_idle()
    clock.advance(1)
    worker.run_until_idle()
    assert outbox.find(db, outbox.paid_key(STORE_HASH, order_id))["state"] == "done"
    assert quantities(refersion) == [{"SKU-A": 1}]  # exactly one cancellation, of the refunded items
    (event,) = events(db, "store/order/refund/created")
    assert (event["state"], event["outcome"]) == ("done", "cancellation_queued")


def test_refersions_invalid_order_id_answer_is_permanent_and_shown_in_the_story(client, worker, bigcommerce, refersion, db):
    order_id = report(client, worker, bigcommerce)
    refersion.fail_next(422, body={"errors": ["Invalid order ID (error 5)"]}, path=CANCEL_PATH)
    refund = bigcommerce.refund(order_id, [(A, 1)])
    refund_hook(client, bigcommerce, order_id, refund)
    worker.run_until_idle()

    (cancellation,) = story(db, order_id)["cancellations"]
    assert (cancellation["state"], cancellation["attempts"], cancellation["last_status"]) == ("dead", 1, 422)
    assert "Invalid order ID (error 5)" in cancellation["last_answer"]
    assert "refused" in cancellation["text"]
    assert len(refersion.calls(CANCEL_PATH)) == 1


def test_in_dry_run_cancellations_are_recorded_not_sent(client, make_worker, settings_for, bigcommerce, refersion, db, clock):
    worker = make_worker(settings_for(rules_dry_run="true"))
    order_id = report(client, worker, bigcommerce)
    refund = bigcommerce.refund(order_id, [(A, 2)])
    refund_hook(client, bigcommerce, order_id, refund)
    worker.run_until_idle()

    assert refersion.calls() == []
    (cancellation,) = story(db, order_id)["cancellations"]
    assert cancellation["state"] == "dry_run" and cancellation["text"].startswith("Dry run")
    assert [item["quantity"] for item in cancellation["items"]] == [2]
    assert events(db, "store/order/refund/created")[0]["outcome"] == "cancellation_dry_run"


def test_with_cancellation_sync_off_nothing_is_queued_and_the_event_says_so(client, make_worker, settings_for, bigcommerce, refersion, db):
    worker = make_worker(settings_for(rules_sync_cancellations="false"))
    order_id = report(client, worker, bigcommerce)
    calls = bigcommerce.calls(order_id)
    refund = bigcommerce.refund(order_id, [(A, 1)])
    refund_hook(client, bigcommerce, order_id, refund)
    worker.run_until_idle()

    assert refersion.calls(CANCEL_PATH) == [] and story(db, order_id)["cancellations"] == []
    (event,) = events(db, "store/order/refund/created")
    assert (event["outcome"], "sync_cancellations is off" in event["note"]) == ("cancellations_off", True)
    assert bigcommerce.calls(order_id) == calls


def test_a_reported_orders_other_events_cost_no_bigcommerce_call(client, worker, bigcommerce, refersion, db):
    order_id = report(client, worker, bigcommerce)
    calls = bigcommerce.calls()
    bigcommerce.update(order_id, status_id=2)
    status_hook(client, bigcommerce, order_id)
    hook(client, bigcommerce, "store/order/updated", order_id)
    worker.run_until_idle()
    assert bigcommerce.calls() == calls

    refund = bigcommerce.refund(order_id, [(A, 1)])
    refund_hook(client, bigcommerce, order_id, refund)
    worker.run_until_idle()
    assert bigcommerce.calls() == calls + 1  # the refunds list, once


def test_the_api_the_page_and_the_cli_show_the_cancellations(client, worker, bigcommerce, refersion, db, make_settings, environ):
    order_id = report(client, worker, bigcommerce)
    refund = bigcommerce.refund(order_id, [(A, 2)])
    refund_hook(client, bigcommerce, order_id, refund)
    worker.run_until_idle()

    app = create_app(make_settings(server_admin_token=ADMIN_TOKEN, server_session_secret="ses-1b9e4c7a2f5d8e3b6a0c9f2d7e4b"))
    api = app.test_client()
    body = api.get(f"/api/orders/{order_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).get_json()
    assert body["cancellations"][0]["items"] == [{"sku": "SKU-A", "price": "10.00", "quantity": 2}]
    assert {"decision", "reasons", "decisions", "events", "deliveries"} <= set(body)
    assert body["decision"] == "reported" and "Cancelled in part" in body["reasons"][0]["text"]
    api.post("/login", data={"token": ADMIN_TOKEN})
    page = api.get(f"/orders/{order_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert page.status_code == 200 and "Refersion cancelled 2 × SKU-A for refund" in page.get_data(as_text=True)

    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}
    result = CliRunner().invoke(cli, ["orders", "why", str(order_id)], env={**clean, **environ})
    assert "Refersion cancelled 2 × SKU-A for refund" in result.output


def test_a_stale_cancelled_status_does_not_cancel_an_order_that_is_live_again(client, worker, bigcommerce, refersion, db):
    order_id = report(client, worker, bigcommerce)
    status_hook(client, bigcommerce, order_id, new_status_id=5, previous_status_id=11)  # cancelled by mistake, then restored
    worker.run_until_idle()
    assert refersion.calls(CANCEL_PATH) == [] and story(db, order_id)["cancellations"] == []
    assert events(db, "store/order/statusUpdated")[-1]["outcome"] == "already_handled"
