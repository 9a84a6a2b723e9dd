"""A 429 from BigCommerce holds the store's work until the reset time BigCommerce gave
(X-Rate-Limit-Time-Reset-Ms), burns no attempt, and holds back no other store."""

import pytest

from bridge.storage.inbox import Envelope, record_event
from tests.conftest import STORE_HASH, post_webhook, status_updated
from tests.fakes import load_fixture

RESET_SECONDS = 90.0  # far from the 10 s hold used when BigCommerce names no reset time


def events(db, store_hash=STORE_HASH):
    return {row["order_id"]: row for row in db.query("SELECT * FROM events WHERE store_hash = ?", [store_hash])}


def other_store_event(db, now):
    data = {"type": "order", "id": 5, "status": {"previous_status_id": 0, "new_status_id": 11}}
    other = Envelope(scope="store/order/statusUpdated", store_hash="zzz999", data=data, created_at=1_790_000_000, order_id=5)
    record_event(db, other, "{}", known_store=True, now=now)


def test_a_bigcommerce_429_holds_the_store_until_its_reset_time(client, worker, bigcommerce, refersion, db, clock):
    first = bigcommerce.add(load_fixture("manual_discount"), id=301)
    second = bigcommerce.add(load_fixture("manual_discount"), id=302)
    for order_id in (first, second):
        assert post_webhook(client, status_updated(order_id, 11)).status_code == 200
    bigcommerce.fail_next(429, headers={"X-Rate-Limit-Time-Reset-Ms": str(int(RESET_SECONDS * 1000))}, body='{"title": "Too many"}')

    assert worker.run_once() is True
    held = events(db)[first]
    assert (held["state"], held["attempts"]) == ("pending", 0)  # the quota, not the order: no attempt burnt
    assert held["due_at"] - clock.now == pytest.approx(RESET_SECONDS)
    (hold,) = db.query("SELECT * FROM holds")
    assert (hold["store_hash"], hold["service"]) == (STORE_HASH, "bigcommerce")
    assert hold["until"] - clock.now == pytest.approx(RESET_SECONDS)

    # Another store's work goes on meanwhile; this store's other order waits, unread.
    other_store_event(db, clock.now)
    calls = bigcommerce.calls()
    assert worker.run_once() is True
    assert events(db, "zzz999")[5]["state"] == "ignored"  # claimed and settled (the bridge has no credentials for it)
    assert worker.run_until_idle() == 0
    clock.advance(RESET_SECONDS - 1)
    assert worker.run_until_idle() == 0
    assert bigcommerce.calls() == calls
    assert {row["state"] for row in events(db).values()} == {"pending"}

    clock.advance(1.5)
    assert worker.run_until_idle() > 0
    assert sorted(refersion.order_ids) == [str(first), str(second)]
    assert {row["state"] for row in events(db).values()} == {"done"}
