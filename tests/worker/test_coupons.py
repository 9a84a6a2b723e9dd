"""Coupon pushes: a Refersion coupon trigger becomes a code in BigCommerce through the worker,
from the ``coupons.*`` template; an existing code is done; a 422 is dead with its reason;
a 401 pauses the store's BigCommerce side; a Refersion pause holds nothing back."""

import json
import re
from pathlib import Path

import pytest

from bridge.config import ConfigError, load_settings
from bridge.core.coupons import code_problem
from bridge.storage import history, incidents, outbox, pauses
from bridge.storage.db import immediate
from bridge.storage.refersion_events import TERMINAL, coupon_payload
from bridge.web.app import create_app
from tests.conftest import STORE_HASH, install_store, queue_delivery
from tests.web.test_pages import ADMIN_TOKEN, SESSION_SECRET, sign_in
from tests.web.test_refersion_hooks import HOOK_SECRET, post, trigger

CODES = r"/v3/promotions/\d+/codes$"


@pytest.fixture
def promotion(bigcommerce) -> int:
    return bigcommerce.add_promotion("Affiliate codes")


@pytest.fixture
def coupon_settings(make_settings, promotion):
    return make_settings(
        refersion_webhook_secret=HOOK_SECRET,
        coupons_promotion_id=str(promotion),
        coupons_max_uses="100",
        coupons_max_uses_per_customer="1",
        server_admin_token=ADMIN_TOKEN,
        server_session_secret=SESSION_SECRET,
    )


@pytest.fixture
def hook_client(coupon_settings):
    app = create_app(coupon_settings)
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def coupon_worker(make_worker, coupon_settings):
    return make_worker(coupon_settings)


def queue_code(db, code, now, store_hash=STORE_HASH):
    with immediate(db):
        outbox.enqueue(
            db,
            key=outbox.coupon_key(store_hash, code),
            kind=outbox.COUPON,
            store_hash=store_hash,
            order_id=None,
            payload=coupon_payload(code, source=TERMINAL),
            now=now,
        )


def pushed(db):
    return history.coupon_pushes(db)


def test_a_coupon_trigger_becomes_a_code_in_bigcommerce(hook_client, coupon_worker, bigcommerce, db, promotion):
    assert post(hook_client, trigger(code="SUMMER-ANNA")).status_code == 200
    coupon_worker.run_until_idle()

    code = bigcommerce.coupon_code("SUMMER-ANNA")
    assert (code["promotion_id"], code["max_uses"], code["max_uses_per_customer"]) == (promotion, 100, 1)
    [row] = pushed(db)
    assert (row["code"], row["state"], row["reason"], row["last_status"], row["source"]) == (
        "SUMMER-ANNA",
        "pushed",
        None,
        201,
        "refersion trigger",
    )
    assert len(bigcommerce.recorded(CODES, "POST")) == 1  # one call for a new code


def test_a_code_that_exists_already_is_done_not_an_error(coupon_worker, bigcommerce, db, clock, promotion):
    bigcommerce.add_coupon_code("EXISTING10", promotion)
    queue_code(db, "existing10", clock.now)  # codes are not case-sensitive
    coupon_worker.run_until_idle()

    [row] = pushed(db)
    assert (row["state"], row["reason"]) == ("already existed", None)
    assert [call.status for call in bigcommerce.recorded(r"/v3/promotions/", None)] == [409, 200]  # refused, then found


def test_a_422_is_dead_with_bigcommerce_s_reason_shown(coupon_worker, coupon_settings, bigcommerce, db, clock):
    bigcommerce.refuse_coupon_codes("The promotion has ended.")
    queue_code(db, "LATE10", clock.now)
    coupon_worker.run_until_idle()

    [row] = pushed(db)
    assert (row["state"], row["last_status"], row["attempts"]) == ("failed", 422, 1)
    assert "The promotion has ended." in row["reason"]
    page, facts = status_page(coupon_settings)
    assert "Coupon codes pushed" in page and "LATE10" in page and "The promotion has ended." in page
    assert [(row["code"], row["state"]) for row in facts["coupons"]] == [("LATE10", "failed")]


def status_page(settings) -> tuple[str, dict]:
    """The status page and ``/api/status``, signed in with the admin token."""
    app = create_app(settings)
    app.config["TESTING"] = True
    client = app.test_client()
    sign_in(client)
    page = client.get("/")
    assert page.status_code == 200
    facts = client.get("/api/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).get_json()
    return page.get_data(as_text=True), facts


def test_a_bigcommerce_401_pauses_the_store_not_the_code(coupon_worker, bigcommerce, db, clock):
    bigcommerce.access_token = "a-token-the-bridge-does-not-have"  # the bridge's token is refused now
    queue_code(db, "PAUSED10", clock.now)
    coupon_worker.run_until_idle()

    [row] = list(db.query("SELECT * FROM deliveries WHERE kind = 'coupon'"))
    assert (row["state"], row["attempts"]) == ("pending", 0)
    assert [(p["service"], p["store_hash"]) for p in pauses.pauses(db)] == [("bigcommerce", STORE_HASH)]
    assert pushed(db)[0]["state"] == "paused"
    calls = len(bigcommerce.recorded(CODES, "POST"))
    clock.advance(3600)
    coupon_worker.deliver_next()
    assert len(bigcommerce.recorded(CODES, "POST")) == calls  # held back while paused, no attempt burnt


def test_a_refersion_pause_does_not_hold_a_coupon_push(coupon_worker, bigcommerce, refersion, db, clock):
    with immediate(coupon_worker.db):
        coupon_worker.ctx.pause(STORE_HASH, "refersion", "keys refused")  # with the keys' fingerprint: it stays
    queue_delivery(db, 501, clock.now)  # a paid report of the same store: held by the pause
    queue_code(db, "GOES10", clock.now)
    coupon_worker.run_until_idle()

    assert bigcommerce.coupon_code("GOES10") is not None
    assert pushed(db)[0]["state"] == "pushed"
    assert refersion.attempts == []
    assert next(db.query("SELECT state FROM deliveries WHERE kind = 'paid'"))["state"] == "pending"


def test_the_legacy_coupons_api_builds_a_whole_coupon_from_the_template(make_settings, make_worker, bigcommerce, db, clock):
    settings = make_settings(
        coupons_api="coupons",
        coupons_discount_type="percentage_discount",
        coupons_amount="15",
        coupons_min_purchase="50",
        coupons_expires_after_days="30",
        coupons_max_uses="5",
        coupons_applies_to="[18]",
    )
    worker = make_worker(settings)
    queue_code(db, "LEGACY15", clock.now)
    worker.run_until_idle()

    made = bigcommerce.coupon_code("LEGACY15")
    assert (made["type"], made["amount"], made["min_purchase"], made["max_uses"]) == ("percentage_discount", "15.0000", "50.0000", 5)
    assert made["applies_to"] == {"entity": "categories", "ids": [18]}
    assert made["expires"]  # RFC 2822, 30 days after creation
    assert pushed(db)[0]["state"] == "pushed"

    queue_code(db, "legacy15 ", clock.now)  # the same code again (another key): found, done
    with immediate(db):
        outbox.enqueue(
            db, key="coupon:abc123:again", kind=outbox.COUPON, store_hash=STORE_HASH, order_id=None,
            payload=coupon_payload("legacy15", source=TERMINAL), now=clock.now,
        )  # fmt: skip
    worker.run_until_idle()
    assert {row["state"] for row in pushed(db)} == {"pushed", "already existed"}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("min_purchase", "-1", "coupons.min_purchase: Must be more than 0"),
        ("expires_after_days", "0", "coupons.expires_after_days: Must be a whole number of days from 1 to 3650."),
        ("expires_after_days", "soon", "coupons.expires_after_days: Not a valid integer."),
        ("max_uses", "-2", "coupons.max_uses: Must be a whole number from 0 (unlimited) to 100000."),
        ("max_uses_per_customer", "1.5", "coupons.max_uses_per_customer: Not a valid integer."),
    ],
)
def test_each_new_template_key_is_validated_at_start_up(environ, key, value, message):
    env = {**environ, "BRIDGE_COUPONS_API": "coupons", "BRIDGE_COUPONS_AMOUNT": "10", f"BRIDGE_COUPONS_{key.upper()}": value}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=env)
    assert message in str(caught.value)


@pytest.mark.parametrize("key", ["min_purchase", "expires_after_days", "amount", "applies_to", "discount_type"])
def test_keys_the_promotion_owns_are_refused_with_api_promotions(environ, key):
    value = {"applies_to": "[1]", "discount_type": "free_shipping"}.get(key, "5")
    env = {**environ, "BRIDGE_COUPONS_PROMOTION_ID": "7", f"BRIDGE_COUPONS_{key.upper()}": value}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ=env)
    assert re.search(rf"coupons\.{key}: is not used with api = \"promotions\"", str(caught.value))


@pytest.mark.parametrize(
    ("code", "ok"), [("SUMMER-ANNA_10", True), ("two words", True), ("x" * 50, True), ("x" * 51, False), ("DÉJÀ", False), ("", False)]
)
def test_bigcommerce_s_code_rule(code, ok):
    assert (code_problem(code) is None) is ok


def test_the_answer_kept_is_json_naming_the_code(coupon_worker, db, clock):
    queue_code(db, "KEPT10", clock.now)
    coupon_worker.run_until_idle()
    answer = json.loads(next(db.query("SELECT response FROM deliveries WHERE kind = 'coupon'"))["response"])
    assert (answer["code"], answer["created"], answer["api"]) == ("KEPT10", True, "promotions")


def test_the_example_s_legacy_coupon_template_loads(environ):
    """config.example.toml shows the api = "coupons" keys indented (they are refused beside its
    api = "promotions"): with api = "coupons" their example values load."""
    example = (Path(__file__).parents[2] / "config.example.toml").read_text()
    section = example[example.index("[coupons]") : example.index("[storefront]")]
    values = dict(re.findall(r"(?m)^#\s{3,}(\w+) = (.+)$", section))
    assert set(values) == {"discount_type", "amount", "applies_to", "min_purchase", "expires_after_days"}
    template_env = {f"BRIDGE_COUPONS_{key.upper()}": value.strip('"') for key, value in values.items()}
    env = {**environ, "BRIDGE_COUPONS_API": "coupons", **template_env}
    template = load_settings(None, environ=env).coupons
    assert (template.amount, template.min_purchase, template.expires_after_days, template.applies_to) == (10, 25, 90, (18, 23))


def test_a_store_without_a_refersion_key_pair_still_gets_its_codes(make_settings, make_worker, bigcommerce, db, clock):
    settings = make_settings(
        bigcommerce_store_hash=None,
        bigcommerce_access_token=None,
        refersion_public_key=None,
        refersion_secret_key=None,
        bigcommerce_client_id="app-client-0123456789",
        bigcommerce_client_secret="app-client-secret-0123456789",
        coupons_promotion_id="1",
    )
    install_store(settings, "keyless1", access_token="keyless-token-0123456789")
    bigcommerce.add_store("keyless1", "keyless-token-0123456789")
    assert bigcommerce.add_promotion(store_hash="keyless1") == 1
    queue_code(db, "NOKEYS1", clock.now, store_hash="keyless1")
    make_worker(settings).run_until_idle()

    assert bigcommerce.coupon_code("NOKEYS1", store_hash="keyless1") is not None
    assert pushed(db)[0]["state"] == "pushed"
    assert pauses.pauses(db) == []  # no Refersion pause for a push that never needed its keys


def test_a_bigcommerce_429_holds_the_store_and_burns_no_attempt(coupon_worker, bigcommerce, db, clock):
    bigcommerce.fail_next(429, headers={"X-Rate-Limit-Time-Reset-Ms": "5000"}, path=r"/codes$")
    queue_code(db, "BUSY10", clock.now)
    coupon_worker.deliver_next()

    row = next(db.query("SELECT * FROM deliveries WHERE kind = 'coupon'"))
    assert (row["state"], row["attempts"]) == ("pending", 0)
    assert row["due_at"] - clock.now == pytest.approx(5.0)
    assert [hold["service"] for hold in pauses.holds(db, now=clock.now)] == ["bigcommerce"]
    clock.advance(5.1)
    coupon_worker.run_until_idle()
    assert pushed(db)[0]["state"] == "pushed"


def test_a_refused_code_raises_no_alert_about_reports_to_refersion(coupon_worker, bigcommerce, db, clock):
    bigcommerce.refuse_coupon_codes("The promotion has ended.")
    queue_code(db, "LATE11", clock.now)
    coupon_worker.run_until_idle()
    assert pushed(db)[0]["state"] == "failed"
    assert incidents.dead_counts(db, STORE_HASH) == (0, 0)  # the status page lists it; no report failed
