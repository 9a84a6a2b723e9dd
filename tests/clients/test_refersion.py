"""The Refersion client against the sandbox's Refersion on a real local server."""

import pytest
from werkzeug import Request, Response

from bridge.clients.refersion import RefersionClient
from bridge.core.retry import Action, classify
from bridge.sandbox._server import LocalServer
from tests.conftest import REFERSION_PUBLIC, REFERSION_SECRET

BODY = '{"cart_id":"c-1","order_id":"9","currency_code":"USD","items":[{"sku":"A","quantity":1,"price":10.00}]}'


class Elsewhere(LocalServer):
    """Another host a redirect could point at; it records whatever reaches it."""

    def dispatch(self, request: Request) -> Response:
        return Response("ok")


@pytest.fixture(scope="module")
def elsewhere_server():
    with Elsewhere() as server:
        yield server


@pytest.fixture
def elsewhere(elsewhere_server):
    elsewhere_server.reset()
    yield elsewhere_server
    elsewhere_server.reset()


@pytest.fixture
def client(refersion, refersion_server):
    made = RefersionClient(orders_url=refersion_server.orders_url, public_key=REFERSION_PUBLIC, secret_key=REFERSION_SECRET, timeout=2.0)
    yield made
    made.close()


def test_a_paid_order_is_posted_with_the_key_pair(client, refersion):
    reply = client.post_paid_order(BODY)
    assert (reply.status, reply.failure) == (200, None)
    assert refersion.order_ids == ["9"]
    assert refersion.received[0].headers["Refersion-Secret-Key"] == REFERSION_SECRET


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_and_is_dead(client, refersion, elsewhere, status):
    """Following it would hand the secret key (a header) to whatever host the answer names."""
    refersion.answer_next(status, headers={"Location": elsewhere.url + "/steal"}, body="")
    reply = client.post_paid_order(BODY)
    assert reply.status == status
    assert classify(reply.status, reply.failure).action is Action.DEAD
    assert elsewhere.requests == []
    assert refersion.attempts == ["9"]


def test_a_redirect_makes_the_delivery_dead_without_reaching_the_target(worker, refersion, elsewhere, db, clock, queue_report):
    refersion.answer_next(307, headers={"Location": elsewhere.url + "/steal"}, body="moved")
    queue_report(501, clock.now)
    assert worker.deliver_next() is True
    row = next(db.query("SELECT * FROM deliveries"))
    assert (row["state"], row["attempts"], row["last_status"]) == ("dead", 1, 307)
    assert elsewhere.requests == []
