"""``bridge send-test-webhook`` against a real bridge listening on a port, and the ``refersion-bridge`` name."""

import hashlib
import json
import os
import threading
import time
from importlib.metadata import entry_points

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from bridge.cli import cli, send_webhook
from bridge.web.app import create_app
from tests.conftest import REFERSION_SECRET, STORE_HASH, WEBHOOK_SECRET
from tests.fakes import load_fixture
from tests.processes import free_port


class Served:
    """The bridge's web app on a real port of 127.0.0.1, in a thread."""

    def __init__(self, app):
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/webhooks/bigcommerce"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def bridge(make_settings):
    served = Served(create_app(make_settings()))
    yield served
    served.stop()


@pytest.fixture
def run(environ):
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}

    def invoke(*args, prog_name="bridge", **extra_environ):
        return CliRunner().invoke(cli, list(args), env={**clean, **environ, **extra_environ}, prog_name=prog_name)

    return invoke


@pytest.fixture
def running_worker(make_worker):
    """A worker on the real clock, working in a thread as ``bridge worker`` does."""
    worker = make_worker(clock=time.time)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    yield worker
    stop.set()
    thread.join(timeout=10)


def last_line(result) -> str:
    """The command's own last word on stderr (the in-process bridge logs there too, before it answers)."""
    return result.stderr.splitlines()[-1]


def events(db):
    return list(db.query("SELECT scope, store_hash, order_id, state, body FROM events ORDER BY id"))


def test_a_status_update_is_stored_by_the_running_bridge(run, bridge, db):
    result = run("send-test-webhook", "101", "--url", bridge.url)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Sent store/order/statusUpdated for order #101 to {bridge.url}: 200, stored.\n"
    [event] = events(db)
    assert (event["scope"], event["store_hash"], event["order_id"]) == ("store/order/statusUpdated", STORE_HASH, 101)
    assert event["state"] == "pending"
    body = json.loads(event["body"])
    assert body["data"] == {"type": "order", "id": 101, "status": {"previous_status_id": 0, "new_status_id": 11}}
    assert body["hash"] == hashlib.sha1(json.dumps(body["data"], separators=(",", ":")).encode()).hexdigest()
    assert body["producer"] == f"stores/{STORE_HASH}"
    assert abs(body["created_at"] - time.time()) < 60
    assert WEBHOOK_SECRET not in result.output


def test_status_and_store_are_the_ones_asked_for(run, bridge, db):
    result = run("send-test-webhook", "7", "--status", "2", "--store", "other9", "--url", bridge.url)
    assert result.exit_code == 0, result.output
    [event] = events(db)
    body = json.loads(event["body"])
    assert body["data"]["status"]["new_status_id"] == 2
    assert (event["store_hash"], event["state"]) == ("other9", "ignored")  # the bridge has no credentials for it


@pytest.mark.parametrize(
    ("scope", "data", "state"),
    [
        ("store/order/created", {"type": "order", "id": 55}, "pending"),
        ("store/order/updated", {"type": "order", "id": 55}, "pending"),
        ("store/order/refund/created", {"type": "order", "id": 55, "refund": {"refund_id": 1}}, "pending"),
        ("store/cart/converted", {"type": "cart", "id": "c0ffee-cart", "orderId": 55}, "done"),
    ],
)
def test_every_scope_has_the_shape_the_bridge_accepts(run, bridge, db, scope, data, state):
    extra = ["--cart-id", "c0ffee-cart"] if scope == "store/cart/converted" else []
    result = run("send-test-webhook", "55", "--scope", scope, *extra, "--url", bridge.url)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Sent {scope} for order #55 to {bridge.url}: 200, stored."
    [event] = events(db)
    assert (event["scope"], event["order_id"], event["state"]) == (scope, 55, state)
    assert json.loads(event["body"])["data"] == data


def test_a_cart_id_defaults_to_a_random_uuid(run, bridge, db):
    assert run("send-test-webhook", "56", "--scope", "store/cart/converted", "--url", bridge.url).exit_code == 0
    cart_id = json.loads(events(db)[0]["body"])["data"]["id"]
    assert len(cart_id) == 36 and cart_id.count("-") == 4


def test_options_of_another_scope_are_refused(run):
    result = run("send-test-webhook", "5", "--scope", "store/order/created", "--status", "11")
    assert result.exit_code == 2
    assert "--status only goes with --scope store/order/statusUpdated" in result.output


def test_a_wrong_secret_is_refused_and_said_so(run, bridge, db):
    other_secret = "another-secret-0123456789-abcdef"
    result = run("send-test-webhook", "101", "--url", bridge.url, BRIDGE_WEBHOOKS_SECRET=other_secret)
    assert result.exit_code == 1
    assert last_line(result) == (
        f"Sent store/order/statusUpdated for order #101 to {bridge.url}: 401, "
        "the bridge refused the token: webhooks.secret differs from the running bridge's."
    )
    assert other_secret not in result.output and WEBHOOK_SECRET not in result.output
    assert events(db) == []


def test_the_bridges_own_error_is_shown(run, bridge):
    result = run("send-test-webhook", "101", "--url", bridge.url.replace("/webhooks/bigcommerce", "/nowhere"))
    assert result.exit_code == 1
    assert last_line(result).startswith("Sent store/order/statusUpdated for order #101 to http://127.0.0.1:")
    assert last_line(result).endswith(": 404, refused: nothing at that path (the bridge takes webhooks at /webhooks/bigcommerce)")


def test_nothing_listening_names_the_command_to_start_it(run):
    url = f"http://127.0.0.1:{free_port()}/webhooks/bigcommerce"
    result = run("send-test-webhook", "101", "--url", url)
    assert result.exit_code == 1
    assert last_line(result) == f"Nothing listens at {url}; start it with `bridge serve`."
    assert WEBHOOK_SECRET not in result.output


def test_messages_use_the_name_the_user_invoked(run):
    url = f"http://127.0.0.1:{free_port()}/webhooks/bigcommerce"
    result = run("send-test-webhook", "101", "--url", url, prog_name="refersion-bridge")
    assert result.exit_code == 1
    assert "start it with `refersion-bridge serve`." in result.output
    assert "Usage: refersion-bridge send-test-webhook" in run("send-test-webhook", "--help", prog_name="refersion-bridge").output


def test_refersion_bridge_is_a_console_script_of_the_same_command():
    scripts = {entry.name: entry.value for entry in entry_points(group="console_scripts") if entry.value.startswith("bridge.")}
    assert scripts["refersion-bridge"] == scripts["bridge"] == "bridge.cli:main"


def test_the_default_url_is_this_configs_server(run, environ, make_settings):
    assert send_webhook.default_url(make_settings()) == "http://127.0.0.1:8000/webhooks/bigcommerce"
    assert (
        send_webhook.default_url(make_settings(server_host="0.0.0.0", server_port="9001")) == "http://127.0.0.1:9001/webhooks/bigcommerce"
    )
    assert send_webhook.default_url(make_settings(server_host="::")) == "http://[::1]:8000/webhooks/bigcommerce"
    public = make_settings(server_public_url="https://bridge.example.com/")
    assert send_webhook.default_url(public) == "https://bridge.example.com/webhooks/bigcommerce"


def test_without_url_it_posts_to_this_configs_server(run, make_settings, db):
    served = Served(create_app(make_settings()))
    try:
        result = run("send-test-webhook", "9", BRIDGE_SERVER_PORT=str(served.server.server_port))
    finally:
        served.stop()
    assert result.exit_code == 0, result.output
    assert f"to http://127.0.0.1:{served.server.server_port}/webhooks/bigcommerce: 200, stored." in result.output


def test_no_store_is_a_clear_error(run):
    result = run("send-test-webhook", "9", BRIDGE_BIGCOMMERCE_STORE_HASH=None, BRIDGE_BIGCOMMERCE_ACCESS_TOKEN=None)
    assert result.exit_code == 2
    assert "No store to send as: set bigcommerce.store_hash in the config, or pass --store HASH." in result.output


def test_follow_prints_the_story_once_the_worker_decided(run, bridge, running_worker, bigcommerce, refersion):
    order_id = bigcommerce.add(load_fixture("manual_discount"))
    result = run("send-test-webhook", str(order_id), "--url", bridge.url, "--follow")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"Sent store/order/statusUpdated for order #{order_id} to {bridge.url}: 200, stored."
    assert lines[1] == f"Order #{order_id} of store {STORE_HASH}: REPORTED"
    assert "Events received:" in result.stdout and "store/order/statusUpdated" in result.stdout
    assert refersion.order_ids == [str(order_id)]
    for secret in (WEBHOOK_SECRET, REFERSION_SECRET):
        assert secret not in result.output


def test_follow_without_a_worker_times_out_and_says_how_to_look_later(run, bridge, monkeypatch):
    monkeypatch.setattr(send_webhook, "FOLLOW_SECONDS", 1.0)
    result = run("send-test-webhook", "101", "--url", bridge.url, "--follow", prog_name="refersion-bridge")
    assert result.exit_code == 1
    assert last_line(result) == ("No decision after 1 s: is the worker running? Look later with `refersion-bridge orders why 101`.")


def test_a_refusal_shows_the_bridges_json_error(run, bridge, db):
    too_big = str(2**63)  # more than SQLite's INTEGER holds: the bridge answers 400
    result = run("send-test-webhook", too_big, "--url", bridge.url)
    assert result.exit_code == 1
    assert last_line(result).startswith(
        f"Sent store/order/statusUpdated for order #{too_big} to {bridge.url}: 400, refused: The body is not a BigCommerce webhook: data.id"
    )
    assert events(db) == []
