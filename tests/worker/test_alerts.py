"""Alerts to a Slack-compatible webhook (the sandbox's receiver, real HTTP on 127.0.0.1): one
message when an incident starts and one when it clears, through the outbox's retry rules, even
while the store's reports are paused, and never with a secret in them."""

from __future__ import annotations

import json
import logging

import pytest

from bridge.clients.bigcommerce import BigCommerceClient
from bridge.logs import RedactSecrets
from bridge.sandbox.slack import SandboxSlack
from bridge.storage import hook_checks, incidents, outbox, pauses
from bridge.storage.db import immediate
from bridge.worker import alerts, chores, hook_health
from tests.conftest import (
    BC_TOKEN,
    REFERSION_SECRET,
    STORE_HASH,
    WEBHOOK_SECRET,
    post_webhook,
    queue_delivery,
    status_updated,
)
from tests.fakes import load_fixture
from tests.worker.test_hook_health import register_bridge_hooks

ROTATED_SECRET = "sec_rotated_in_refersion_42"
STATUS_UPDATED = "store/order/statusUpdated"


@pytest.fixture(scope="module")
def slack_server():
    server = SandboxSlack().start()
    yield server
    server.stop()


@pytest.fixture
def slack(slack_server) -> SandboxSlack:
    slack_server.reset()
    yield slack_server
    slack_server.reset()


@pytest.fixture
def alerting(make_settings, slack):
    """Settings with alerts on; keyword overrides as for ``make_settings``."""

    def make(**overrides):
        return make_settings(alerts_webhook_url=slack.webhook_url, **overrides)

    return make


def tick(worker, clock, seconds: float = alerts.ALERT_CHECK_SECONDS) -> None:
    clock.advance(seconds)
    worker.run_until_idle()


def alert_rows(db) -> list[dict]:
    return list(db.query("SELECT * FROM deliveries WHERE kind = 'alert' ORDER BY id"))


def pause_by_refused_keys(client, worker, bigcommerce, refersion) -> int:
    """Refersion stops accepting the configured pair; an eligible order's report pauses the store."""
    refersion.secret_key = ROTATED_SECRET
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    return order_id


def test_a_pause_is_told_once_and_its_end_once_while_the_reports_wait(
    alerting, make_worker, client, bigcommerce, refersion, slack, db, clock
):
    worker = make_worker(alerting())
    order_id = pause_by_refused_keys(client, worker, bigcommerce, refersion)
    for _ in range(5):
        tick(worker, clock)
    assert len(slack.messages) == 1
    message = slack.messages[0]
    assert message.startswith(
        f"Reports to Refersion for store {STORE_HASH} are paused: Refersion refused the API keys (HTTP 401). "
        "Enter the right key pair in the bridge's settings"
    )
    assert "Paused since" in message and message.endswith("UTC.")
    # The alert went out while the store's report still waits: a Refersion pause holds no alert.
    assert outbox.find(db, outbox.paid_key(STORE_HASH, order_id))["state"] == "pending"
    assert [row["state"] for row in alert_rows(db)] == ["done"]

    fixed = make_worker(alerting(refersion_secret_key=ROTATED_SECRET))
    fixed.run_until_idle()
    for _ in range(3):
        tick(fixed, clock)
    assert refersion.order_ids == [str(order_id)]
    assert len(slack.messages) == 2
    assert slack.messages[1].startswith(f"Reports to Refersion for store {STORE_HASH} flow again")
    assert [(row["kind"], row["cleared_at"] is not None) for row in incidents.all_incidents(db)] == [(alerts.REFERSION_PAUSED, True)]


def test_a_refused_bigcommerce_token_is_told_with_what_to_do(alerting, make_worker, client, bigcommerce, slack, clock):
    worker = make_worker(alerting())
    bigcommerce.access_token = "rotated-token-000000"
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    tick(worker, clock)
    tick(worker, clock)
    assert len(slack.messages) == 1
    assert slack.messages[0].startswith(
        f"The bridge cannot read the orders of store {STORE_HASH}: BigCommerce refused the store's API token (HTTP 401). "
        "No order is reported until this is fixed. Create a new store-level API account"
    )


def test_a_receiver_failing_with_500_gets_the_alert_once_after_a_retry(
    alerting, make_worker, client, bigcommerce, refersion, slack, db, clock
):
    slack.fail_next(500)
    worker = make_worker(alerting())
    pause_by_refused_keys(client, worker, bigcommerce, refersion)
    tick(worker, clock)
    assert slack.messages == [] and alert_rows(db)[0]["state"] == "pending"
    tick(worker, clock, 5)  # the first step of the retry schedule
    assert len(slack.messages) == 1 and len(slack.requests) == 2
    row = alert_rows(db)[0]
    assert (row["state"], row["attempts"], row["last_status"]) == ("done", 1, 200)
    tick(worker, clock, 3600)
    assert len(slack.messages) == 1


@pytest.mark.parametrize("status", [400, 403, 404])
def test_a_receiver_refusing_the_alert_makes_it_dead_and_shown_on_healthz(
    alerting, make_worker, client, bigcommerce, refersion, slack, db, clock, status
):
    slack.fail_next(status)
    worker = make_worker(alerting())
    pause_by_refused_keys(client, worker, bigcommerce, refersion)
    tick(worker, clock)
    row = alert_rows(db)[0]
    assert (row["state"], row["attempts"], row["last_status"]) == ("dead", 1, status)
    # Not a reason to pause anything: only the Refersion pause is there.
    assert [(pause["service"]) for pause in pauses.pauses(db)] == ["refersion"]
    assert client.get("/healthz").get_json()["dead"] == {"events": 0, "deliveries": 1}
    tick(worker, clock, 3600)
    assert len(slack.requests) == 1  # a dead alert is no new incident


def test_dead_deliveries_are_told_once_and_cleared_when_replayed(alerting, make_worker, client, bigcommerce, refersion, slack, db, clock):
    worker = make_worker(alerting())
    refersion.reject(400, "Missing required field cart_id")
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    for _ in range(3):
        tick(worker, clock)
    assert slack.messages == [
        f"Store {STORE_HASH}: 1 report(s) to Refersion failed for good. Open the bridge's status page to see why, "
        "fix the cause, then retry them (the retry button, or `bridge replay --dead`)."
    ]
    with immediate(db):
        outbox.replay(db, store_hash=STORE_HASH, order_id=order_id, now=clock.now)
    worker.run_until_idle()
    tick(worker, clock)
    assert refersion.order_ids == [str(order_id)]
    assert len(slack.messages) == 2 and slack.messages[1].startswith(f"Store {STORE_HASH} has no failed reports or orders left")


def test_a_deactivated_hook_is_told_once_and_its_reactivation_once(alerting, make_worker, bigcommerce, slack, clock):
    hooks = register_bridge_hooks(bigcommerce)
    worker = make_worker(alerting())
    tick(worker, clock, hook_health.HOOK_CHECK_SECONDS)
    bigcommerce.deactivate_hook(hooks[STATUS_UPDATED])
    tick(worker, clock, hook_health.HOOK_CHECK_SECONDS)
    tick(worker, clock)
    assert len(slack.messages) == 1
    assert slack.messages[0].startswith(
        f"BigCommerce webhooks of store {STORE_HASH} are not working: {STATUS_UPDATED} deactivated by BigCommerce. "
        "New orders reach the bridge only through its periodic reconcile passes, late. Run `bridge hooks register`"
    )
    client = BigCommerceClient(api_url=bigcommerce.url, store_hash=STORE_HASH, access_token=BC_TOKEN, timeout=2)
    client.update_hook(hooks[STATUS_UPDATED], is_active=True)  # what `bridge hooks reactivate` does
    client.close()
    tick(worker, clock, hook_health.HOOK_CHECK_SECONDS)
    tick(worker, clock)
    assert len(slack.messages) == 2 and slack.messages[1].startswith(f"BigCommerce webhooks of store {STORE_HASH} work again")


def test_a_hook_the_bridge_repaired_between_two_looks_is_told_once(alerting, make_worker, bigcommerce, slack, clock):
    hooks = register_bridge_hooks(bigcommerce)
    worker = make_worker(alerting(server_public_url="https://bridge.example.com"))
    tick(worker, clock, hook_health.HOOK_CHECK_SECONDS)
    bigcommerce.deactivate_hook(hooks[STATUS_UPDATED])
    tick(worker, clock, hook_health.HOOK_CHECK_SECONDS)
    for _ in range(3):
        tick(worker, clock)
    assert len(slack.messages) == 1
    assert slack.messages[0].startswith(
        f"BigCommerce webhooks of store {STORE_HASH} had stopped: {STATUS_UPDATED} deactivated by BigCommerce. The bridge repaired them at"
    )
    assert slack.messages[0].endswith("Nothing to do.")


def test_each_repair_of_a_hook_is_told_even_with_no_webhook_between(alerting, make_worker, bigcommerce, slack, clock, db):
    """No webhook arrives between two deactivations (BigCommerce cannot reach the bridge): both
    repairs date the outage from the same last webhook, and the second must still be told."""
    hooks = register_bridge_hooks(bigcommerce)
    worker = make_worker(alerting(server_public_url="https://bridge.example.com"))
    add_event(db, "store/order/statusUpdated", clock.now - 100)  # the last webhook that ever arrives
    tick(worker, clock)  # schedules the chores
    for _ in range(2):
        bigcommerce.deactivate_hook(hooks[STATUS_UPDATED])
        tick(worker, clock, hook_health.HOOK_CHECK_SECONDS)
        for _ in range(3):
            tick(worker, clock)
    assert len(slack.messages) == 2 and all("had stopped" in message for message in slack.messages)


def test_with_reconcile_off_the_hooks_message_says_to_run_a_backfill(alerting, make_worker, bigcommerce, slack, clock):
    hooks = register_bridge_hooks(bigcommerce)
    worker = make_worker(alerting(server_public_url="https://bridge.example.com", worker_reconcile_interval="0"))
    tick(worker, clock)  # schedules the chores
    tick(worker, clock, hook_health.HOOK_CHECK_SECONDS)
    bigcommerce.deactivate_hook(hooks[STATUS_UPDATED])
    tick(worker, clock, hook_health.HOOK_CHECK_SECONDS)
    tick(worker, clock)
    (message,) = slack.messages
    assert "Reconcile is off (worker.reconcile_interval = 0): run `bridge backfill --since " in message
    assert "a reconcile pass recovers" not in message


def add_event(db, scope: str, received_at: float) -> None:
    """An event as the intake (or the reconcile pass, for its own scope) stores it, already handled."""
    with immediate(db):
        db.execute(
            """
            INSERT INTO events (dedupe_key, store_hash, scope, hash, order_id, body, received_at, state, due_at)
            VALUES (?, ?, ?, 'h', 1, '{}', ?, 'done', ?)
            """,
            [f"{scope}:{received_at}", STORE_HASH, scope, received_at, received_at],
        )


def test_quiet_webhooks_while_reconcile_finds_orders_are_told_and_cleared_by_the_next_webhook(alerting, make_worker, slack, db, clock):
    worker = make_worker(alerting(alerts_quiet_hours="2"))
    add_event(db, STATUS_UPDATED, clock.now)
    tick(worker, clock, 3 * 3600)
    assert slack.messages == []  # quiet, but reconcile found nothing: a slow day, not a fault
    add_event(db, "bridge/reconcile", clock.now)
    tick(worker, clock)
    assert len(slack.messages) == 1
    assert slack.messages[0].startswith(f"No webhook from BigCommerce has reached the bridge for store {STORE_HASH} since ")
    assert "(over 2 hours), yet its reconcile passes keep finding orders no webhook brought" in slack.messages[0]
    tick(worker, clock)
    add_event(db, STATUS_UPDATED, clock.now)
    tick(worker, clock)
    assert len(slack.messages) == 2 and slack.messages[1].startswith("Webhooks from BigCommerce reach the bridge again")


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], None),
        ([("bridge/reconcile", 0)], 0.0),  # reconcile finds orders, no webhook ever came
        ([(STATUS_UPDATED, 0), ("bridge/reconcile", 100)], None),  # the last webhook is recent
        ([(STATUS_UPDATED, -10_000), ("bridge/reconcile", -20_000)], None),  # reconcile found nothing since
        ([(STATUS_UPDATED, -10_000), ("bridge/reconcile", -5_000)], -10_000),
        ([(STATUS_UPDATED, -7_200), ("bridge/reconcile", -5_000)], None),  # exactly quiet_hours: not over it
        ([(STATUS_UPDATED, -10_000), ("bridge/backfill", -1), ("bridge/reconcile", -5_000)], -10_000),  # a backfill is no webhook
    ],
)
def test_the_quiet_rule(db, events, expected):
    now = 1_000_000.0
    for scope, offset in events:
        add_event(db, scope, now + offset)
    found = incidents.quiet_since(
        db, STORE_HASH, now=now, quiet_seconds=7_200, reconcile_scope="bridge/reconcile", recovered_scopes=hook_checks.RECOVERED_SCOPES
    )
    assert found == (expected if expected in (None, 0.0) else now + expected)


def test_no_message_holds_a_secret_and_the_url_is_never_logged(
    alerting, make_worker, client, bigcommerce, refersion, slack, db, clock, caplog
):
    caplog.set_level(logging.DEBUG, logger="bridge")  # urllib3 stays at WARNING, as configure_logging sets it
    settings = alerting()
    assert slack.webhook_url in settings.secrets()  # redacted from every log line of a configured process
    worker = make_worker(settings)
    slack.fail_next(500, body=f"echo {slack.webhook_url} {slack.token}")
    refersion.answer_next(401, body=f'{{"error": "bad keys {REFERSION_SECRET}"}}')
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    post_webhook(client, status_updated(order_id, 11))
    worker.run_until_idle()
    tick(worker, clock)
    slack.stop()  # the receiver is gone: a connection error names the URL, which must not be kept
    try:
        tick(worker, clock, 5)
    finally:
        slack.start(port=0)
    rows = alert_rows(db)
    assert rows[0]["last_error"] == "could not reach the alert webhook (ConnectionError)"
    stored = json.dumps([dict(row) for row in db.query("SELECT * FROM deliveries")])
    for secret in (slack.token, REFERSION_SECRET, BC_TOKEN, WEBHOOK_SECRET):
        assert secret not in caplog.text
        assert secret not in stored
        assert secret not in client.get("/healthz").get_data(as_text=True)
    for message in (json.loads(row["payload"])["text"] for row in rows):
        assert not any(secret in message for secret in settings.secrets())


def test_a_message_is_scrubbed_of_every_secret_whatever_a_reason_echoed():
    assert alerts.scrub(f"refused {REFERSION_SECRET} and {BC_TOKEN}", [REFERSION_SECRET, BC_TOKEN]) == "refused [redacted] and [redacted]"
    line = logging.LogRecord("x", logging.INFO, "x", 1, "posting to %s", ("https://hooks.slack.com/services/T/B/tok",), None)
    RedactSecrets(["https://hooks.slack.com/services/T/B/tok"]).filter(line)
    assert line.getMessage() == "posting to [redacted]"


def test_without_a_webhook_url_there_are_no_alerts(make_worker, client, bigcommerce, refersion, db, clock, settings):
    assert settings.alerts.webhook_url is None
    assert "alerts" not in [chore.name for chore in chores.enabled(settings)]
    worker = make_worker()
    pause_by_refused_keys(client, worker, bigcommerce, refersion)
    tick(worker, clock, 3600)
    assert incidents.all_incidents(db) == [] and alert_rows(db) == []


def test_alerts_of_a_store_paused_for_both_remotes_still_go_out(alerting, make_worker, slack, db, clock):
    worker = make_worker(alerting())
    queue_delivery(db, 7, clock.now)
    store = worker.ctx.stores.get(db, STORE_HASH)
    with immediate(db):
        for service in ("refersion", "bigcommerce"):
            reason = f"{service} refused the credentials (401); it echoed {REFERSION_SECRET} and {BC_TOKEN}."
            pauses.pause(db, store_hash=STORE_HASH, service=service, fingerprint=store.fingerprint(service), reason=reason, now=clock.now)
        pauses.hold(db, store_hash=STORE_HASH, service="bigcommerce", until=clock.now + 86400, reason="429")
    tick(worker, clock)
    tick(worker, clock)
    assert len(slack.messages) == 2  # both pauses told
    assert not any(secret in message for message in slack.messages for secret in (REFERSION_SECRET, BC_TOKEN))
    assert "[redacted]" in slack.messages[0] or "[redacted]" in slack.messages[1]
    assert outbox.find(db, outbox.paid_key(STORE_HASH, 7))["state"] == "pending"


def test_a_store_no_webhook_ever_reached_is_told_so(alerting, make_worker, slack, db, clock):
    worker = make_worker(alerting())
    worker.run_until_idle()
    add_event(db, "bridge/reconcile", clock.now)
    tick(worker, clock)
    assert slack.messages[0].startswith(f"No webhook from BigCommerce has ever reached the bridge for store {STORE_HASH} (over 6 hours)")
