"""One worker serving several stores: the configured one and app installs, each with its own
BigCommerce token, Refersion key pair and settings; one store's trouble never holds up another's.

Real Flask intake, real SQLite, real worker; the sandbox BigCommerce holds every store and
the sandbox Refersion accepts every store's pair, both recording the headers they received.
"""

from __future__ import annotations

import time

import pytest

from bridge.storage import history
from bridge.storage import stores as store_rows
from bridge.storage.db import immediate
from bridge.storage.stores import StoreRegistry
from bridge.web.app import create_app
from bridge.worker import evaluate
from bridge.worker.deliver import NO_KEYS
from bridge.worker.loop import RESUME_CHECK_SECONDS
from tests.conftest import (
    BC_TOKEN,
    REFERSION_PUBLIC,
    REFERSION_SECRET,
    STORE_HASH,
    hook_token_of,
    install_store,
    post_webhook,
    status_updated,
)
from tests.fakes import load_fixture

APP_TOKENS = {"appone": "app-token-one-2f7c9e1a4b6d8053", "apptwo": "app-token-two-8d3b5f7a9c1e2064"}
TOKENS = {STORE_HASH: BC_TOKEN, **APP_TOKENS}
PAIRS = {
    STORE_HASH: (REFERSION_PUBLIC, REFERSION_SECRET),  # the config's
    "appone": ("pub_appone_own", "sec_appone_own_1a2b3c4d5e"),
    "apptwo": ("pub_apptwo_own", "sec_apptwo_own_6f7a8b9c0d"),
}
ADMIN_TOKEN = "adm-5c2e8a1f9b3d7e4a6c0f2b8d1e9a"
SESSION_SECRET = "ses-7a3f1c9e5b2d8a4f6e0c3b9d7a1e"


def save_settings(db, settings, store_hash: str, **changes) -> None:
    """As the settings page saves them."""
    with immediate(db):
        StoreRegistry(settings).save_settings(db, store_hash=store_hash, now=time.time(), **changes)


def add_order(bigcommerce, store_hash: str, order_id: int) -> int:
    return bigcommerce.add(load_fixture("coupons_one_excluded"), store_hash=store_hash, id=order_id)


def reports(refersion) -> list[tuple[str, str]]:
    """(order id, public key) of every report Refersion accepted; the secret is checked to match the pair."""
    found = []
    for received in refersion.received:
        public, secret = received.keys
        assert (public, secret) in PAIRS.values()
        found.append((received.body["order_id"], public))
    return sorted(found)


def tokens_sent(bigcommerce, store_hash: str) -> set[str]:
    return {request.headers.get("X-Auth-Token") for request in bigcommerce.recorded(rf"^/stores/{store_hash}/")}


@pytest.fixture
def apps(settings, db, bigcommerce, refersion):
    """Two app installs beside the configured store, each known to the sandbox with its own token and pair."""
    for user_id, store_hash in enumerate(APP_TOKENS, start=2001):
        bigcommerce.add_store(store_hash, APP_TOKENS[store_hash])
        install_store(settings, store_hash, access_token=APP_TOKENS[store_hash], user_id=user_id)
        save_settings(db, settings, store_hash, public_key=PAIRS[store_hash][0], secret_key=PAIRS[store_hash][1])
        refersion.add_keys(*PAIRS[store_hash])
    return settings


def post_paid(client, bigcommerce, orders: dict[str, int]) -> None:
    for store_hash, order_id in orders.items():
        add_order(bigcommerce, store_hash, order_id)
        assert post_webhook(client, status_updated(order_id, 11, store_hash=store_hash), token=hook_token_of(store_hash)).status_code == 200


def test_each_store_is_read_with_its_own_token_and_reported_with_its_own_key_pair(apps, client, worker, bigcommerce, refersion, db):
    post_paid(client, bigcommerce, {store_hash: 500 for store_hash in TOKENS})  # one order id in every store
    worker.run_until_idle()
    assert reports(refersion) == sorted(("500", PAIRS[store_hash][0]) for store_hash in TOKENS)
    for store_hash, token in TOKENS.items():
        assert tokens_sent(bigcommerce, store_hash) == {token}
    states = {row["store_hash"]: row["state"] for row in db.query("SELECT store_hash, state FROM deliveries")}
    assert states == dict.fromkeys(TOKENS, "done")


def test_dry_run_for_one_store_sends_nothing_for_it_only(apps, client, worker, bigcommerce, refersion, db):
    save_settings(db, apps, "appone", dry_run=True)
    post_paid(client, bigcommerce, {STORE_HASH: 101, "appone": 201, "apptwo": 301})
    worker.run_until_idle()
    assert reports(refersion) == [("101", REFERSION_PUBLIC), ("301", PAIRS["apptwo"][0])]
    states = {row["store_hash"]: row["state"] for row in db.query("SELECT store_hash, state FROM deliveries")}
    assert states == {STORE_HASH: "done", "appone": "dry_run", "apptwo": "done"}
    (story,) = history.list_orders(db, stores=["appone"])
    assert story["decision"] == "dry_run"


def test_excluded_coupons_of_one_store_apply_to_that_store_only(apps, client, worker, bigcommerce, refersion, db):
    save_settings(db, apps, "apptwo", excluded_coupons=["holiday5"])
    post_paid(client, bigcommerce, {STORE_HASH: 101, "appone": 201, "apptwo": 301})
    worker.run_until_idle()
    codes = {received.body["order_id"]: received.body.get("discount_code") for received in refersion.received}
    assert codes == {"101": "AFFILIATE10,HOLIDAY5", "201": "AFFILIATE10,HOLIDAY5", "301": "AFFILIATE10"}


@pytest.fixture
def api(make_settings):
    app = create_app(make_settings(server_admin_token=ADMIN_TOKEN, server_session_secret=SESSION_SECRET))
    app.config["TESTING"] = True
    return app.test_client()


def store_status(api, store_hash: str) -> dict:
    body = api.get("/api/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).get_json()
    return next(store for store in body["stores"] if store["store_hash"] == store_hash)


def test_a_token_bigcommerce_refuses_pauses_that_store_until_it_installs_again(
    apps, client, api, worker, clock, bigcommerce, refersion, db
):
    del bigcommerce.stores["appone"].tokens[APP_TOKENS["appone"]]  # revoked: BigCommerce answers 401
    post_paid(client, bigcommerce, {STORE_HASH: 101, "appone": 201, "apptwo": 301})
    worker.run_until_idle()
    assert reports(refersion) == [("101", REFERSION_PUBLIC), ("301", PAIRS["apptwo"][0])]
    shown = store_status(api, "appone")
    assert (shown["mode"], shown["bigcommerce"]["ok"]) == ("app", False)
    assert shown["bigcommerce"]["detail"].startswith("BigCommerce refused the store's API credentials")
    assert APP_TOKENS["appone"] not in shown["bigcommerce"]["detail"]
    assert store_status(api, "apptwo")["bigcommerce"]["ok"] is True
    refused = len(bigcommerce.recorded(r"^/stores/appone/"))
    clock.advance(RESUME_CHECK_SECONDS + 1)
    worker.run_until_idle()
    assert len(bigcommerce.recorded(r"^/stores/appone/")) == refused  # paused: not asked again with the same token

    post_paid(client, bigcommerce, {"apptwo": 302})  # the others go on meanwhile
    worker.run_until_idle()
    assert ("302", PAIRS["apptwo"][0]) in reports(refersion)

    bigcommerce.add_token("appone", "app-token-one-reinstalled-7e5d")
    install_store(apps, "appone", access_token="app-token-one-reinstalled-7e5d", user_id=2001)
    clock.advance(RESUME_CHECK_SECONDS + 1)
    worker.run_until_idle()
    assert ("201", PAIRS["appone"][0]) in reports(refersion)
    assert [order_id for order_id, _ in reports(refersion)].count("201") == 1
    assert store_status(api, "appone")["bigcommerce"]["ok"] is True
    assert tokens_sent(bigcommerce, "appone") == {APP_TOKENS["appone"], "app-token-one-reinstalled-7e5d"}


def test_an_uninstall_holds_the_stores_queued_reports_and_a_reinstall_sends_them_once(
    apps, client, worker, clock, bigcommerce, refersion, db
):
    post_paid(client, bigcommerce, {STORE_HASH: 101, "appone": 201, "apptwo": 301})
    while evaluate.handle_next(worker.ctx):  # every order evaluated, no report sent yet
        pass
    assert db.execute("SELECT count(*) FROM deliveries WHERE state = 'pending'").fetchone()[0] == 3
    with immediate(db):
        store_rows.uninstall(db, store_hash="apptwo", now=time.time())

    worker.run_until_idle()
    assert reports(refersion) == [("101", REFERSION_PUBLIC), ("201", PAIRS["appone"][0])]
    held = next(db.query("SELECT * FROM deliveries WHERE store_hash = 'apptwo'"))
    assert (held["state"], held["attempts"], held["last_status"]) == ("pending", 0, None)

    calls_before = len(bigcommerce.recorded(r"^/stores/apptwo/"))
    post_paid(client, bigcommerce, {"apptwo": 302, "appone": 202})  # webhooks after the uninstall
    clock.advance(60)
    worker.run_until_idle()
    ignored = next(db.query("SELECT * FROM events WHERE store_hash = 'apptwo' AND order_id = 302"))
    assert (ignored["state"], ignored["outcome"]) == ("ignored", "unknown_store")
    assert len(bigcommerce.recorded(r"^/stores/apptwo/")) == calls_before  # nothing asked for it
    assert reports(refersion) == [("101", REFERSION_PUBLIC), ("201", PAIRS["appone"][0]), ("202", PAIRS["appone"][0])]

    install_store(apps, "apptwo", access_token=APP_TOKENS["apptwo"], user_id=2002)
    worker.run_until_idle()
    assert [order_id for order_id, public in reports(refersion) if public == PAIRS["apptwo"][0]] == ["301"]  # at once; 302 was ignored
    clock.advance(3600)
    worker.run_until_idle()
    assert [order_id for order_id, public in reports(refersion) if public == PAIRS["apptwo"][0]] == ["301"]  # and only once
    assert next(db.query("SELECT state FROM deliveries WHERE store_hash = 'apptwo'"))["state"] == "done"


def test_a_store_with_no_key_pair_anywhere_is_paused_until_it_saves_one(make_settings, make_worker, clock, bigcommerce, refersion, db):
    settings = make_settings(
        bigcommerce_store_hash=None, bigcommerce_access_token=None, refersion_public_key=None, refersion_secret_key=None
    )
    for user_id, store_hash in enumerate(APP_TOKENS, start=2001):
        bigcommerce.add_store(store_hash, APP_TOKENS[store_hash])
        install_store(settings, store_hash, access_token=APP_TOKENS[store_hash], user_id=user_id)
        refersion.add_keys(*PAIRS[store_hash])
    save_settings(db, settings, "appone", public_key=PAIRS["appone"][0], secret_key=PAIRS["appone"][1])
    client = create_app(settings).test_client()
    worker = make_worker(settings)

    post_paid(client, bigcommerce, {"appone": 201, "apptwo": 301})
    worker.run_until_idle()
    assert reports(refersion) == [("201", PAIRS["appone"][0])]
    health = history.store_health(db, "apptwo")["refersion"]
    assert health == {"ok": False, "paused": True, "detail": NO_KEYS}
    assert history.store_health(db, "appone")["refersion"]["paused"] is False
    assert next(db.query("SELECT state, attempts FROM deliveries WHERE store_hash = 'apptwo'")) == {"state": "pending", "attempts": 0}

    save_settings(db, settings, "apptwo", public_key=PAIRS["apptwo"][0], secret_key=PAIRS["apptwo"][1])
    clock.advance(RESUME_CHECK_SECONDS + 1)
    worker.run_until_idle()
    assert reports(refersion) == [("201", PAIRS["appone"][0]), ("301", PAIRS["apptwo"][0])]
    assert history.store_health(db, "apptwo")["refersion"]["paused"] is False


def test_events_claimed_at_the_moment_of_an_uninstall_are_held_not_dropped(settings, worker, db, bigcommerce, refersion):
    """The worker claimed a store's events just before its uninstall landed: they wait for a re-install."""
    from bridge.storage import inbox
    from tests.conftest import install_store

    install_store(settings, "race01", access_token="race01-token-0123456789")
    bigcommerce.add_store("race01", "race01-token-0123456789")
    order_id = bigcommerce.add(load_fixture("manual_discount"), store_hash="race01")
    client = create_app(settings).test_client()
    assert post_webhook(client, status_updated(order_id, 11, store_hash="race01"), token=hook_token_of("race01")).status_code == 200
    claimed = inbox.claim_order_events(db, owner=worker.owner, now=time.time() + 1, lease=15.0)
    with immediate(db):
        store_rows.uninstall(db, store_hash="race01", now=time.time())
    evaluate.handle_claimed(worker.ctx, claimed)
    (event,) = db.query("SELECT state, outcome, last_error FROM events WHERE order_id = ?", [order_id])
    assert (event["state"], event["outcome"]) == ("pending", None) and "uninstalled" in event["last_error"]
    install_store(settings, "race01", access_token="race01-token-0123456789")
    worker.run_until_idle()
    assert refersion.attempts == [str(order_id)]
