"""The hook health chore against the sandbox BigCommerce: a deactivated or missing hook is seen on
``/healthz``, ``/api/status`` and the status page; with ``server.public_url`` set it is repaired
and a reconcile pass is brought forward for the time it was down; without it nothing changes."""

from __future__ import annotations

import time

import pytest

from bridge.clients.bigcommerce import BigCommerceClient
from bridge.core.hooks import HEADER, destination_for, wanted_scopes
from bridge.storage import chores as chore_rows
from bridge.storage import hook_checks, pauses
from bridge.storage.db import immediate
from bridge.storage.history import iso
from bridge.storage.stores import fingerprint
from bridge.web.app import create_app
from bridge.worker import hook_health
from tests.conftest import BC_TOKEN, STORE_HASH, WEBHOOK_SECRET, post_webhook, status_updated

PUBLIC_URL = "https://bridge.example.com"
DESTINATION = destination_for(PUBLIC_URL)
ADMIN_TOKEN = "adm-hooks-0123456789abcdef"
SESSION_SECRET = "ses-hooks-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STATUS_UPDATED = "store/order/statusUpdated"


@pytest.fixture(autouse=True)
def only_this_chore(monkeypatch):
    """The hook_health chore alone: the others (due on the same clock) would spend the sandbox's quota and move its rows."""
    from bridge.worker import chores
    from bridge.worker import hook_health as under_test

    monkeypatch.setattr(chores, "CHORES", [under_test.CHORE])


@pytest.fixture
def web(make_settings):
    app = create_app(make_settings(server_admin_token=ADMIN_TOKEN, server_session_secret=SESSION_SECRET))
    app.config["TESTING"] = True
    return app.test_client()


def register_bridge_hooks(bigcommerce) -> dict[str, int]:
    """The bridge's hooks registered on the sandbox store, as `bridge hooks register` does; scope -> hook id."""
    client = BigCommerceClient(api_url=bigcommerce.url, store_hash=STORE_HASH, access_token=BC_TOKEN, timeout=2)
    try:
        client.register_hooks(wanted_scopes(), DESTINATION, WEBHOOK_SECRET)
    finally:
        client.close()
    bigcommerce.reset_records()
    return {hook["scope"]: hook["id"] for hook in bigcommerce.hooks()}


@pytest.fixture
def registered(bigcommerce) -> dict[str, int]:
    return register_bridge_hooks(bigcommerce)


def check_hooks(worker, clock) -> None:
    """Let one hook check run (it first runs one interval after it is scheduled)."""
    worker.run_until_idle()
    clock.advance(hook_health.HOOK_CHECK_SECONDS)
    worker.run_until_idle()


def sign_in(web) -> None:
    assert web.post("/login", data={"token": ADMIN_TOKEN}).status_code in (302, 303)


def hook_writes(bigcommerce) -> list:
    return [call for call in bigcommerce.recorded("/v3/hooks") if call.method != "GET"]


def test_before_the_first_check_the_hooks_are_unknown(web, worker):
    worker.run_until_idle()
    hooks = web.get("/api/status", headers=BEARER).get_json()["stores"][0]["hooks"]
    assert (hooks["registered"], hooks["active"], hooks["missing"], hooks["detail"]) == (None, None, [], "Not checked yet.")
    assert web.get("/healthz").get_json()["status"] == "ok"


def test_healthy_hooks_are_all_active(web, worker, clock, registered, bigcommerce):
    check_hooks(worker, clock)
    hooks = web.get("/api/status", headers=BEARER).get_json()["stores"][0]["hooks"]
    assert (hooks["registered"], hooks["active"], hooks["missing"]) == (True, True, [])
    assert hooks["detail"].startswith(f"All {len(wanted_scopes())} active")
    assert web.get("/healthz").get_json()["status"] == "ok"
    assert hook_writes(bigcommerce) == []


def test_without_public_url_a_deactivated_hook_is_reported_and_nothing_changes_at_bigcommerce(web, worker, clock, registered, bigcommerce):
    check_hooks(worker, clock)
    bigcommerce.deactivate_hook(registered[STATUS_UPDATED])
    bigcommerce.reset_records()
    clock.advance(hook_health.HOOK_CHECK_SECONDS)
    worker.run_until_idle()

    assert hook_writes(bigcommerce) == [] and len(bigcommerce.recorded("/v3/hooks", method="GET")) == 1
    assert not next(hook for hook in bigcommerce.hooks() if hook["scope"] == STATUS_UPDATED)["is_active"]
    health = web.get("/healthz").get_json()
    assert health["status"] == "degraded"
    assert (
        f"store {STORE_HASH} webhooks: {STATUS_UPDATED} deactivated by BigCommerce "
        "(server.public_url is not set, so the bridge cannot repair them)"
    ) in health["problems"]
    assert health["hooks"] == [{"store_hash": STORE_HASH, "problems": {STATUS_UPDATED: ["inactive"]}}]
    hooks = web.get("/api/status", headers=BEARER).get_json()["stores"][0]["hooks"]
    assert f"Webhooks may have been missed since {iso(hook_checks.find(worker.db, STORE_HASH)['healthy_at'])}." in hooks["detail"]
    assert (hooks["registered"], hooks["active"], hooks["missing"], hooks["inactive"]) == (True, False, [], [STATUS_UPDATED])
    sign_in(web)
    page = web.get("/").get_data(as_text=True)
    assert "Not delivering" in page and f"1 of {len(wanted_scopes())} not working: {STATUS_UPDATED} deactivated by BigCommerce" in page
    assert chore_rows.find(worker.db, name=hook_health.RECONCILE, store_hash=STORE_HASH) is None


def test_without_public_url_a_missing_hook_is_named(web, worker, clock, registered, bigcommerce):
    client = BigCommerceClient(api_url=bigcommerce.url, store_hash=STORE_HASH, access_token=BC_TOKEN, timeout=2)
    client.delete_hook(registered["store/cart/converted"])
    client.close()
    check_hooks(worker, clock)
    hooks = web.get("/api/status", headers=BEARER).get_json()["stores"][0]["hooks"]
    assert (hooks["registered"], hooks["active"], hooks["missing"]) == (False, False, ["store/cart/converted"])
    sign_in(web)
    page = web.get("/").get_data(as_text=True)
    assert "1 missing" in page and "store/cart/converted missing" in page
    assert "store/cart/converted missing" in " ".join(web.get("/healthz").get_json()["problems"])


def test_with_public_url_a_deactivated_hook_is_reactivated_and_a_reconcile_covers_the_outage(
    make_settings, make_worker, web, clock, registered, bigcommerce, client
):
    worker = make_worker(make_settings(server_public_url=PUBLIC_URL))
    post_webhook(client, status_updated(999, 11))  # the store's last webhook, stamped with the real time
    webhook_at = worker.db.execute("SELECT received_at FROM events").fetchone()[0]
    with immediate(worker.db):  # an order the bridge recovered itself later: no webhook
        worker.db.execute(
            "INSERT INTO events (dedupe_key, store_hash, scope, hash, body, received_at, state, due_at) "
            "VALUES ('r', ?, 'bridge/backfill', 'h', '{}', ?, 'done', 0)",
            [STORE_HASH, webhook_at + 1],
        )
    check_hooks(worker, clock)
    healthy_at = hook_checks.find(worker.db, STORE_HASH)["healthy_at"]
    assert healthy_at == pytest.approx(clock.now) and webhook_at < healthy_at

    bigcommerce.deactivate_hook(registered[STATUS_UPDATED])
    clock.advance(hook_health.HOOK_CHECK_SECONDS)
    worker.run_until_idle()

    hook = next(hook for hook in bigcommerce.hooks() if hook["scope"] == STATUS_UPDATED)
    assert hook["is_active"] and hook["destination"] == DESTINATION and hook["headers"] == {HEADER: WEBHOOK_SECRET}
    assert len(bigcommerce.hooks()) == len(registered)  # reactivated, not duplicated
    reconcile = chore_rows.find(worker.db, name=hook_health.RECONCILE, store_hash=STORE_HASH)
    assert reconcile["due_at"] == pytest.approx(clock.now)
    assert reconcile["state"] == {"since": webhook_at}  # the earlier of the last webhook and the last healthy check
    assert web.get("/healthz").get_json()["status"] == "ok"
    hooks = web.get("/api/status", headers=BEARER).get_json()["stores"][0]["hooks"]
    assert (hooks["registered"], hooks["active"], hooks["missing"]) == (True, True, [])
    assert f"Last repair: {STATUS_UPDATED} deactivated by BigCommerce, fixed by the bridge at" in hooks["detail"]
    sign_in(web)
    assert "fixed by the bridge at" in web.get("/").get_data(as_text=True)


def test_with_public_url_a_missing_hook_is_recreated(make_settings, make_worker, clock, registered, bigcommerce):
    client = BigCommerceClient(api_url=bigcommerce.url, store_hash=STORE_HASH, access_token=BC_TOKEN, timeout=2)
    client.delete_hook(registered[STATUS_UPDATED])
    client.close()
    worker = make_worker(make_settings(server_public_url=PUBLIC_URL))
    check_hooks(worker, clock)
    assert {hook["scope"] for hook in bigcommerce.hooks() if hook["is_active"]} == set(registered)
    check = hook_checks.find(worker.db, STORE_HASH)
    assert check["problems"] == {} and check["repaired"] == {STATUS_UPDATED: ["missing"]}
    # No check ever saw it healthy and no webhook ever came: the outage is taken to be as long as BigCommerce retries.
    assert check["repaired_since"] == pytest.approx(clock.now - hook_health.UNKNOWN_OUTAGE_SECONDS)


def test_a_reconcile_already_asked_for_an_earlier_time_keeps_it(make_settings, make_worker, clock, registered, bigcommerce, db):
    worker = make_worker(make_settings(server_public_url=PUBLIC_URL))
    worker.run_until_idle()
    with immediate(db):
        chore_rows.bring_forward(db, name=hook_health.RECONCILE, store_hash=STORE_HASH, due_at=clock.now + 10_000, state={"since": 5.0})
    bigcommerce.deactivate_hook(registered[STATUS_UPDATED])
    clock.advance(hook_health.HOOK_CHECK_SECONDS)
    worker.run_until_idle()
    assert chore_rows.find(db, name=hook_health.RECONCILE, store_hash=STORE_HASH)["state"] == {"since": 5.0}


def test_a_store_whose_token_is_refused_is_not_checked(make_worker, clock, registered, bigcommerce, db):
    with immediate(db):
        pauses.pause(db, store_hash=STORE_HASH, service="bigcommerce", fingerprint=fingerprint(BC_TOKEN), reason="refused", now=time.time())
    worker = make_worker()
    bigcommerce.reset_records()
    check_hooks(worker, clock)
    assert bigcommerce.recorded("/v3/hooks") == [] and hook_checks.find(db, STORE_HASH) is None


def test_a_public_url_bigcommerce_cannot_send_to_is_reported_not_used(make_settings, make_worker, web, clock, registered, bigcommerce):
    worker = make_worker(make_settings(server_public_url="http://bridge.example.com"))
    bigcommerce.deactivate_hook(registered[STATUS_UPDATED])
    check_hooks(worker, clock)
    assert hook_writes(bigcommerce) == []
    problems = " ".join(web.get("/healthz").get_json()["problems"])
    assert "server.public_url must be https on port 443" in problems
