"""Part 1, ingest: distinct valid webhooks at concurrency 16 against the bridge's web process and,
in the same run, against bare gunicorn apps with the same worker class and counts (the ratios'
baseline), and one with gunicorn's own gthread worker for comparison."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from bench.common import STORE_HASH, WEBHOOK_SECRET, Proc, bridge, bridge_env, free_port, listening, percentile, run_wrk, wait_until

SCRIPT = Path(__file__).with_name("webhooks.lua")
WORKERS = os.environ.get("WEB_CONCURRENCY", "2")
THREADS = os.environ.get("WEB_THREADS", "64")


BRIDGE_WORKER_CLASS = "bridge.web.server.BridgeThreadWorker"


def _gunicorn(app: str, port: int, workdir: Path, name: str, worker_class: str) -> Proc:
    command = [
        sys.executable, "-m", "gunicorn", "-k", worker_class, "-w", WORKERS, "--threads", THREADS,
        "--keep-alive", "5", "-b", f"127.0.0.1:{port}", app,
    ]  # fmt: skip
    env = {"BENCH_SQLITE_PATH": str(workdir / f"{name}.sqlite3"), "PYTHONPATH": str(Path(__file__).parent.parent)}
    return Proc(command, env, workdir / f"{name}.log")


def _stored(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def run(workdir: Path, *, seconds: float, connections: int = 16) -> dict:
    """Each target under keep-alive off, then on, after a warm-up run of its own; returns the
    figures and peak RSS per process."""
    warmup = max(1.0, min(3.0, seconds / 3))
    results: dict = {"rows": [], "rss": {}}
    targets = [  # the first is the baseline of every ratio
        ("bare gunicorn app (parse JSON)", "bench.bare_app:bare", BRIDGE_WORKER_CLASS),
        ("bare app, gunicorn's own gthread worker", "bench.bare_app:bare", "gthread"),
        ("bare app + 1 SQLite insert, FULL", "bench.bare_app:bare_sqlite", BRIDGE_WORKER_CLASS),
        ("bridge (bridge web)", None, None),
    ]
    baseline: dict[bool, float] = {}
    first_order = 1
    for index, (label, app, worker_class) in enumerate(targets):
        port = free_port()
        name = f"{index}-{(app or 'bridge').rsplit(':', 1)[-1]}"
        if app:
            proc = _gunicorn(app, port, workdir, name, worker_class)
        else:
            env = bridge_env(workdir, bc_url="http://127.0.0.1:9", refersion_url="http://127.0.0.1:9", port=port)
            proc = bridge(["web", "--port", str(port)], env, workdir / "bridge-web.log")
        try:
            wait_until(lambda port=port: listening(port), 30, what=f"{label} listening")
            # Not counted: every target first serves a short run, so its threads, connections and
            # files (the WAL grows to its working size once) are in place, as in a server that
            # has been up for a while.
            run_wrk(f"http://127.0.0.1:{port}/webhooks/bigcommerce", SCRIPT, seconds=warmup, connections=connections,
                    keepalive=False, env={"BENCH_STORE_HASH": STORE_HASH, "BENCH_TOKEN": WEBHOOK_SECRET,
                                          "BENCH_FIRST_ORDER": str(first_order)})  # fmt: skip
            first_order += 10**9
            for keepalive in (False, True):
                env = {"BENCH_STORE_HASH": STORE_HASH, "BENCH_TOKEN": WEBHOOK_SECRET, "BENCH_FIRST_ORDER": str(first_order)}
                first_order += 10**9
                figures = run_wrk(f"http://127.0.0.1:{port}/webhooks/bigcommerce", SCRIPT, seconds=seconds,
                                  connections=connections, keepalive=keepalive, env=env)  # fmt: skip
                if index == 0:
                    baseline[keepalive] = figures.requests_per_second
                ratio = figures.requests_per_second / baseline[keepalive]
                results["rows"].append([label, "on" if keepalive else "off", *figures.row, f"{ratio:.2f}"])
            results["rss"][label] = proc.peak_rss()
        finally:
            proc.stop()
        if app is None:
            results["bridge_events_stored"] = _stored(workdir / "bridge.sqlite3", "events")
    return results


HEADERS = ["target", "keep-alive", "req/s", "p50 ms", "p99 ms", "errors", "× bare"]


def alternate(workdir: Path, *, rounds: int, seconds: float, connections: int = 16) -> dict:
    """The baseline and the bridge up together, measured in turns (keep-alive off), the order
    swapped every round: on a machine whose speed drifts (a shared host), each round's ratio
    compares runs seconds apart, where the table above compares runs a minute apart."""
    bare_port, bridge_port = free_port(), free_port()
    bare = _gunicorn("bench.bare_app:bare", bare_port, workdir, "alternate-bare", BRIDGE_WORKER_CLASS)
    (workdir / "alternate").mkdir()
    env = bridge_env(workdir / "alternate", bc_url="http://127.0.0.1:9", refersion_url="http://127.0.0.1:9", port=bridge_port)
    web = bridge(["web", "--port", str(bridge_port)], env, workdir / "alternate-bridge.log")
    first_order = 1

    def measure(port: int, duration: float):
        nonlocal first_order
        env = {"BENCH_STORE_HASH": STORE_HASH, "BENCH_TOKEN": WEBHOOK_SECRET, "BENCH_FIRST_ORDER": str(first_order)}
        first_order += 10**9
        url = f"http://127.0.0.1:{port}/webhooks/bigcommerce"
        return run_wrk(url, SCRIPT, seconds=duration, connections=connections, keepalive=False, env=env)

    rows, ratios = [], []
    try:
        wait_until(lambda: listening(bare_port) and listening(bridge_port), 30, what="both targets listening")
        for port in (bare_port, bridge_port):
            measure(port, max(1.0, min(3.0, seconds)))  # warm-up, not counted
        for index in range(rounds):
            order = (bare_port, bridge_port) if index % 2 == 0 else (bridge_port, bare_port)
            found = {port: measure(port, seconds) for port in order}
            ratio = found[bridge_port].requests_per_second / found[bare_port].requests_per_second
            ratios.append(ratio)
            rows.append([str(index + 1), f"{found[bare_port].requests_per_second:,.0f}", f"{found[bridge_port].requests_per_second:,.0f}",
                         f"{found[bridge_port].p99_ms:.1f}", str(found[bare_port].errors + found[bridge_port].errors),
                         f"{ratio:.2f}"])  # fmt: skip
    finally:
        bare.stop()
        web.stop()
    return {"rows": rows, "median_ratio": percentile(ratios, 0.5)}


ALTERNATE_HEADERS = ["round", "bare req/s", "bridge req/s", "bridge p99 ms", "errors", "× bare"]
