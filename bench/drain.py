"""Part 3, backlog drain: many stores' eligible orders waiting at once, against a slow BigCommerce
that enforces each store's quota.

The webhooks arrive while the worker is stopped and Refersion is down (an outage of both
halves downstream of intake); then the worker starts and Refersion is back. The fake
BigCommerce answers every call after ``LATENCY`` seconds, as production does, and enforces
``QUOTA`` requests per ``WINDOW_MS`` per store: BigCommerce's 150 per 30 s with the window
shortened (the same quota in less time), so a run takes minutes. Reported: orders drained
and time to drain (or, when the run is cut at ``max_seconds``, the rate and the projected
time), each store's share of its quota used, and the 429s BigCommerce answered.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench.common import (
    REFERSION_PUBLIC,
    REFERSION_SECRET,
    WEBHOOK_SECRET,
    bridge,
    bridge_env,
    free_port,
    listening,
    wait_until,
)
from bridge.config import load_settings
from bridge.core.hooks import hook_token
from bridge.sandbox.bigcommerce import SandboxBigCommerce
from bridge.sandbox.refersion import SandboxRefersion
from bridge.storage.db import connect, immediate
from bridge.storage.stores import StoreRegistry

LATENCY = 0.25
QUOTA = 150
WINDOW_MS = 10_000  # BigCommerce's is 30,000: three times shorter, so the same quota drains three times faster
HEADERS = ["store", "orders", "reported", "BigCommerce calls", "quota share used", "429s"]


def _store_hashes(count: int) -> list[str]:
    return [f"drain{n:02d}" for n in range(count)]


def _install(env: dict[str, str], hashes: list[str], bigcommerce: SandboxBigCommerce) -> None:
    settings = load_settings(None, environ=env)
    database = connect(settings.database.path)
    try:
        with immediate(database):
            for store_hash in hashes:
                token = f"drain-token-{store_hash}-0123456789"
                bigcommerce.add_store(store_hash, token, quota=QUOTA, window_ms=WINDOW_MS)
                user = {"id": 1, "email": f"owner@{store_hash}.test"}
                StoreRegistry(settings).install(
                    database, store_hash=store_hash, access_token=token, scopes=["store_v2_orders_read_only"],
                    user=user, owner=user, now=time.time(),
                )  # fmt: skip
    finally:
        database.close()


def _reported(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT count(*) FROM deliveries WHERE kind = 'paid' AND state = 'done'").fetchone()[0]


def run(workdir: Path, *, quick: bool, max_seconds: float | None = None) -> dict:
    stores, per_store = (10, 100) if quick else (10, 1000)
    max_seconds = max_seconds or (90 if quick else 600)
    hashes = _store_hashes(stores)
    bigcommerce = SandboxBigCommerce(None, require_https_destinations=False, latency=LATENCY).start()
    refersion = SandboxRefersion(REFERSION_PUBLIC, REFERSION_SECRET).start()
    port = free_port()
    env = bridge_env(
        workdir, bc_url=bigcommerce.url, refersion_url=refersion.url, port=port,
        BRIDGE_BIGCOMMERCE_CLIENT_ID="bench-client-id", BRIDGE_BIGCOMMERCE_CLIENT_SECRET="bench-client-secret-0123456789abcdef0123",
        BRIDGE_SERVER_PUBLIC_URL="https://bridge.example",
    )  # fmt: skip
    for key in ("BRIDGE_BIGCOMMERCE_STORE_HASH", "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN"):
        env.pop(key)
    web = bridge(["web", "--port", str(port)], env, workdir / "web.log")
    worker = None
    try:
        wait_until(lambda: listening(port), 60, what="bridge web listening", log=web.log_path)
        _install(env, hashes, bigcommerce)
        for store_hash in hashes:
            for order_id in range(1, per_store + 1):
                bigcommerce.add_order(order_id, store_hash=store_hash)
        refersion.fail_next(503, times=10**9)
        url = f"http://127.0.0.1:{port}/webhooks/bigcommerce"
        jobs = [(h, o) for o in range(1, per_store + 1) for h in hashes]
        local = threading.local()

        def post(job: tuple[str, int]) -> None:
            store_hash, order_id = job
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            body = {
                "scope": "store/order/statusUpdated", "store_id": "1", "producer": f"stores/{store_hash}",
                "data": {"type": "order", "id": order_id, "status": {"previous_status_id": 1, "new_status_id": 11}},
                "hash": f"{store_hash}-{order_id}", "created_at": 1_700_000_000 + order_id,
            }  # fmt: skip
            headers = {"X-Bridge-Token": hook_token(WEBHOOK_SECRET, store_hash, app=True)}
            session.post(url, json=body, headers=headers, timeout=30).raise_for_status()

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(post, jobs))
        refersion.clear_failures()
        bigcommerce.reset_records()
        worker = bridge(["worker"], env, workdir / "worker.log")
        started = time.time()
        total = stores * per_store
        db_path = workdir / "bridge.sqlite3"
        while _reported(db_path) < total and time.time() - started < max_seconds:
            time.sleep(1.0)
        elapsed = time.time() - started
        reported = _reported(db_path)
        finished = reported >= total
        rss = {"bridge web": web.peak_rss(), "bridge worker": worker.peak_rss()}
    finally:
        if worker is not None:
            worker.stop()
        web.stop()
        bigcommerce.stop()
        refersion.stop()
    with sqlite3.connect(db_path) as conn:
        per = dict(conn.execute("SELECT store_hash, count(*) FROM deliveries WHERE kind = 'paid' AND state = 'done' GROUP BY store_hash"))
    drained = [r for r in bigcommerce.requests if r.at <= started + elapsed]
    calls = collections.Counter(r.path.split("/")[2] for r in drained)
    refused = collections.Counter(r.path.split("/")[2] for r in bigcommerce.requests if r.status == 429)
    # Each store's share of the quota it was allowed while it had a backlog: from its first call
    # to its last (or to the end of a cut run), in whole and partial windows.
    spans = {h: [r.at for r in drained if r.path.split("/")[2] == h] for h in hashes}

    def share(h: str) -> float:
        times = spans[h]
        if not times:
            return 0.0
        end = started + elapsed if not finished else max(times)
        return calls[h] / (QUOTA * max(end - min(times), WINDOW_MS / 1000) / (WINDOW_MS / 1000))

    rows = [[h, str(per_store), str(per.get(h, 0)), str(calls[h]), f"{share(h):.0%}", str(refused[h])] for h in hashes]
    shares = [share(h) for h in hashes]
    rate = reported / elapsed if elapsed else 0.0
    cut = f" (cut at {max_seconds:.0f} s; at {rate:.1f} orders/s the whole backlog would take {total / rate:,.0f} s)" if rate else ""
    summary = (
        f"{reported:,} of {total:,} orders reported in {elapsed:.0f} s"
        + ("" if finished else cut)
        + f"; quota share used per store: min {min(shares):.0%}, max {max(shares):.0%}; 429s: {sum(refused.values())}."
        + f" BigCommerce: {LATENCY * 1000:.0f} ms per call, {QUOTA} requests per {WINDOW_MS / 1000:.0f} s per store."
    )
    return {"rows": rows, "summary": summary, "elapsed": elapsed, "reported": reported, "total": total, "rss": rss}
