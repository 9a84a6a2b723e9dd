"""The walk through a store's orders by date modified, and the quota headers it keeps, against
the sandbox's V2 order list on a real local server."""

import time

import pytest

from bridge.clients.bigcommerce import BigCommerceClient, BigCommerceError, RateLimit, rfc2822
from bridge.sandbox.bigcommerce import parse_date
from tests.conftest import BC_TOKEN, STORE_HASH

T = 1_790_000_000


@pytest.fixture
def client(bc_server, bigcommerce):
    made = BigCommerceClient(api_url=bc_server.url, store_hash=STORE_HASH, access_token=BC_TOKEN, timeout=2.0)
    yield made
    made.close()


def listed(client, since, until):
    return [[order["id"] for order in page.orders] for page in client.orders_modified(since, until)]


def test_every_page_of_the_window_oldest_change_first_until_the_204(client, bigcommerce):
    bigcommerce.max_page_size = 2
    for order_id, at in [(101, T + 50), (102, T + 10), (103, T + 30), (104, T + 40), (105, T + 20), (106, T - 5), (107, T + 500)]:
        bigcommerce.add_order(order_id, created_at=at)
    pages = listed(client, T, T + 100)
    assert [order_id for page in pages for order_id in page] == [102, 105, 103, 104, 101]
    lists = bigcommerce.recorded(r"/v2/orders$")
    assert lists[0].query["sort"] == "date_modified:asc" and lists[0].query["limit"] == "250"
    assert lists[0].query["min_date_modified"] == "Mon, 21 Sep 2026 14:13:20 +0000" == rfc2822(T)
    assert parse_date(lists[0].query["max_date_modified"]) == T + 100
    assert lists[-1].status == 204  # the walk ends on the empty page, not on a short one


def test_an_order_modified_during_the_walk_does_not_make_it_skip_another(client, bigcommerce):
    """Plain page numbers would shift every later order back one place once an order leaves the window."""
    bigcommerce.max_page_size = 2
    for offset, order_id in enumerate(range(201, 207)):
        bigcommerce.add_order(order_id, created_at=T + offset)
    seen = []
    for page in client.orders_modified(T, T + 100):
        seen.extend(order["id"] for order in page.orders)
        if seen == [201, 202]:
            bigcommerce.update_order(201, date_modified=rfc2822(T + 1000))  # moved out of the window
    assert seen == [201, 202, 203, 204, 205, 206]


def test_orders_sharing_one_second_over_several_pages_are_each_listed_once(client, bigcommerce):
    bigcommerce.max_page_size = 2
    for order_id in range(301, 306):
        bigcommerce.add_order(order_id, created_at=T)
    bigcommerce.add_order(306, created_at=T + 1)
    found = [order_id for page in listed(client, T, T + 10) for order_id in page]
    assert sorted(found) == [301, 302, 303, 304, 305, 306] and len(found) == 6


def test_null_fields_are_read_as_the_order_schema_reads_them(client, bigcommerce):
    bigcommerce.add_order(401, created_at=T, payment_status=None, billing_address=None, total_inc_tax=None, channel_id=None)
    (page,) = list(client.orders_modified(T, T + 10))
    (order,) = page.orders
    assert (order["id"], order["channel_id"], str(order["total_inc_tax"]), order["modified_at"]) == (401, 1, "0", T)
    assert page.listed_until == T


def test_a_429_is_raised_with_the_reset_and_the_quota_headers_are_kept(client, bigcommerce):
    bigcommerce.set_quota(STORE_HASH, 2, window_ms=60_000)
    bigcommerce.add_order(501, created_at=T)
    pages = client.orders_modified(T, T + 10)
    next(pages)
    assert client.rate_limit.requests_left == 1 and client.rate_limit.quota == 2
    assert 59 < client.rate_limit.reset_seconds <= 60
    assert client.rate_limit.wait_before_next(1) == pytest.approx(client.rate_limit.reset_seconds, abs=0.5)
    assert client.rate_limit.wait_before_next(0) == 0.0  # one request is still there to spend
    sent = len(bigcommerce.recorded(r"/v2/orders"))
    with pytest.raises(BigCommerceError) as raised:  # the client keeps the last request in reserve: nothing is sent
        next(pages)
    assert raised.value.status == 429 and 59 < raised.value.retry_after <= 60.1 and client.held_back
    assert len(bigcommerce.recorded(r"/v2/orders")) == sent


def test_a_quota_whose_reset_has_passed_needs_no_wait():
    spent = RateLimit(requests_left=0, reset_seconds=2.0, quota=150, at=time.monotonic() - 3)
    assert spent.wait_before_next(5) == 0.0
    assert RateLimit(None, None, None, time.monotonic()).wait_before_next(5) == 0.0
