"""POST /webhooks/bigcommerce: authenticate, validate, store once, answer fast."""

import base64
import hashlib
import hmac
import io
import json
import logging
import time
from datetime import UTC, datetime

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bridge.storage.db import connect, immediate
from bridge.storage.inbox import HANDLED_SCOPES
from bridge.web.webhook_schemas import DATA_SCHEMAS
from bridge.web.webhooks import parse_envelope
from tests.conftest import STORE_HASH, WEBHOOK_SECRET, envelope, post_webhook, status_updated


def event_rows(db):
    return list(db.query("SELECT * FROM events ORDER BY id"))


def test_a_valid_webhook_is_stored_and_answered_200_with_an_empty_body(client, db, bigcommerce):
    response = post_webhook(client, status_updated(250, 11))
    assert response.status_code == 200
    assert response.data == b""
    (row,) = event_rows(db)
    assert (row["scope"], row["store_hash"], row["order_id"], row["state"]) == ("store/order/statusUpdated", STORE_HASH, 250, "pending")
    assert json.loads(row["body"])["data"]["status"]["new_status_id"] == 11
    assert bigcommerce.calls() == 0  # the order is fetched by the worker, never in the request


def test_the_same_webhook_five_times_is_stored_once(client, db):
    body = status_updated(250, 11)
    assert [post_webhook(client, body).status_code for _ in range(5)] == [200] * 5
    assert len(event_rows(db)) == 1


def test_distinct_events_with_the_same_hash_are_both_stored(client, db):
    data = {"type": "order", "id": 250}
    first = envelope("store/order/updated", data, created_at=1_790_000_000)
    second = envelope("store/order/updated", data, created_at=1_790_000_060)
    assert first["hash"] == second["hash"]
    post_webhook(client, first)
    post_webhook(client, second)
    post_webhook(client, second)
    assert [row["event_created_at"] for row in event_rows(db)] == [1_790_000_000, 1_790_000_060]


def test_same_hash_under_another_scope_is_another_event(client, db):
    data = {"type": "order", "id": 250}
    post_webhook(client, envelope("store/order/created", data))
    post_webhook(client, envelope("store/order/updated", data))
    assert len(event_rows(db)) == 2


@pytest.mark.parametrize(
    "body",
    [
        {
            "scope": "store/order/statusUpdated",
            "store_id": 1025646,
            "data": {"type": "order", "id": 250},
            "hash": "x" * 40,
            "created_at": 1561479335,
            "producer": "stores/abc123",
        },
        {"scope": "store/order/created", "data": {"type": "order", "id": "250"}, "producer": "stores/abc123"},
        {
            "scope": "store/order/statusUpdated",
            "store_id": "1",
            "data": {"id": 250, "status": {"new_status_id": 11}},
            "hash": "h",
            "producer": "stores/abc123",
            "extra": [1, 2],
        },
    ],
    ids=["numeric-store-id", "no-hash-no-created-at", "unknown-keys"],
)
def test_liberal_in_what_is_accepted(client, db, body):
    assert post_webhook(client, body).status_code == 200
    (row,) = event_rows(db)
    assert (row["scope"], row["order_id"], row["state"]) == (body["scope"], 250, "pending")


def test_cart_converted_links_the_cart_to_the_order(client, db):
    body = envelope("store/cart/converted", {"type": "cart", "id": "d30016e2-23c0-4a90-884f-2e92ac135476", "orderId": 252})
    assert post_webhook(client, body).status_code == 200
    (row,) = event_rows(db)
    assert (row["state"], row["outcome"]) == ("done", "cart_linked")
    assert list(db.query("SELECT order_id, source, cart_id FROM cart_links")) == [
        {"order_id": 252, "source": "cart_converted", "cart_id": "d30016e2-23c0-4a90-884f-2e92ac135476"}
    ]


def test_refunds_are_queued_to_re_evaluate_their_order(client, db):
    body = envelope("store/order/refund/created", {"type": "order", "id": 250, "refund": {"refund_id": 3}})
    assert post_webhook(client, body).status_code == 200
    (row,) = event_rows(db)
    assert (row["state"], row["order_id"]) == ("pending", 250)
    assert json.loads(row["body"])["data"]["refund"] == {"refund_id": 3}  # all the later feature needs


# The example bodies of reference/bigcommerce.md 1.4 (and BigCommerce's store/app/uninstalled
# example), exactly, with the producer's {store_hash} filled in.
ORDER_EXAMPLE = {"data": {"type": "order", "id": 250}, "hash": "dd70c0976e06b67aaf671e73f49dcb79230ebf9d", "created_at": 1561479335}
DOCUMENTED = {
    "store/order/created": ORDER_EXAMPLE,
    "store/order/updated": ORDER_EXAMPLE,
    "store/order/archived": ORDER_EXAMPLE,
    "store/order/statusUpdated": {
        "data": {"type": "order", "id": 250, "status": {"previous_status_id": 0, "new_status_id": 11}},
        "hash": "7ee67cd1cf2ca60bc1aa9e5fe957d2de373be4ca",
        "created_at": 1561479335,
    },
    "store/order/refund/created": {
        "data": {"type": "order", "id": 250, "refund": {"refund_id": 3}},
        "hash": "cb07cdbdda8b1965e812693d5988154807eeed02",
        "created_at": 1561479923,
    },
    "store/cart/converted": {
        "data": {"type": "cart", "id": "d30016e2-23c0-4a90-884f-2e92ac135476", "orderId": 252},
        "hash": "b86db7c77d7ef8f90d6a8aefa56de32ccd776923",
        "created_at": 1561486893,
    },
    "store/app/uninstalled": {"data": {"type": "store"}, "hash": "352e4afc6dd3fc85ea26bfdf3f91852604d57528", "created_at": 1561482670},
}


def documented(scope: str) -> dict:
    return {"scope": scope, "store_id": "1025646", **DOCUMENTED[scope], "producer": f"stores/{STORE_HASH}"}


@pytest.mark.parametrize(
    ("scope", "state", "order_id", "cart_id", "refund_id"),
    [
        ("store/order/created", "pending", 250, None, None),
        ("store/order/updated", "pending", 250, None, None),
        ("store/order/statusUpdated", "pending", 250, None, None),
        ("store/order/refund/created", "pending", 250, None, 3),
        ("store/cart/converted", "done", 252, "d30016e2-23c0-4a90-884f-2e92ac135476", None),
        ("store/app/uninstalled", "ignored", None, None, None),  # the configured store: no app to uninstall
        # Not a scope the bridge handles: acknowledged and kept as ignored, its data unread.
        ("store/order/archived", "ignored", None, None, None),
    ],
)
def test_every_documented_webhook_shape_is_stored(client, db, scope, state, order_id, cart_id, refund_id):
    body = documented(scope)
    assert post_webhook(client, body).status_code == 200
    (row,) = event_rows(db)
    assert (row["scope"], row["store_hash"], row["order_id"], row["state"]) == (scope, STORE_HASH, order_id, state)
    assert json.loads(row["body"]) == body
    parsed = parse_envelope(body)
    assert (parsed.order_id, parsed.cart_id, parsed.refund_id) == (order_id, cart_id, refund_id)
    links = [(link["order_id"], link["cart_id"]) for link in db.query("SELECT order_id, cart_id FROM cart_links")]
    assert links == ([(order_id, cart_id)] if cart_id else [])


def test_every_handled_scope_has_its_own_data_schema():
    assert set(DATA_SCHEMAS) == set(HANDLED_SCOPES)


@pytest.mark.parametrize(
    ("scope", "data", "order_id", "refund_id"),
    [
        ("store/order/created", {"type": "order", "id": "250"}, 250, None),
        ("store/order/statusUpdated", {"id": "250", "status": {"previous_status_id": "1", "new_status_id": "11"}}, 250, None),
        ("store/order/statusUpdated", {"type": "order", "id": 250, "status": None}, 250, None),
        ("store/order/refund/created", {"type": "order", "id": "250", "refund": {"refund_id": "3"}}, 250, 3),
        ("store/order/refund/created", {"type": "order", "id": 250}, 250, None),
        ("store/order/refund/created", {"type": "order", "id": 250, "refund": {}}, 250, None),
        ("store/cart/converted", {"type": "cart", "id": "c-1", "orderId": "252"}, 252, None),
        ("store/app/uninstalled", {}, None, None),
        ("store/app/uninstalled", {"type": "store", "id": "x", "store_id": 1025646}, None, None),
        ("store/order/transaction/created", {"type": "transaction", "order_id": "250"}, None, None),
        ("store/product/updated", {"id": "not a number"}, None, None),
    ],
    ids=[
        "string-order-id",
        "string-status-ids",
        "null-status",
        "string-refund-id",
        "refund-missing",
        "refund-id-missing",
        "string-cart-order-id",
        "uninstalled-empty-data",
        "uninstalled-extra-keys",
        "unhandled-transaction",
        "unhandled-odd-data",
    ],
)
def test_liberal_data_per_scope(client, db, scope, data, order_id, refund_id):
    body = envelope(scope, data)
    assert post_webhook(client, body).status_code == 200
    (row,) = event_rows(db)
    assert (row["scope"], row["order_id"]) == (scope, order_id)
    assert parse_envelope(body).refund_id == refund_id


@pytest.mark.parametrize(
    ("scope", "data", "message"),
    [
        ("store/order/created", {"id": 250.5}, "data.id: Not a valid integer."),
        ("store/order/created", {"id": "٣٤٥"}, "data.id: Not a valid integer."),
        ("store/order/created", {"id": " 250"}, "data.id: Not a valid integer."),
        ("store/order/created", {"id": "-1"}, "data.id: Not a valid integer."),
        ("store/order/created", {"id": True}, "data.id: Not a valid integer."),
        ("store/order/created", {"id": 2**63}, "data.id: Must be greater than or equal to 1"),
        ("store/order/refund/created", {"id": 250, "refund": {"refund_id": "x"}}, "data.refund.refund_id: Not a valid integer."),
        ("store/order/refund/created", {"id": 250, "refund": 3}, "data.refund: "),
        ("store/order/refund/created", {"refund": {"refund_id": 3}}, "data.id: Missing data for required field."),
        ("store/order/statusUpdated", {"id": 250, "status": {"new_status_id": "paid"}}, "data.status.new_status_id: "),
        ("store/cart/converted", {"id": 7, "orderId": 252}, "data.id: Not a valid string."),
        ("store/cart/converted", {"id": "c-1", "orderId": "252a"}, "data.orderId: Not a valid integer."),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None,
)
def test_handled_scopes_with_the_wrong_data_get_400(client, db, scope, data, message):
    response = post_webhook(client, envelope(scope, data))
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert event_rows(db) == []


def test_unhandled_scopes_are_acknowledged_and_recorded_as_ignored(client, db):
    body = envelope("store/product/updated", {"type": "product", "id": 9})
    assert post_webhook(client, body).status_code == 200
    (row,) = event_rows(db)
    assert (row["state"], row["outcome"]) == ("ignored", "scope_not_handled")


def test_events_for_unknown_stores_are_acknowledged_and_ignored(client, db):
    assert post_webhook(client, status_updated(250, 11, store_hash="zzz999")).status_code == 200
    (row,) = event_rows(db)
    assert (row["state"], row["outcome"]) == ("ignored", "unknown_store")
    assert "zzz999" in row["note"]


# --- log lines -------------------------------------------------------------------


@pytest.fixture
def webhook_log(caplog):
    """The lines of the webhook intake, DEBUG included."""
    caplog.set_level(logging.DEBUG, logger="bridge.web.webhooks")

    def lines() -> list[str]:
        return [record.getMessage() for record in caplog.records if record.name == "bridge.web.webhooks"]

    return lines


@pytest.mark.parametrize(
    ("body", "level"),
    [
        (status_updated(250, 11), logging.DEBUG),
        (status_updated(250, 11, store_hash="zzz999"), logging.INFO),
        (envelope("store/product/updated", {"id": 9}), logging.INFO),
    ],
    ids=["stored-at-debug", "unknown-store-at-info", "not-handled-at-info"],
)
def test_a_stored_event_logs_at_debug_and_an_ignored_one_at_info(client, caplog, body, level):
    """One line per webhook at INFO would cost the intake more than its insert; what the
    worker does with the order is logged at INFO, and ignored events still say why."""
    caplog.set_level(logging.DEBUG, logger="bridge.web.webhooks")
    assert post_webhook(client, body).status_code == 200
    (record,) = [record for record in caplog.records if record.name == "bridge.web.webhooks"]
    assert record.levelno == level


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (status_updated(250, 11), ["stored", "store/order/statusUpdated", f"store {STORE_HASH}", "order 250"]),
        (envelope("store/product/updated", {"id": 9}), ["ignored", "store/product/updated", f"store {STORE_HASH}", "not handled"]),
        (status_updated(250, 11, store_hash="zzz999"), ["ignored", "statusUpdated", "store zzz999", "order 250", "unknown store"]),
        (envelope("store/app/uninstalled", {"type": "store"}), ["stored", "store/app/uninstalled", f"store {STORE_HASH}"]),
    ],
    ids=["stored", "scope-not-handled", "unknown-store", "no-order"],
)
def test_every_event_gets_one_log_line_naming_scope_store_and_order(client, webhook_log, body, expected):
    assert post_webhook(client, body).status_code == 200
    (line,) = webhook_log()
    assert all(part in line for part in expected), line
    assert "order None" not in line
    assert WEBHOOK_SECRET not in line


def test_a_re_delivery_gets_its_own_log_line(client, webhook_log):
    post_webhook(client, status_updated(250, 11))
    post_webhook(client, status_updated(250, 11))
    first, second = webhook_log()
    assert "stored" in first
    assert all(part in second for part in ["Re-delivery", "store/order/statusUpdated", f"store {STORE_HASH}", "order 250"]), second


def test_a_sender_cannot_forge_log_lines_through_the_scope(client, webhook_log):
    assert post_webhook(client, envelope("store/x\nINFO forged line", {})).status_code == 200
    (line,) = webhook_log()
    assert "\n" not in line


# --- 401 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "wrong",
        WEBHOOK_SECRET[:-1],
        WEBHOOK_SECRET + "x",
        WEBHOOK_SECRET[:-1] + chr(ord(WEBHOOK_SECRET[-1]) + 1),
        WEBHOOK_SECRET.upper(),
    ],
    ids=["missing", "empty", "wrong", "truncated", "extended", "last-byte-changed", "case-changed"],
)
def test_unauthenticated_requests_get_401_and_store_nothing(client, db, token):
    response = post_webhook(client, status_updated(250, 11), token=token)
    assert response.status_code == 401
    assert "X-Bridge-Token" in response.get_json()["error"]
    assert event_rows(db) == []


class WatchedBody(io.BytesIO):
    """A request body that remembers whether anything read it."""

    was_read = False

    def read(self, *args):
        self.was_read = True
        return super().read(*args)

    def readinto(self, buffer):
        self.was_read = True
        return super().readinto(buffer)


def test_a_401_without_a_token_does_not_read_the_body(client):
    body = WatchedBody(b"\xff not json")
    response = client.post("/webhooks/bigcommerce", input_stream=body, content_length=11, content_type="text/plain")
    assert response.status_code == 401  # not 415 or 400: the body is not judged
    assert not body.was_read


def test_a_wrong_token_gets_401_whatever_the_body(client):
    """An app store's token can only be checked against the store the body names: the body is read (64 KiB at most), never judged."""
    for body, content_type in ((b"\xff not json", "text/plain"), (b"{}", "application/json"), (b"[" * 100, "application/json")):
        response = client.post("/webhooks/bigcommerce", data=body, headers={"X-Bridge-Token": "wrong"}, content_type=content_type)
        assert response.status_code == 401, body


def test_each_app_store_has_its_own_token_and_the_shared_secret_speaks_for_none(client, db, settings):
    from tests.conftest import hook_token_of, install_store

    install_store(settings, "app777")
    install_store(settings, "app888")
    uninstall = envelope("store/app/uninstalled", {"type": "store"}, store_hash="app777", created_at=int(time.time()) + 5)
    assert post_webhook(client, uninstall).status_code == 401  # webhooks.secret: the configured store's only
    assert post_webhook(client, uninstall, token=hook_token_of("app888")).status_code == 401  # another store's token
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert post_webhook(client, uninstall, token=hook_token_of("app777")).status_code == 200
    assert post_webhook(client, status_updated(5, 11)).status_code == 200  # the configured store keeps webhooks.secret
    assert post_webhook(client, status_updated(6, 11), token=hook_token_of("app888")).status_code == 401


def test_the_body_watch_sees_a_read(client):
    body = WatchedBody(b"\xff not json")
    headers = {"X-Bridge-Token": WEBHOOK_SECRET}
    response = client.post("/webhooks/bigcommerce", input_stream=body, content_length=11, headers=headers, content_type="text/plain")
    assert response.status_code == 415
    assert body.was_read


# --- Standard Webhooks signature ---------------------------------------------------

CLIENT_SECRET = "bc-client-secret-for-signing"


def signed_headers(body: bytes, secret: str = CLIENT_SECRET, timestamp: int | None = None, message_id: str = "msg_2b1c") -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = base64.b64encode(hmac.new(secret.encode(), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{signature}"}


@pytest.fixture
def signing_client(make_settings):
    from bridge.web.app import create_app

    return create_app(make_settings(bigcommerce_client_secret=CLIENT_SECRET)).test_client()


def test_a_standard_webhooks_signature_authenticates(signing_client, db):
    body = json.dumps(status_updated(250, 11)).encode()
    response = signing_client.post("/webhooks/bigcommerce", data=body, headers=signed_headers(body), content_type="application/json")
    assert response.status_code == 200
    (row,) = event_rows(db)
    assert (row["order_id"], row["state"]) == (250, "pending")


def test_several_signatures_one_valid_is_enough(signing_client, db):
    body = json.dumps(status_updated(250, 11)).encode()
    headers = signed_headers(body)
    headers["webhook-signature"] = "v1,AAAA v2,BBBB " + headers["webhook-signature"]
    assert signing_client.post("/webhooks/bigcommerce", data=body, headers=headers, content_type="application/json").status_code == 200
    assert len(event_rows(db)) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, h: (body + b" ", h),
        lambda body, h: (body, {**h, "webhook-timestamp": str(int(time.time()) - 301)}),
        lambda body, h: (body, signed_headers(body, timestamp=int(time.time()) - 400)),
        lambda body, h: (body, signed_headers(body, timestamp=int(time.time()) + 400)),
        lambda body, h: (body, signed_headers(body, secret="another-secret")),
        lambda body, h: (body, {**h, "webhook-id": "msg_other"}),
        lambda body, h: (body, {k: v for k, v in h.items() if k != "webhook-id"}),
        lambda body, h: (body, {**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}),
    ],
    ids=["body-changed", "timestamp-changed", "too-old", "too-new", "wrong-secret", "id-changed", "id-missing", "unknown-version"],
)
def test_a_broken_signature_gets_401(signing_client, db, tamper):
    body = json.dumps(status_updated(250, 11)).encode()
    body, headers = tamper(body, signed_headers(body))
    assert signing_client.post("/webhooks/bigcommerce", data=body, headers=headers, content_type="application/json").status_code == 401
    assert event_rows(db) == []


@pytest.mark.parametrize(
    ("token", "signature_valid", "status"),
    [
        (WEBHOOK_SECRET, True, 200),
        ("an-old-rotated-secret", True, 200),
        (WEBHOOK_SECRET, False, 200),
        ("an-old-rotated-secret", False, 401),
    ],
    ids=["both-valid", "wrong-token-valid-signature", "valid-token-bad-signature", "both-wrong"],
)
def test_either_a_valid_token_or_a_valid_signature_authenticates(signing_client, db, token, signature_valid, status):
    body = json.dumps(status_updated(250, 11)).encode()
    headers = signed_headers(body, secret=CLIENT_SECRET if signature_valid else "another-secret")
    response = signing_client.post(
        "/webhooks/bigcommerce", data=body, headers={**headers, "X-Bridge-Token": token}, content_type="application/json"
    )
    assert response.status_code == status
    assert len(event_rows(db)) == (1 if status == 200 else 0)


def test_a_valid_token_is_enough_without_a_client_secret(client, db):
    body = json.dumps(status_updated(250, 11)).encode()
    headers = {**signed_headers(body, secret="another-secret"), "X-Bridge-Token": WEBHOOK_SECRET}
    assert client.post("/webhooks/bigcommerce", data=body, headers=headers, content_type="application/json").status_code == 200
    assert len(event_rows(db)) == 1


def test_no_secret_reaches_the_log(signing_client, caplog):
    caplog.set_level(logging.DEBUG)
    body = json.dumps(status_updated(250, 11)).encode()
    headers = {**signed_headers(body), "X-Bridge-Token": WEBHOOK_SECRET}
    signing_client.post("/webhooks/bigcommerce", data=body, headers=headers, content_type="application/json")
    signing_client.post("/webhooks/bigcommerce", data=body, headers={**headers, "X-Bridge-Token": "wrong"}, content_type="application/json")
    assert caplog.records
    for secret in (WEBHOOK_SECRET, CLIENT_SECRET, headers["webhook-signature"].split(",", 1)[1]):
        assert secret not in caplog.text


def test_signatures_are_refused_when_no_client_secret_is_configured(client, db):
    body = json.dumps(status_updated(250, 11)).encode()
    assert client.post("/webhooks/bigcommerce", data=body, headers=signed_headers(body), content_type="application/json").status_code == 401
    assert event_rows(db) == []


# --- 413, 415, 400 -------------------------------------------------------------------


def oversized_body() -> str:
    body = status_updated(250, 11)
    body["padding"] = "x" * (64 * 1024)
    return json.dumps(body)


def test_a_body_over_64_kib_gets_413(client, db):
    response = post_webhook(client, oversized_body())
    assert response.status_code == 413
    assert "64 KiB" in response.get_json()["error"]
    assert event_rows(db) == []


def test_a_chunked_body_over_64_kib_gets_413(client, db):
    # No Content-Length: the server (gunicorn) marks the stream terminated, as here.
    response = client.post(
        "/webhooks/bigcommerce",
        input_stream=io.BytesIO(oversized_body().encode()),
        headers={"X-Bridge-Token": WEBHOOK_SECRET, "Transfer-Encoding": "chunked"},
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert event_rows(db) == []


def test_a_body_of_exactly_64_kib_is_accepted(client, db):
    body = status_updated(250, 11)
    body["padding"] = ""
    text = json.dumps(body)
    body["padding"] = "x" * (64 * 1024 - len(text))
    text = json.dumps(body)
    assert len(text) == 64 * 1024
    assert post_webhook(client, text).status_code == 200
    (row,) = event_rows(db)
    assert row["body"] == text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""])
def test_a_body_that_is_not_json_gets_415(client, db, content_type):
    response = post_webhook(client, json.dumps(status_updated(250, 11)), content_type=content_type)
    assert response.status_code == 415
    assert event_rows(db) == []


def test_json_with_a_charset_or_suffix_is_accepted(client, db):
    assert post_webhook(client, status_updated(250, 11), content_type="application/json; charset=utf-8").status_code == 200
    assert post_webhook(client, status_updated(251, 11), content_type="application/vnd.bigcommerce+json").status_code == 200
    assert [row["order_id"] for row in event_rows(db)] == [250, 251]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        ("", "not valid JSON"),
        ("[" * 30_000 + "]" * 30_000, "nests deeper"),
        ("[1, 2, 3]", "must be a JSON object"),
        ('"store/order/created"', "must be a JSON object"),
        ("null", "must be a JSON object"),
        ('{"scope": "store/order/created", "data": {"id": 1}}', "producer: Missing data for required field."),
        ('{"producer": "stores/abc123", "data": {"id": 1}}', "scope: Missing data for required field."),
        ('{"scope": "store/order/created", "producer": "stores/abc123", "data": [1]}', "data: Not a valid mapping type."),
        ('{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": "abc"}}', "data.id: Not a valid integer."),
        ('{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": 0}}', "data.id: Must be greater than or equal to 1"),
        ('{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": 1e30}}', "data.id: "),
        (
            '{"scope": "store/order/created", "producer": "stores/abc123", "data": {"type": "order"}}',
            "data.id: Missing data for required field.",
        ),
        (
            '{"scope": "store/order/created", "producer": "shops/abc123", "data": {"id": 1}}',
            "producer: Must look like stores/<store_hash>.",
        ),
        (
            '{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": 1}, "created_at": "yesterday"}',
            "created_at: Not a valid integer.",
        ),
        (
            '{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": 1}, "store_id": true}',
            "store_id: Not a string or a number.",
        ),
        (
            '{"scope": "store/cart/converted", "producer": "stores/abc123", "data": {"id": "cart-1"}}',
            "data.orderId: Missing data for required field.",
        ),
        ('{"scope": 7, "producer": "stores/abc123", "data": {"id": 1}}', "scope: Not a valid string."),
        (
            '{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": 1, "x": ' + "[" * 40 + "]" * 40 + "}}",
            "nests deeper",
        ),
        (
            '{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": 1, "x": ' + "[" * 940 + "]" * 940 + "}}",
            "nests deeper",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None,
)
def test_malformed_or_wrongly_shaped_bodies_get_400_naming_the_problem(client, db, body, message):
    response = post_webhook(client, body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert event_rows(db) == []


def test_other_methods_get_405(client):
    response = client.get("/webhooks/bigcommerce")
    assert response.status_code == 405
    assert "error" in response.get_json()


ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=20)  # lone surrogates too
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=20,
)
ENVELOPE_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "scope": st.sampled_from(sorted(HANDLED_SCOPES)) | st.text(max_size=30) | JSON_VALUES,
        "producer": st.sampled_from(["stores/abc123", "stores/", "stores/zzz"]) | JSON_VALUES,
        "store_id": JSON_VALUES,
        "hash": JSON_VALUES,
        "created_at": st.integers() | JSON_VALUES,
        "data": st.fixed_dictionaries(
            {},
            optional={
                "id": st.integers() | st.integers().map(str) | JSON_VALUES,
                "orderId": st.integers() | JSON_VALUES,
                "status": JSON_VALUES,
                "refund": st.fixed_dictionaries({}, optional={"refund_id": st.integers() | JSON_VALUES}) | JSON_VALUES,
            },
        )
        | JSON_VALUES,
    },
)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=ENVELOPE_LIKE | JSON_VALUES)
def test_nothing_a_sender_puts_in_a_body_yields_a_500(client, body):
    assert post_webhook(client, body).status_code in (200, 400)


@hypothesis_settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1"]))
def test_nothing_a_sender_puts_in_raw_bytes_yields_a_500(client, raw, content_type):
    assert post_webhook(client, raw, content_type=content_type).status_code in (200, 400, 415)


@pytest.mark.parametrize(("age", "status"), [(-300, 200), (0, 200), (300, 200), (301, 401), (-301, 401)])
def test_the_signature_window_is_five_minutes_either_way(signing_client, age, status):
    signed_at = 1_790_000_000
    body = json.dumps(status_updated(250, 11)).encode()
    with freeze_time(datetime.fromtimestamp(signed_at + age, tz=UTC)):
        headers = signed_headers(body, timestamp=signed_at)
        response = signing_client.post("/webhooks/bigcommerce", data=body, headers=headers, content_type="application/json")
    assert response.status_code == status


def test_a_locked_database_answers_503_stores_nothing_and_the_retry_succeeds(client, db, monkeypatch):
    monkeypatch.setattr("bridge.web.database.REQUEST_BUSY_TIMEOUT", 0.1)
    blocker = connect(db.conn.execute("PRAGMA database_list").fetchone()[2])
    with immediate(blocker):
        started = time.monotonic()
        response = post_webhook(client, status_updated(250, 11))
        waited = time.monotonic() - started
        assert response.status_code == 503
        assert 0.09 <= waited < 2, f"answered after {waited:.2f} s: the request's busy timeout (0.1 s) was not used"
        assert "retry later" in response.get_json()["error"]
    blocker.close()
    assert event_rows(db) == []
    assert post_webhook(client, status_updated(250, 11)).status_code == 200
    assert len(event_rows(db)) == 1


def test_without_created_at_an_event_is_never_taken_for_a_re_delivery(client, db):
    body = envelope("store/order/updated", {"type": "order", "id": 250}, created_at=None)
    post_webhook(client, body)
    post_webhook(client, body)
    assert len(event_rows(db)) == 2  # cannot be told apart: both are kept, the outbox stops a double report


@pytest.mark.parametrize("timestamp", ["²", "1" * 5000, "٣٤٥", "-300", "12.5", " 1790000000"])
def test_odd_signature_timestamps_get_401_not_500(signing_client, timestamp):
    body = json.dumps(status_updated(250, 11)).encode()
    headers = {**signed_headers(body), "webhook-timestamp": timestamp}
    assert signing_client.post("/webhooks/bigcommerce", data=body, headers=headers, content_type="application/json").status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        '{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": 1}, "hash": "\\ud800"}',
        '{"scope": "store/\\udfff", "producer": "stores/abc123", "data": {"id": 1}}',
        '{"scope": "store/cart/converted", "producer": "stores/abc123", "data": {"id": "\\ud800", "orderId": 1}}',
        '{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": 1, "note": "\\ud83d"}}',
    ],
    ids=["hash", "scope", "cart-id", "unused-field"],
)
def test_lone_surrogates_get_400_not_500(client, db, body):
    response = post_webhook(client, body)
    assert response.status_code == 400
    assert "lone surrogate" in response.get_json()["error"]
    assert event_rows(db) == []


def test_a_proper_surrogate_pair_is_fine(client, db):
    body = '{"scope": "store/order/created", "producer": "stores/abc123", "data": {"id": 1, "note": "\\ud83c\\udf35"}}'
    assert post_webhook(client, body).status_code == 200
    assert "\\ud83c\\udf35" in event_rows(db)[0]["body"]


HEADER_TEXT = st.text(alphabet=st.characters(max_codepoint=255, exclude_categories=("Cc",)), max_size=40)


@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    token=st.none() | HEADER_TEXT,
    webhook_id=st.none() | HEADER_TEXT,
    timestamp=st.none() | HEADER_TEXT | st.integers().map(str),
    signature=st.none() | HEADER_TEXT | HEADER_TEXT.map(lambda text: f"v1,{text}"),
)
def test_nothing_a_sender_puts_in_the_auth_headers_yields_a_500(signing_client, token, webhook_id, timestamp, signature):
    headers = {
        name: value
        for name, value in {
            "X-Bridge-Token": token,
            "webhook-id": webhook_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signature,
        }.items()
        if value is not None
    }
    body = json.dumps(status_updated(250, 11))
    response = signing_client.post("/webhooks/bigcommerce", data=body, headers=headers, content_type="application/json")
    assert response.status_code in (200, 401)


def test_a_database_that_cannot_be_opened_answers_503_not_500(client, settings):
    import os
    import shutil

    path = settings.database.path
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    os.mkdir(path)  # the file is now a folder: SQLite cannot open it
    try:
        response = post_webhook(client, status_updated(250, 11))
        assert response.status_code == 503
        assert "retry later" in response.get_json()["error"]
        assert client.get("/healthz").status_code == 503
    finally:
        shutil.rmtree(path)
