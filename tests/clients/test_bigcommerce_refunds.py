"""Reading an order's refunds (V3 ``payment_actions/refunds``) from the sandbox over real HTTP."""

import json
from decimal import Decimal

import pytest
from werkzeug import Response

from bridge.clients.bigcommerce import BigCommerceClient, BigCommerceError
from bridge.core.retry import Failure
from tests.conftest import BC_TOKEN, STORE_HASH
from tests.fakes import Scripted

REFUNDS = r"/v3/orders/\d+/payment_actions/refunds$"


@pytest.fixture
def client(bc_server, bigcommerce):
    made = BigCommerceClient(api_url=bc_server.url, store_hash=STORE_HASH, access_token=BC_TOKEN, timeout=2.0)
    yield made
    made.close()


def answer(bigcommerce, body, status=200):
    text = body if isinstance(body, str) else json.dumps(body)
    bigcommerce.script.append(
        Scripted(lambda r: r.path.endswith("/refunds"), lambda r: Response(text, status, content_type="application/json"))
    )


def test_refunds_are_read_oldest_first_with_their_items(client, bigcommerce):
    order = bigcommerce.add_order(401, lines=[{"id": 901, "sku": "A", "qty": 2, "price": "10.00"}], shipping="3.00")
    bigcommerce.refund(401, [(901, 1)])
    bigcommerce.refund(401, shipping="3.00")
    first, second = client.fetch_order_refunds(order["id"])
    assert first["items"] == [
        {"item_type": "PRODUCT", "item_id": 901, "quantity": 1, "requested_amount": Decimal("10.0"), "reason": "Sandbox refund"}
    ]
    assert [item["item_type"] for item in second["items"]] == ["SHIPPING"]
    assert first["id"] < second["id"] and len(bigcommerce.recorded(REFUNDS, "GET")) == 1


def test_every_page_of_refunds_is_read(client, bigcommerce):
    bigcommerce.add_order(403, lines=[{"id": 903, "sku": "A", "qty": 5, "price": "10.00"}])
    made = [bigcommerce.refund(403, [(903, 1)])["id"] for _ in range(5)]
    bigcommerce.refunds_page_size = 2
    assert [refund["id"] for refund in client.fetch_order_refunds(403)] == made
    assert [call.query.get("page") for call in bigcommerce.recorded(REFUNDS, "GET")] == ["1", "2", "3"]


def test_no_refund_is_a_204_read_as_an_empty_list(client, bigcommerce):
    bigcommerce.add_order(402)
    assert client.fetch_order_refunds(402) == []


def test_nulls_read_as_empty_values(client, bigcommerce):
    answer(bigcommerce, {"data": [{"id": 3, "order_id": None, "reason": None, "total_amount": None, "items": None},
                                  {"id": 4, "items": [{"item_type": "product", "item_id": 7, "quantity": None, "reason": None}]}],
                         "meta": None})  # fmt: skip
    first, second = client.fetch_order_refunds(1)
    assert (first["items"], first["reason"], first["total_amount"]) == ([], "", Decimal("0"))
    assert second["items"][0] == {"item_type": "PRODUCT", "item_id": 7, "quantity": 0, "reason": "", "requested_amount": Decimal("0")}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"data": {"id": 1}}, "not a list"),
        ({"data": [{"id": "three"}]}, "cannot read"),
        ({"data": [{"items": []}]}, "cannot read"),
        ({"errors": []}, "without its data"),
        ("<html>maintenance</html>", "not JSON"),
    ],
)
def test_garbage_is_a_clear_bad_response_error(client, bigcommerce, body, words):
    answer(bigcommerce, body)
    with pytest.raises(BigCommerceError) as caught:
        client.fetch_order_refunds(1)
    assert caught.value.failure is Failure.BAD_RESPONSE
    assert words in str(caught.value)
    assert "refunds of order 1" in str(caught.value) or "orders/1/payment_actions/refunds" in str(caught.value)
    assert BC_TOKEN not in str(caught.value)


def test_an_unknown_order_is_a_404_error(client, bigcommerce):
    with pytest.raises(BigCommerceError) as caught:
        client.fetch_order_refunds(999)
    assert caught.value.status == 404
