"""The inbox: what an incoming event leaves behind, for known and unknown stores."""

from bridge.storage import carts
from bridge.storage.inbox import CART_CONVERTED, Envelope, record_event
from tests.conftest import envelope, post_webhook

CART = "d30016e2-23c0-4a90-884f-2e92ac135476"


def cart_converted(store_hash: str) -> Envelope:
    data = {"type": "cart", "id": CART, "orderId": 252}
    return Envelope(scope=CART_CONVERTED, store_hash=store_hash, data=data, created_at=1_790_000_000, order_id=252, cart_id=CART)


def test_a_cart_of_an_unknown_store_is_not_linked_to_any_order(db):
    assert record_event(db, cart_converted("zzz999"), "{}", known_store=False, now=1.0) is not None
    row = next(db.query("SELECT state, outcome FROM events"))
    assert (row["state"], row["outcome"]) == ("ignored", "unknown_store")
    assert list(db.query("SELECT * FROM cart_links")) == []


def test_a_cart_of_a_known_store_is_linked_once_even_when_redelivered(db):
    assert record_event(db, cart_converted("abc123"), "{}", known_store=True, now=1.0) is not None
    assert record_event(db, cart_converted("abc123"), "{}", known_store=True, now=2.0) is None
    assert carts.known_cart_ids(db, store_hash="abc123", order_id=252) == {"cart_converted": CART}
    assert carts.known_cart_ids(db, store_hash="zzz999", order_id=252) == {}


def test_a_cart_converted_webhook_from_an_unknown_store_stores_no_cart_link(client, db):
    body = envelope("store/cart/converted", {"type": "cart", "id": CART, "orderId": 252}, store_hash="zzz999")
    assert post_webhook(client, body).status_code == 200
    row = next(db.query("SELECT state, outcome FROM events"))
    assert (row["state"], row["outcome"]) == ("ignored", "unknown_store")
    assert list(db.query("SELECT * FROM cart_links")) == []
