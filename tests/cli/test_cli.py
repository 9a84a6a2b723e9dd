"""The ``bridge`` command: help, configuration errors, clean stops."""

import os
import re
import signal
import socket
import subprocess
import sys

import click
import pytest
import requests
from click.testing import CliRunner

from bridge.cli import cli
from tests.processes import free_port, wait_for


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert cli.commands[command].help
    assert cli.commands[command].help in " ".join(result.output.split())


def test_the_commands_of_this_version():
    assert sorted(cli.commands) == [
        "backfill", "check", "coupons", "demo", "hooks", "keys", "orders", "purge", "replay", "send-test-webhook", "serve", "web",
        "worker",
    ]  # fmt: skip


def run_bridge(args, env):
    clean = {key: value for key, value in os.environ.items() if not key.startswith("BRIDGE_")}
    return subprocess.run([sys.executable, "-m", "bridge", *args], env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ["serve", "web", "worker"])
def test_a_missing_key_stops_start_up_with_one_line_per_problem_and_no_traceback(command, tmp_path):
    result = run_bridge(
        [command],
        {
            "BRIDGE_DATABASE_PATH": str(tmp_path / "db.sqlite3"),
            "BRIDGE_REFERSION_PUBLIC_KEY": "pub_x",
            "BRIDGE_REFERSION_SECRET_KEY": "sec_x",
        },
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "config error: webhooks.secret is required (set it in the config file or BRIDGE_WEBHOOKS_SECRET)"
    ]
    assert "Traceback" not in result.stderr


def test_an_invalid_value_is_named(tmp_path):
    config = tmp_path / "bridge.toml"
    config.write_text(
        '[webhooks]\nsecret = "0123456789abcdef-secret"\n[refersion]\npublic_key = "p"\nsecret_key = "s"\n[server]\nport = "http"\n'
    )
    result = run_bridge(["--config", str(config), "worker"], {})
    assert result.returncode == 2
    assert result.stderr.strip() == "config error: server.port: Not a valid integer."


def test_secrets_in_an_invalid_config_are_not_echoed(tmp_path):
    result = run_bridge(
        ["worker"],
        {"BRIDGE_WEBHOOKS_SECRET": "tiny", "BRIDGE_REFERSION_PUBLIC_KEY": "p", "BRIDGE_REFERSION_SECRET_KEY": "sec_do_not_print"},
    )
    assert result.returncode == 2
    assert "tiny" not in result.stderr and "sec_do_not_print" not in result.stderr


def test_an_unusable_database_path_is_one_clear_line(tmp_path, environ):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_bridge(["worker"], {**environ, "BRIDGE_DATABASE_PATH": str(blocker / "db.sqlite3")})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"database error: cannot open {blocker / 'db.sqlite3'}")
    assert "Traceback" not in result.stderr


@pytest.fixture
def start_serve(spawn):
    def start():
        port = free_port()
        process = spawn(["serve", "--port", str(port)])
        wait_for(lambda: _healthy(port, process), timeout=30, interval=0.1)
        return process

    return start


def _healthy(port, process):
    assert process.process.poll() is None, process.output
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
    except requests.ConnectionError:
        return False


def test_serve_stops_cleanly_on_sigint(start_serve):
    process = start_serve()
    wait_for(lambda: re.search(r"Worker \S+ started", process.output), timeout=30)
    assert process.stop(signal.SIGINT) == 0, process.output
    assert re.search(r"Worker \S+ stopped", process.output), process.output
    assert "Shutting down: Master" in process.output


def test_serve_stops_everything_and_fails_when_one_half_dies(start_serve):
    process = start_serve()
    worker_pid = int(re.search(r"worker pid (\d+)", process.output).group(1))
    os.kill(worker_pid, signal.SIGKILL)
    assert process.wait(timeout=40) == 1
    assert "The worker process exited" in process.output
    assert "Shutting down: Master" in process.output  # gunicorn was stopped too


def _bad_port_config(tmp_path, name):
    config = tmp_path / name
    config.write_text(
        '[webhooks]\nsecret = "0123456789abcdef-secret"\n[refersion]\npublic_key = "p"\nsecret_key = "s"\n[server]\nport = "http"\n'
    )
    return str(config)


# Groups and commands that need more words.
FULL_COMMAND = {
    "backfill": ["backfill", "--since", "2026-11-01"],
    "coupons": ["coupons", "list"],
    "hooks": ["hooks", "list"],
    "keys": ["keys", "rotate"],
    "orders": ["orders", "list"],
    "replay": ["replay", "--dead"],
    "send-test-webhook": ["send-test-webhook", "1"],
}


@pytest.mark.parametrize("command", sorted(set(cli.commands) - {"demo"}))  # demo refuses --config: tests/cli/test_demo.py
@pytest.mark.parametrize("where", ["after the command", "after the command, over the group's", "after the command, over BRIDGE_CONFIG"])
def test_config_is_accepted_after_every_command_name(command, where, tmp_path):
    bad = _bad_port_config(tmp_path, "bad.toml")
    missing = str(tmp_path / "missing.toml")  # would fail differently if it were read
    args, env = [*FULL_COMMAND.get(command, [command]), "--config", bad], {}
    if "group" in where:
        args = ["--config", missing, *args]
    if "BRIDGE_CONFIG" in where:
        env = {"BRIDGE_CONFIG": missing}
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}
    result = CliRunner().invoke(cli, args, env={**clean, **env})
    assert result.exit_code == 2, result.output
    assert result.output.strip() == "config error: server.port: Not a valid integer."


def test_bridge_config_alone_names_the_file(tmp_path):
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}
    result = CliRunner().invoke(cli, ["worker"], env={**clean, "BRIDGE_CONFIG": _bad_port_config(tmp_path, "bad.toml")})
    assert result.exit_code == 2
    assert result.output.strip() == "config error: server.port: Not a valid integer."


def test_commands_added_later_accept_config_after_their_name_too():
    from bridge.cli.common import BridgeGroup

    group, seen = BridgeGroup(), []
    sub = BridgeGroup("hooks")
    group.add_command(sub)
    sub.add_command(click.Command("list", callback=click.pass_context(lambda ctx: seen.append(ctx.obj))))
    result = CliRunner().invoke(group, ["hooks", "list", "--config", "late.toml"], obj="early.toml")
    assert result.exit_code == 0, result.output
    assert seen == ["late.toml"]


@pytest.mark.parametrize("command", ["serve", "web"])
def test_a_port_in_use_is_one_clear_line_and_nothing_starts(command, environ):
    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        port = other_program.getsockname()[1]
        result = run_bridge([command, "--port", str(port)], {**environ, "BRIDGE_SERVER_HOST": "127.0.0.1"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"cannot listen on 127.0.0.1:{port}: the address is already in use; "
        "stop the other program or choose another port with --port or server.port"
    ]
    assert "Worker" not in result.stderr and "serving" not in result.stderr


def test_an_address_of_another_machine_is_one_clear_line():
    from bridge.serving import listen_problem

    assert listen_problem("192.0.2.1", 8000) == (  # TEST-NET-1: no interface here has it
        "cannot listen on 192.0.2.1:8000: no interface of this machine has that address; choose another with --host or server.host"
    )
    assert listen_problem("127.0.0.1", free_port()) is None


def test_the_worker_process_loads_neither_flask_nor_gunicorn():
    """``bridge worker`` imports the command group and ``bridge.serving``: the web's stack
    would cost it about 13 MiB of its memory budget (issue 11) for nothing."""
    probe = "import sys, bridge.cli.main, bridge.serving; print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert "bridge" in loaded and "requests" in loaded  # the probe saw the worker's own stack
    assert not {"flask", "gunicorn", "jinja2", "werkzeug", "flask_limiter", "prometheus_client"} & set(loaded)
