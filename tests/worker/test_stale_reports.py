"""A report that waits is re-checked before it is sent: an order refunded or cancelled
meanwhile is never reported as paid (SPEC 4 step 2; issue 5, defect 1)."""

import json

import pytest
from werkzeug import Response

from bridge.storage import outbox
from bridge.storage.db import immediate
from bridge.worker import evaluate
from tests.conftest import envelope, post_webhook, status_updated
from tests.fakes import Scripted, load_fixture


def delivery(db, order_id):
    return next(db.query("SELECT * FROM deliveries WHERE order_id = ?", [order_id]))


def current(db, order_id):
    row = next(db.query("SELECT * FROM orders WHERE order_id = ?", [order_id]))
    return row["verdict"], [reason["code"] for reason in json.loads(row["reasons"])]


def history(db, order_id):
    return [row["verdict"] for row in db.query("SELECT verdict FROM decisions WHERE order_id = ? ORDER BY id", [order_id])]


def refund_created(order_id: int, refund_id: int = 1, created_at: int = 1_790_000_500) -> dict:
    data = {"type": "order", "id": order_id, "refund": {"refund_id": refund_id}}
    return envelope("store/order/refund/created", data, created_at=created_at)


@pytest.mark.parametrize(("status_id", "payment_status"), [(4, "refunded"), (5, "void")])
def test_an_order_refunded_or_cancelled_while_its_report_waits_for_a_retry_is_not_reported(
    client, worker, bigcommerce, refersion, db, clock, status_id, payment_status
):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    refersion.answer_next(503)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert delivery(db, order_id)["state"] == "pending"

    bigcommerce.update(order_id, status_id=status_id, payment_status=payment_status)
    calls = bigcommerce.calls(order_id)
    clock.advance(3600)
    worker.run_until_idle()

    assert refersion.attempts == [str(order_id)]  # only the first, refused attempt
    row = delivery(db, order_id)
    assert (row["state"], row["outcome"]) == ("skipped", "no_longer_eligible")
    assert bigcommerce.calls(order_id) == calls + 1  # one fresh read of the order, nothing more
    verdict, codes = current(db, order_id)
    assert (verdict, codes[0]) == ("skip", "no_longer_eligible")
    assert "status_excluded" in codes
    assert history(db, order_id) == ["report", "skip"]


def test_an_order_cancelled_while_its_store_is_paused_is_dropped_when_the_keys_are_fixed(
    client, make_settings, make_worker, bigcommerce, refersion, db, clock
):
    refersion.secret_key = "sec_rotated_in_refersion"
    worker = make_worker()
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert [row["service"] for row in db.query("SELECT service FROM pauses")] == ["refersion"]

    bigcommerce.update(order_id, status_id=5)
    clock.advance(2 * 86400)
    fixed = make_worker(make_settings(refersion_secret_key="sec_rotated_in_refersion"))
    fixed.resume_changed_credentials()
    fixed.run_until_idle()

    assert refersion.received == []
    assert delivery(db, order_id)["state"] == "skipped"


def test_a_refund_event_drops_an_unsent_report_at_once(client, make_worker, bigcommerce, refersion, db, clock):
    refersion.secret_key = "sec_rotated_in_refersion"  # the report cannot be sent: it waits, paused
    worker = make_worker()
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()

    bigcommerce.update(order_id, status_id=4, payment_status="refunded")
    post_webhook(client, refund_created(order_id))
    worker.run_until_idle()

    assert delivery(db, order_id)["state"] == "skipped"
    assert current(db, order_id)[1][0] == "no_longer_eligible"
    outcomes = [row["outcome"] for row in db.query("SELECT outcome FROM events WHERE scope = 'store/order/refund/created'")]
    assert outcomes == ["no_longer_eligible"]


def test_a_partial_refund_while_the_report_waits_still_reports_the_order_as_placed(client, worker, bigcommerce, refersion, db, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    refersion.answer_next(503)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()

    refund = bigcommerce.refund(order_id, amount="10.00")  # an amount of the order, no product: status 14
    post_webhook(client, refund_created(order_id, refund["id"]))
    clock.advance(3600)
    worker.run_until_idle()

    assert refersion.order_ids == [str(order_id)]
    assert delivery(db, order_id)["state"] == "done"
    assert current(db, order_id)[0] == "report"
    clock.advance(2)  # the refund event is looked at again once the report is settled
    worker.run_until_idle()
    refund = next(db.query("SELECT state, outcome FROM events WHERE scope = 'store/order/refund/created'"))
    assert (refund["state"], refund["outcome"]) == ("done", "nothing_to_cancel")  # followed: it took back no product


def test_without_cancellation_sync_a_partial_refund_drops_the_waiting_report(
    client, make_settings, make_worker, bigcommerce, refersion, db, clock
):
    worker = make_worker(make_settings(rules_sync_cancellations="false"))
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    refersion.answer_next(503)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()

    bigcommerce.update(order_id, status_id=14, payment_status="partially refunded")
    clock.advance(3600)
    worker.run_until_idle()

    assert refersion.received == []
    assert delivery(db, order_id)["state"] == "skipped"


def test_a_first_send_right_after_evaluation_does_not_read_the_order_again(client, worker, bigcommerce, refersion):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    assert refersion.order_ids == [str(order_id)]
    assert [r.path for r in bigcommerce.requests].count(f"/stores/abc123/v2/orders/{order_id}") == 1


def test_a_dropped_report_is_sent_when_the_order_becomes_eligible_again(client, worker, bigcommerce, refersion, db, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    refersion.answer_next(503)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    bigcommerce.update(order_id, status_id=5)
    clock.advance(3600)
    worker.run_until_idle()
    assert delivery(db, order_id)["state"] == "skipped"

    bigcommerce.update(order_id, status_id=11)  # the merchant reopened the order
    post_webhook(client, status_updated(order_id, 11, 5, created_at=1_790_000_900))
    worker.run_until_idle()

    assert refersion.received[-1].body["order_id"] == str(order_id)
    assert delivery(db, order_id)["state"] == "done"
    assert history(db, order_id) == ["report", "skip", "report"]


def test_a_report_that_cannot_re_read_its_order_waits_and_is_not_sent_blind(client, worker, bigcommerce, refersion, db, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    refersion.answer_next(503)
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()

    bigcommerce.fail_next(500)
    clock.advance(3600)
    worker.run_until_idle()
    row = delivery(db, order_id)
    assert (row["state"], row["attempts"]) == ("pending", 1)  # Refersion was not asked: no attempt used up
    assert "re-reading the order" in row["last_error"]
    assert len(refersion.attempts) == 1

    clock.advance(3600)
    worker.run_until_idle()
    assert delivery(db, order_id)["state"] == "done"


def test_an_older_read_that_finishes_last_cannot_queue_a_report_for_a_refunded_order(client, make_worker, bigcommerce, refersion, db):
    """Worker A reads the order paid; while A still reads its coupons, the order is refunded
    and worker B decides on that newer read. A's report must not be queued after B's skip."""
    first, second = make_worker(owner="A"), make_worker(owner="B")
    fixture = load_fixture("manual_discount")
    order_id = bigcommerce.add(fixture, date_modified="Tue, 20 Oct 2026 14:05:42 +0000")

    def refund_meanwhile(request):
        bigcommerce.update(order_id, status_id=4, payment_status="refunded", date_modified="Tue, 20 Oct 2026 15:00:00 +0000")
        post_webhook(client, refund_created(order_id))
        second.run_until_idle()
        return Response(status=204)

    bigcommerce.script.append(Scripted(lambda r: r.path.endswith(f"/orders/{order_id}/coupons"), refund_meanwhile))
    post_webhook(client, status_updated(order_id, 11))
    first.run_until_idle()

    assert refersion.attempts == []
    assert list(db.query("SELECT * FROM deliveries")) == []
    assert current(db, order_id)[0] == "skip"
    outcomes = {row["outcome"] for row in db.query("SELECT outcome FROM events WHERE scope = 'store/order/statusUpdated'")}
    assert outcomes == {"superseded"}


def test_a_refund_while_a_dead_workers_lease_holds_the_report_is_rechecked_before_any_send(
    client, worker, bigcommerce, refersion, db, clock
):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    evaluate.handle_next(worker.ctx)  # queued, not sent yet
    with immediate(db):  # another worker claims the report and dies before sending it
        outbox.deliveries.claim(db, owner="crashed-worker", now=clock.now)

    bigcommerce.update(order_id, status_id=4, payment_status="refunded")
    post_webhook(client, refund_created(order_id))
    worker.run_until_idle()
    assert next(db.query("SELECT state FROM events WHERE scope = 'store/order/refund/created'"))["state"] == "pending"

    clock.advance(16)  # the dead worker's lease runs out; the report is still young
    worker.run_until_idle()
    assert refersion.attempts == []
    assert delivery(db, order_id)["state"] == "skipped"
    assert next(db.query("SELECT outcome FROM events WHERE scope = 'store/order/refund/created'"))["outcome"] != "already_queued"


def test_a_refund_of_a_reported_order_is_followed_by_its_cancellation(client, worker, bigcommerce, refersion, db):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    calls = bigcommerce.calls(order_id)
    refund = bigcommerce.refund(order_id, [(bigcommerce.order_products(order_id)[0]["id"], 1)])
    post_webhook(client, refund_created(order_id, refund_id=refund["id"]))
    worker.run_until_idle()
    row = next(db.query("SELECT state, outcome FROM events WHERE scope = 'store/order/refund/created'"))
    assert (row["state"], row["outcome"]) == ("done", "cancellation_queued")
    assert bigcommerce.calls(order_id) == calls + 1  # the order's refunds only: no call to know it was reported
