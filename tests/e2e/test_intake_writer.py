"""``bridge web`` as a real process: one intake writer (the process itself) commits the webhooks
of both gunicorn workers, passes signals on to gunicorn, and never outlives it or is outlived."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import WEBHOOK_SECRET, status_updated
from tests.processes import alive, children, descendants, free_port, kill_pid, wait_for


def _start(spawn, tmp_path):
    port = free_port()
    process = spawn(["web", "--port", str(port)], {"WEB_CONCURRENCY": "2"})

    def ready() -> bool:
        assert process.process.poll() is None, process.output
        try:
            answered = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code in (200, 503)
        except requests.ConnectionError:
            return False
        masters = children(process.process.pid)
        return answered and len(masters) == 1 and len(children(next(iter(masters)))) == 2

    wait_for(ready, timeout=30, interval=0.1)
    return port, process


def _post(port: int, order_id: int) -> int:
    return requests.post(
        f"http://127.0.0.1:{port}/webhooks/bigcommerce",
        data=json.dumps(status_updated(order_id, 11)),
        headers={"X-Bridge-Token": WEBHOOK_SECRET, "Content-Type": "application/json", "Connection": "close"},
        timeout=5,
    ).status_code


def _has_open(pid: int, path) -> bool:
    """Whether process ``pid`` holds ``path`` open."""
    folder = f"/proc/{pid}/fd"
    for fd in os.listdir(folder):
        try:
            if os.readlink(f"{folder}/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def test_one_writer_commits_both_web_processes_webhooks_and_stops_with_gunicorn(spawn, tmp_path):
    port, process = _start(spawn, tmp_path)
    writer = process.process.pid
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda order_id: _post(port, order_id), range(1, 81)))
    assert statuses == [200] * 80
    with sqlite3.connect(tmp_path / "bridge.sqlite3") as conn:
        assert conn.execute("SELECT count(DISTINCT order_id) FROM events").fetchone()[0] == 80
    assert f"One intake writer (pid {writer})" in process.output
    # The writer holds the database open; no web process made a writer of its own (it would
    # keep its connection open for seconds after its last webhook).
    web_processes = descendants(writer)[1:]
    assert _has_open(writer, tmp_path / "bridge.sqlite3")
    assert not any(_has_open(pid, tmp_path / "bridge.sqlite3") for pid in web_processes)

    assert process.stop(signal.SIGTERM, timeout=40) == 0  # passed on to gunicorn, which stops gracefully
    wait_for(lambda: not any(alive(pid) for pid in web_processes), timeout=10)


def test_a_killed_writer_takes_the_web_server_down_with_it(spawn, tmp_path):
    port, process = _start(spawn, tmp_path)
    assert _post(port, 1) == 200
    web_processes = descendants(process.process.pid)[1:]
    kill_pid(process.process.pid)
    process.wait(timeout=10)
    # gunicorn's master is told by the kernel (PR_SET_PDEATHSIG) and stops its workers: nothing
    # is left holding the port for a restarted bridge.
    wait_for(lambda: not any(alive(pid) for pid in web_processes), timeout=40, interval=0.2)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_bridge_serve_stopped_while_gunicorn_starts_exits_0(spawn, tmp_path):
    # A SIGTERM passed on before gunicorn handles signals ends it: bridge web then ends by the same
    # signal, as it did before it had a writer, and bridge serve counts that as a stop.
    process = spawn(["serve", "--port", str(free_port())])

    def gunicorn_forked() -> bool:
        webs = [pid for pid, command in children(process.process.pid).items() if " web " in f" {command} "]
        return bool(webs) and bool(children(webs[0]))

    wait_for(gunicorn_forked, timeout=30, interval=0.005)
    assert process.stop(signal.SIGTERM, timeout=40) == 0, process.output


def test_gunicorns_binary_upgrade_is_refused_and_the_bridge_serves_on(spawn, tmp_path):
    port, process = _start(spawn, tmp_path)
    before = descendants(process.process.pid)
    os.kill(process.process.pid, signal.SIGUSR2)  # would start a second bridge web beside this one
    wait_for(lambda: "SIGUSR2 (gunicorn's binary upgrade) is not supported" in process.output, timeout=10)
    assert _post(port, 1) == 200
    assert descendants(process.process.pid) == before
    assert process.stop(signal.SIGTERM, timeout=40) == 0
