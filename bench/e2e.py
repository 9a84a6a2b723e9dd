"""Part 2, end to end (webhook sent → paid-order body received by the fake Refersion), and part 4,
API economy (BigCommerce calls per reported, waiting and already-reported order).

The sandboxes run in this process on 127.0.0.1; the bridge runs as ``bridge web`` and
``bridge worker``, as the Procfile runs them, so the worker's CPU can be read on its own.
"""

from __future__ import annotations

import collections
import re
import sqlite3
import time
from pathlib import Path

import requests

from bench.common import (
    BC_TOKEN,
    REFERSION_PUBLIC,
    REFERSION_SECRET,
    STORE_HASH,
    WEBHOOK_SECRET,
    bridge,
    bridge_env,
    cpu_seconds,
    free_port,
    listening,
    percentile,
    wait_until,
)
from bridge.sandbox.bigcommerce import SandboxBigCommerce
from bridge.sandbox.refersion import SandboxRefersion

RATE = 20.0  # webhooks per second in the steady stream
IDLE_SECONDS = 10.0
HEADERS = ["figure", "value"]


def _webhook(order_id: int, n: int, status: int = 11) -> dict:
    return {
        "scope": "store/order/statusUpdated",
        "store_id": "1025646",
        "data": {"type": "order", "id": order_id, "status": {"previous_status_id": 1, "new_status_id": status}},
        "hash": f"{order_id:020d}{n:020d}",
        "created_at": 1_700_000_000 + n,
        "producer": f"stores/{STORE_HASH}",
    }


def _open_events(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT count(*) FROM events WHERE state IN ('pending', 'working')").fetchone()[0]


def run(workdir: Path, *, orders: int, idle_seconds: float = IDLE_SECONDS) -> dict:
    # A plan quota far above the stream: this part measures latency, not the throttle (part 3 does).
    bigcommerce = SandboxBigCommerce(STORE_HASH, BC_TOKEN, quota=1_000_000).start()
    refersion = SandboxRefersion(REFERSION_PUBLIC, REFERSION_SECRET).start()
    port = free_port()
    env = bridge_env(workdir, bc_url=bigcommerce.url, refersion_url=refersion.url, port=port)
    web = bridge(["web", "--port", str(port)], env, workdir / "web.log")
    worker = bridge(["worker"], env, workdir / "worker.log")
    session = requests.Session()
    url = f"http://127.0.0.1:{port}/webhooks/bigcommerce"
    headers = {"X-Bridge-Token": WEBHOOK_SECRET}
    try:
        wait_until(lambda: listening(port), 60, what="bridge web listening", log=web.log_path)
        time.sleep(1.0)  # the worker's start-up (imports, migrations) is not what is measured
        for order_id in range(1, orders + 1):
            bigcommerce.add_order(order_id, lines=[{"sku": f"SKU-{order_id}", "name": "Bench product", "qty": 2, "price": "19.99"}])
        bigcommerce.reset_records()
        sent: dict[str, float] = {}
        started = time.monotonic()
        for n, order_id in enumerate(range(1, orders + 1)):
            time.sleep(max(0.0, started + n / RATE - time.monotonic()))
            sent[str(order_id)] = time.time()
            answer = session.post(url, json=_webhook(order_id, n), headers=headers, timeout=10)
            answer.raise_for_status()
        wait_until(lambda: len(refersion.received) >= orders, 120, what="every report received", log=workdir / "worker.log")
        arrived = {r.body["order_id"]: r.at for r in refersion.received}
        latencies_ms = [(arrived[order] - sent[order]) * 1000 for order in sent]
        reported_calls = len(bigcommerce.requests)
        calls_by_path = collections.Counter(re.sub(r"/[0-9]+", "/{id}", r.path) for r in bigcommerce.requests)

        # Idle: nothing arrives; the worker's CPU share over the window.
        time.sleep(2.0)
        before, at = cpu_seconds(worker.pid), time.monotonic()
        time.sleep(idle_seconds)
        idle_share = (cpu_seconds(worker.pid) - before) / (time.monotonic() - at)

        # API economy: already-reported orders get another webhook; then orders not eligible yet.
        economy_orders = min(50, orders)
        bigcommerce.reset_records()
        for n, order_id in enumerate(range(1, economy_orders + 1)):
            session.post(url, json=_webhook(order_id, 10**6 + n, status=2), headers=headers, timeout=10).raise_for_status()
        wait_until(lambda: _open_events(workdir / "bridge.sqlite3") == 0, 60, what="already-reported events settled")
        already_calls = len(bigcommerce.requests)
        waiting_ids = range(orders + 1, orders + economy_orders + 1)
        for order_id in waiting_ids:
            bigcommerce.add_order(order_id, status_id=1, payment_status="pending")
        bigcommerce.reset_records()
        for n, order_id in enumerate(waiting_ids):
            session.post(url, json=_webhook(order_id, 2 * 10**6 + n, status=1), headers=headers, timeout=10).raise_for_status()
        wait_until(lambda: _open_events(workdir / "bridge.sqlite3") == 0, 60, what="waiting orders evaluated")
        waiting_calls = len(bigcommerce.requests)
        rss = {"bridge web": web.peak_rss(), "bridge worker": worker.peak_rss()}
    finally:
        web.stop()
        worker.stop()
        bigcommerce.stop()
        refersion.stop()
    rows = [
        ["orders in the stream", f"{orders} at {RATE:.0f}/s"],
        ["webhook → Refersion p50 (ms)", f"{percentile(latencies_ms, 0.5):.1f}"],
        ["webhook → Refersion p99 (ms)", f"{percentile(latencies_ms, 0.99):.1f}"],
        ["webhook → Refersion max (ms)", f"{max(latencies_ms):.1f}"],
        [f"idle worker CPU over {idle_seconds:.0f} s", f"{idle_share * 100:.2f}%"],
        ["BigCommerce calls per reported order", f"{reported_calls / orders:.2f}"],
        ["BigCommerce calls per already-reported order", f"{already_calls / economy_orders:.2f}"],
        ["BigCommerce calls per waiting order", f"{waiting_calls / economy_orders:.2f}"],
    ]
    rows += [[f"  of which {path}", f"{count / orders:.2f}"] for path, count in calls_by_path.most_common()]
    return {"rows": rows, "latencies_ms": latencies_ms, "idle_cpu_share": idle_share, "rss": rss}
