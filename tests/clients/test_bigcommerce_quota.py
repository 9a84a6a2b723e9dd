"""The BigCommerce client never sends a request its store's quota headers say will be refused;
the worker holds the store until the reset, without the strike a real 429 earns."""

import pytest

from bridge.clients.bigcommerce import BigCommerceClient, BigCommerceError
from tests.conftest import BC_TOKEN, STORE_HASH, post_webhook, status_updated
from tests.fakes import load_fixture


def test_after_an_answer_with_one_request_left_nothing_is_sent_until_the_reset(bigcommerce, clock):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    bigcommerce.set_quota(quota=3, window_ms=20_000)
    client = BigCommerceClient(api_url=bigcommerce.url, store_hash=STORE_HASH, access_token=BC_TOKEN, timeout=2, clock=clock)
    client.fetch_order(order_id)  # 2 left
    client.fetch_order(order_id)  # 1 left: the reserve
    sent = bigcommerce.calls()
    with pytest.raises(BigCommerceError) as raised:
        client.fetch_order(order_id)
    assert bigcommerce.calls() == sent  # not sent
    assert (raised.value.status, client.held_back) == (429, True)
    assert 19 < raised.value.retry_after <= 20.001
    clock.advance(20.1)
    assert client.fetch_order(order_id)["id"] == order_id
    assert client.held_back is False
    assert not [call for call in bigcommerce.recorded() if call.status == 429]


def test_holds_for_an_announced_reset_do_not_double_as_refused_requests_do(client, worker, bigcommerce, db, clock):
    """Each window's end is announced in time: every hold lasts until that reset (at least 1 s),
    never 2, 4, 8 … s as after 429s in a row."""
    bigcommerce.set_quota(quota=3, window_ms=5_000)
    for n in range(4):
        order_id = bigcommerce.add(load_fixture("manual_discount"), id=500 + n)
        post_webhook(client, status_updated(order_id, 11))
    holds = []
    for _ in range(4):
        worker.run_until_idle()
        (hold,) = db.query("SELECT * FROM holds")
        holds.append((hold["strikes"], round(hold["until"] - clock.now, 1)))
        clock.advance(hold["until"] - clock.now + 0.1)
        bigcommerce.set_quota(quota=3, window_ms=5_000)  # the sandbox's window runs on real time: start the next one
    assert [strikes for strikes, _ in holds] == [0, 0, 0, 0], holds
    assert not [call for call in bigcommerce.recorded() if call.status == 429]
