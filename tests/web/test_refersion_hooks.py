"""``POST /webhooks/refersion``: Refersion's signed conversion-trigger webhooks, stored once,
a COUPON trigger's code queued for the worker; nothing sent to BigCommerce in the request."""

import base64
import hashlib
import hmac
import json
import logging

import pytest

from bridge.web.app import create_app
from tests.conftest import STORE_HASH, install_store

HOOK_SECRET = "refersion-signing-secret-0123456789"
TOPIC = "NEW_CONVERSION_TRIGGER"


def sign(body: bytes, secret: str = HOOK_SECRET) -> str:
    """Refersion's documented signature, computed here independently of the bridge's code."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def trigger(trigger_id=1097, code="CODE100", kind="COUPON", affiliate_id=55) -> bytes:
    return json.dumps({"id": trigger_id, "affiliate_id": affiliate_id, "trigger": code, "type": kind}).encode()


def post(client, body: bytes, *, signature: str | None = "sign", topic: str | None = TOPIC, query: str = ""):
    headers = {}
    if signature == "sign":
        signature = sign(body)
    if signature is not None:
        headers["Refersion-Signature"] = signature
    if topic is not None:
        headers["Refersion-Topic"] = topic
    return client.post(f"/webhooks/refersion{query}", data=body, headers=headers, content_type="application/json")


@pytest.fixture
def hooks_settings(make_settings):
    return make_settings(refersion_webhook_secret=HOOK_SECRET, coupons_promotion_id="1")


@pytest.fixture
def hook_client(hooks_settings):
    app = create_app(hooks_settings)
    app.config["TESTING"] = True
    return app.test_client()


def stored(db):
    return list(db.query("SELECT * FROM refersion_events ORDER BY id"))


def coupon_deliveries(db):
    return list(db.query("SELECT * FROM deliveries WHERE kind = 'coupon' ORDER BY id"))


def test_no_secret_no_endpoint(client, db):
    response = post(client, trigger())
    assert response.status_code == 404
    assert "refersion.webhook_secret" in response.get_json()["error"]
    assert stored(db) == []


def test_a_signed_coupon_trigger_is_stored_and_its_code_queued_without_calling_bigcommerce(hook_client, db, bigcommerce):
    response = post(hook_client, trigger())
    assert response.status_code == 200
    [event] = stored(db)
    assert (event["store_hash"], event["topic"], event["trigger_id"], event["trigger"], event["outcome"]) == (
        STORE_HASH,
        TOPIC,
        "1097",
        "CODE100",
        "queued",
    )
    [delivery] = coupon_deliveries(db)
    assert (delivery["key"], delivery["order_id"], delivery["state"]) == (f"coupon:{STORE_HASH}:code100", None, "pending")
    assert json.loads(delivery["payload"])["code"] == "CODE100"
    assert bigcommerce.calls() == 0  # the worker creates the code, not the request


@pytest.mark.parametrize(
    "signature",
    [None, "", "not base64 at all", sign(b"another body"), sign(trigger(), "another-secret-0123456789")],
    ids=["missing", "empty", "garbage", "other body", "other secret"],
)
def test_a_forged_or_missing_signature_is_refused(hook_client, db, signature):
    response = post(hook_client, trigger(), signature=signature)
    assert response.status_code == 401
    assert "Refersion-Signature" in response.get_json()["error"]
    assert stored(db) == [] and coupon_deliveries(db) == []


def test_a_replayed_body_or_trigger_id_is_stored_once(hook_client, db):
    body = trigger()
    assert post(hook_client, body).status_code == 200
    assert post(hook_client, body).status_code == 200  # the same signed body again
    spaced = json.dumps(json.loads(body), indent=2).encode()  # the same trigger id, another body
    assert post(hook_client, spaced).status_code == 200
    assert len(stored(db)) == 1
    assert len(coupon_deliveries(db)) == 1


def test_an_oversized_body_is_refused_unread(hook_client, db):
    body = json.dumps({"id": 1, "trigger": "A", "type": "COUPON", "pad": "x" * (64 * 1024)}).encode()
    response = post(hook_client, body)
    assert response.status_code == 413
    assert stored(db) == []


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"id": 5, "trigger": "X", "type": "BOGUS"}).encode(), "type: Must be one of: COUPON, SKU, EMAIL."),
        (json.dumps({"trigger": "X", "type": "COUPON"}).encode(), "id: Missing data for required field."),
        (json.dumps({"id": "12a", "trigger": "X", "type": "COUPON"}).encode(), "id: Not a number or a string of digits."),
        (json.dumps({"id": 5, "trigger": "", "type": "COUPON"}).encode(), "trigger: Must be 1 to 255 characters."),
    ],
    ids=["not json", "not an object", "bad type", "no id", "bad id", "empty trigger"],
)
def test_malformed_bodies_get_400_naming_the_problem(hook_client, db, body, named):
    response = post(hook_client, body)
    assert response.status_code == 400
    assert named in response.get_json()["error"]
    assert stored(db) == []


@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [
        ("SKU", "MUG-RED", "SKU triggers are not pushed"),
        ("EMAIL", "SHOPPER@EXAMPLE.COM", "EMAIL triggers are not pushed"),
        ("COUPON", "NO/SLASHES", "not pushed: the code 'NO/SLASHES' has characters BigCommerce refuses"),
    ],
)
def test_triggers_that_make_no_code_are_recorded_as_ignored_with_the_reason(hook_client, db, kind, code, reason):
    assert post(hook_client, trigger(code=code, kind=kind)).status_code == 200
    [event] = stored(db)
    assert event["outcome"] == "ignored"
    assert reason in event["note"]
    assert coupon_deliveries(db) == []


def test_other_topics_are_recorded_as_ignored_without_their_details(hook_client, db):
    body = json.dumps({"id": 9, "first_name": "Ada", "email": "ada@example.com"}).encode()
    assert post(hook_client, body, topic="AFFILIATE_DETAILS_CHANGE").status_code == 200
    [event] = stored(db)
    assert (event["outcome"], event["body"], event["trigger_id"]) == ("ignored", None, None)
    assert "AFFILIATE_DETAILS_CHANGE is not acted on" in event["note"]


def test_a_trigger_without_a_topic_header_is_recognised_by_its_shape(hook_client, db):
    assert post(hook_client, trigger(), topic=None).status_code == 200
    assert stored(db)[0]["outcome"] == "queued"


def test_a_coupon_trigger_while_coupon_push_is_off_is_recorded_as_ignored(make_settings, db):
    app = create_app(make_settings(refersion_webhook_secret=HOOK_SECRET))
    assert post(app.test_client(), trigger()).status_code == 200
    [event] = stored(db)
    assert event["outcome"] == "ignored" and "coupon push is off" in event["note"]
    assert coupon_deliveries(db) == []


def test_with_several_stores_the_url_names_the_store(hook_client, hooks_settings, db):
    install_store(hooks_settings, "app2store")
    response = post(hook_client, trigger())
    assert response.status_code == 400
    assert "?store=" in response.get_json()["error"] and "app2store" in response.get_json()["error"]
    response = post(hook_client, trigger(), query="?store=nosuchstore")
    assert response.status_code == 400
    assert "does not serve store nosuchstore" in response.get_json()["error"]
    assert post(hook_client, trigger(), query="?store=../x").status_code == 400
    assert stored(db) == []

    assert post(hook_client, trigger(), query="?store=app2store").status_code == 200
    assert [(row["store_hash"], row["key"]) for row in coupon_deliveries(db)] == [("app2store", "coupon:app2store:code100")]


def test_a_signed_body_replayed_against_another_store_is_taken_nowhere_new(hook_client, hooks_settings, db):
    install_store(hooks_settings, "app2store")
    body = trigger()
    assert post(hook_client, body, query=f"?store={STORE_HASH}").status_code == 200
    # Anyone who saw this signed body (a log, a proxy) replays it with ?store= changed: the signature does not cover the URL.
    assert post(hook_client, body, query="?store=app2store").status_code == 200
    spaced = json.dumps(json.loads(body), indent=2).encode()  # the same trigger id in another body
    assert post(hook_client, spaced, query="?store=app2store").status_code == 200
    assert [row["store_hash"] for row in stored(db)] == [STORE_HASH]
    assert [row["store_hash"] for row in coupon_deliveries(db)] == [STORE_HASH]


def test_neither_the_secret_nor_the_signature_reaches_the_log(hook_client, caplog):
    caplog.set_level(logging.DEBUG)
    body = trigger()
    post(hook_client, body)
    post(hook_client, body, signature=sign(body, "wrong-secret-0123456789"))
    text = caplog.text
    assert "CODE100" in text  # the request was logged
    assert HOOK_SECRET not in text and sign(body) not in text


def test_a_replayed_body_of_another_topic_is_stored_once(hook_client, db):
    body = json.dumps({"id": 77, "status": "APPROVED"}).encode()
    for _ in range(2):
        assert post(hook_client, body, topic="APPROVED_CONVERSION").status_code == 200
    assert len(stored(db)) == 1
