"""``bridge demo`` as a real process: starts, signs in once, shows every outcome, stops cleanly."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import time
import tomllib
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from bridge.cli.main import cli
from bridge.core.payload import NO_CART_ID_NOTE
from tests.processes import BridgeProcess, free_port, wait_for

STATUS_LINE = re.compile(r"^Status page: (http://127\.0\.0\.1:(\d+)/\S+)$", re.MULTILINE)
SKIP_REASONS = {"free_order", "status_excluded", "payment_excluded", "gift_certificates_only", "channel_excluded"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    port = free_port()
    process = BridgeProcess(["demo", "--port", str(port)], {}, tmp_path_factory.mktemp("demo") / "demo.log")
    started = time.monotonic()
    try:
        wait_for(lambda: STATUS_LINE.search(process.output) or process.process.poll() is not None, timeout=10)
        process.started_in = time.monotonic() - started
        process.port = port
        yield process
    finally:
        process.stop(timeout=10)


@pytest.fixture
def browser(monkeypatch):
    """requests, keeping a Secure cookie on http://127.0.0.1 as browsers do (a secure context)."""
    monkeypatch.setattr(http.cookiejar.DefaultCookiePolicy, "return_ok_secure", lambda self, cookie, request: True)
    return requests.Session()


def _link(demo) -> str:
    found = STATUS_LINE.findall(demo.output)
    assert len(found) == 1, demo.output
    return found[0][0]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def test_it_starts_within_10_seconds_with_one_status_line_and_what_to_try_next(demo):
    assert demo.process.poll() is None, demo.output
    assert demo.started_in < 10
    link = _link(demo)
    assert link.startswith(f"http://127.0.0.1:{demo.port}/login/once/")
    out = demo.output
    assert f"send-test-webhook 120 --url http://127.0.0.1:{demo.port}/webhooks/bigcommerce" in out
    assert re.search(r"^  python -m bridge --config \S+ orders why 103$", out, re.MULTILINE)


def test_the_link_signs_in_once_and_the_status_page_shows_every_outcome(demo, browser):
    link, base = _link(demo), f"http://127.0.0.1:{demo.port}"
    page = browser.get(link, timeout=10)
    assert page.status_code == 200 and page.url == f"{base}/", page.text
    assert "#101" in page.text and "#109" in page.text
    assert requests.get(link, timeout=10).status_code == 403  # used: refused, in any browser
    assert requests.get(f"{base}/api/status", timeout=10).status_code == 401

    def settled() -> dict | None:
        status = browser.get(f"{base}/api/status", timeout=10).json()
        counts = status["counts"]
        expected = {"received": 10, "reported": 4, "skipped": 5, "waiting": 0, "retrying": 0, "dead": 1}
        return {key: counts[key] for key in expected} == expected and set(status["skipped_by_reason"]) == SKIP_REASONS

    wait_for(settled, timeout=20, interval=0.5)
    story = {n: browser.get(f"{base}/api/orders/{n}", timeout=10).json() for n in (101, 107, 108, 109, 110)}
    assert story[101]["decision"] == "reported"
    assert story[107]["decision"] == "reported"  # waiting for its payment, then reported
    assert [d["decision"] for d in story[107]["decisions"]] == ["waiting", "eligible"]
    assert story[108]["decision"] == "reported"  # a Refersion 503 first, then reported
    assert story[108]["deliveries"][0]["attempts"] == 1
    assert story[109]["decision"] == "dead" and story[109]["deliveries"][0]["last_status"] == 400
    assert story[110]["decision"] == "reported" and story[110]["note"] == NO_CART_ID_NOTE


def test_the_try_this_next_commands_work_against_the_demo(demo, tmp_path):
    outputs = []
    for number, line in enumerate(re.findall(r"^  python -m bridge (.+)$", demo.output, re.MULTILINE)):
        later = BridgeProcess(line.split(), {}, tmp_path / f"{number}.log")
        assert later.wait(timeout=40) == 0, later.output
        outputs.append(later.output)
    assert len(outputs) == 2
    assert "Order #120 of store abc123: REPORTED" in outputs[0]  # send-test-webhook --follow
    assert "Order #103 of store abc123: SKIPPED" in outputs[1]  # orders why


def test_no_secret_is_printed_and_sigterm_stops_everything(demo):
    config_path = Path(re.search(r"--config (\S+) orders why", demo.output).group(1))
    config = tomllib.loads(config_path.read_text())
    secret_values = [
        config["server"]["admin_token"],
        config["server"]["session_secret"],
        config["webhooks"]["secret"],
        config["bigcommerce"]["access_token"],
        config["refersion"]["public_key"],
        config["refersion"]["secret_key"],
    ]
    children = _children(demo.process.pid)
    started = time.monotonic()
    assert demo.stop(signal.SIGTERM, timeout=10) == 0, demo.output
    assert time.monotonic() - started < 5
    assert not any(value in demo.output for value in secret_values)
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]
    assert not config_path.parent.exists()  # the temporary database and settings are gone


@pytest.mark.parametrize("args", [["demo", "--config", "bridge.toml"], ["--config", "bridge.toml", "demo"]])
def test_demo_refuses_a_config_file(args):
    result = CliRunner().invoke(cli, args, prog_name="refersion-bridge")
    assert result.exit_code == 2
    assert result.output.startswith("refersion-bridge demo takes no config file")
    assert result.output.strip().endswith("To run with your store: refersion-bridge --config FILE serve")


def test_a_busy_port_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["demo", "--port", str(port)], env={"BRIDGE_CONFIG": "ignored.toml"})  # the environment is ignored
    assert result.exit_code == 2
    assert result.output.startswith(f"cannot listen on 127.0.0.1:{port}: the address is already in use")
