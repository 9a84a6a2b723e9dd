"""The BigCommerce client against the sandbox's V2 API on a real local server."""

import socket
import time
from decimal import Decimal

import pytest
from werkzeug import Response

from bridge.clients.bigcommerce import PAGE_SIZE, BigCommerceClient, BigCommerceError
from bridge.core.retry import Failure
from tests.conftest import BC_TOKEN, STORE_HASH
from tests.fakes import Scripted, load_fixture


@pytest.fixture
def make_client(bc_server):
    def make(**kwargs):
        options = {
            "api_url": bc_server.url,
            "store_hash": STORE_HASH,
            "access_token": BC_TOKEN,
            "timeout": 2.0,
        }
        return BigCommerceClient(**{**options, **kwargs})

    return make


@pytest.fixture
def client(make_client, bigcommerce):
    return make_client()


def test_fetch_order_reads_the_configured_base_url_and_parses_money_as_decimal(client, bigcommerce):
    order_id = bigcommerce.add(load_fixture("tax_inclusive_prices"))
    order = client.fetch_order(order_id)
    assert order["total_inc_tax"] == Decimal("53.0000")
    assert isinstance(order["shipping_cost_ex_tax"], Decimal)
    assert order["payment_status"] == "captured"
    assert order["billing_address"]["email"] == "ada@example.com"
    assert [(r.method, r.path) for r in bigcommerce.requests] == [("GET", f"/stores/{STORE_HASH}/v2/orders/{order_id}")]
    assert client.calls == 1


def test_payment_status_is_normalised(client, bigcommerce):
    order_id = bigcommerce.add(load_fixture("manual_discount"), payment_status=" Captured ")
    assert client.fetch_order(order_id)["payment_status"] == "captured"


def test_an_unknown_order_is_none(client, bigcommerce):
    assert client.fetch_order(4040) is None


def test_lines_and_coupons(client, bigcommerce):
    order_id = bigcommerce.add(load_fixture("coupons_one_excluded"))
    lines = client.fetch_order_products(order_id)
    assert [(line["sku"], line["quantity"], line["price_ex_tax"]) for line in lines] == [
        ("OTL-01", 1, Decimal("109.0000")),
        ("MOSS-KIT", 2, Decimal("12.5000")),
    ]
    assert [coupon["code"] for coupon in client.fetch_order_coupons(order_id)] == ["AFFILIATE10", "HOLIDAY5"]


def test_an_empty_list_answered_204_is_an_empty_list(client, bigcommerce):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    assert client.fetch_order_coupons(order_id) == []
    assert client.calls == 1


def test_long_orders_are_read_page_by_page(client, bigcommerce):
    fixture = load_fixture("manual_discount")
    template = fixture["products"][0]
    fixture["products"] = [{**template, "id": 1000 + n, "sku": f"SKU-{n}"} for n in range(PAGE_SIZE + 10)]
    order_id = bigcommerce.add(fixture)
    lines = client.fetch_order_products(order_id)
    assert [line["sku"] for line in lines] == [f"SKU-{n}" for n in range(PAGE_SIZE + 10)]
    assert client.calls == 3  # two pages, then the empty page that ends the list


def test_a_short_page_is_not_taken_for_the_last_one(client, bigcommerce):
    """BigCommerce may answer fewer lines than asked for while more follow: only an empty page or a 204 ends a list."""
    fixture = load_fixture("manual_discount")
    template = fixture["products"][0]
    fixture["products"] = [{**template, "id": 2000 + n, "sku": f"SKU-{n}"} for n in range(7)]
    order_id = bigcommerce.add(fixture)
    bigcommerce.page_cap = 3
    lines = client.fetch_order_products(order_id)
    assert [line["sku"] for line in lines] == [f"SKU-{n}" for n in range(7)]
    assert client.calls == 4


def test_a_page_that_brings_the_quantity_read_to_the_order_s_items_total_is_the_last_one(client, bigcommerce):
    """The economy rule: an ordinary order costs one call for its lines, not two (no empty page)."""
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    order = client.fetch_order(order_id)
    lines = client.fetch_order_products(order_id, items_total=order["items_total"])
    assert sum(line["quantity"] for line in lines) == order["items_total"] > 0
    assert client.calls == 2  # the order, and one page of lines


def test_a_capped_page_short_of_the_items_total_is_followed_by_the_next(client, bigcommerce):
    fixture = load_fixture("manual_discount")
    template = fixture["products"][0]
    fixture["products"] = [{**template, "id": 3000 + n, "sku": f"SKU-{n}", "quantity": 1} for n in range(7)]
    order_id = bigcommerce.add(fixture)
    bigcommerce.page_cap = 3
    lines = client.fetch_order_products(order_id, items_total=7)
    assert [line["sku"] for line in lines] == [f"SKU-{n}" for n in range(7)]
    assert client.calls == 3  # 3 + 3 + 1 lines: the third page completes the total, no empty page after it


@pytest.mark.parametrize("items_total", [None, 99], ids=["unknown", "not-reached"])
def test_without_a_total_reached_the_lines_are_read_to_the_empty_page(client, bigcommerce, items_total):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    client.fetch_order_products(order_id, items_total=items_total)
    assert client.calls == 2  # one page of lines, then the empty page


def test_a_429_is_raised_at_once_with_the_reset_time_never_slept_on(client, bigcommerce):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    bigcommerce.fail_next(
        429, headers={"X-Rate-Limit-Time-Reset-Ms": "1500", "X-Rate-Limit-Requests-Left": "0"}, body='{"title": "Too many requests"}'
    )
    started = time.monotonic()
    with pytest.raises(BigCommerceError) as caught:
        client.fetch_order(order_id)
    assert time.monotonic() - started < 1.0
    assert (caught.value.status, caught.value.retry_after) == (429, 1.5)
    assert client.calls == 1


def test_a_429_without_reset_header_carries_no_reset_time(client, bigcommerce):
    bigcommerce.fail_next(429)
    with pytest.raises(BigCommerceError) as caught:
        client.fetch_order(1)
    assert (caught.value.status, caught.value.retry_after) == (429, None)


@pytest.mark.parametrize("status", [401, 403, 500, 503])
def test_http_errors_carry_their_status_and_never_the_token(client, bigcommerce, status):
    bigcommerce.fail_next(status)
    with pytest.raises(BigCommerceError) as caught:
        client.fetch_order(1)
    assert caught.value.status == status
    assert BC_TOKEN not in str(caught.value)


def test_a_wrong_token_is_a_401(make_client, bigcommerce):
    bigcommerce.add(load_fixture("manual_discount"))
    with pytest.raises(BigCommerceError) as caught:
        make_client(access_token="wrong-token-000").fetch_order(102)
    assert caught.value.status == 401
    assert "wrong-token-000" not in str(caught.value)


def test_a_200_that_is_not_json_is_a_bad_response(client, bigcommerce):
    bigcommerce.script.append(Scripted(lambda r: True, lambda r: Response("<html>maintenance</html>", 200, content_type="text/html")))
    with pytest.raises(BigCommerceError) as caught:
        client.fetch_order(1)
    assert caught.value.failure is Failure.BAD_RESPONSE


def test_an_order_without_its_status_is_a_bad_response(client, bigcommerce):
    bigcommerce.script.append(Scripted(lambda r: True, lambda r: Response('{"id": 5}', 200, content_type="application/json")))
    with pytest.raises(BigCommerceError) as caught:
        client.fetch_order(5)
    assert caught.value.failure is Failure.BAD_RESPONSE
    assert "status_id" in str(caught.value)


def test_every_request_has_a_timeout(make_client, bigcommerce):
    def slow(request):
        time.sleep(1.0)
        return Response("{}", 200, content_type="application/json")

    bigcommerce.script.append(Scripted(lambda r: True, slow))
    started = time.monotonic()
    with pytest.raises(BigCommerceError) as caught:
        make_client(timeout=0.2).fetch_order(1)
    assert caught.value.failure is Failure.TIMEOUT
    assert time.monotonic() - started < 0.9


def test_an_unreachable_api_is_a_connection_failure(make_client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BigCommerceError) as caught:
        make_client(api_url=f"http://127.0.0.1:{port}").fetch_order(1)
    assert caught.value.failure is Failure.CONNECTION
