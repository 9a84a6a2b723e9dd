"""Every acknowledged webhook is on disk: ``kill -9`` of the whole bridge under a stream of webhooks.

The intake acknowledges a webhook only after the group commit that stored it (at
``synchronous=FULL``); were it to answer before, a kill in the middle of a batch would
lose events BigCommerce was told were received, and it would never send them again.
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.conftest import WEBHOOK_SECRET, status_updated
from tests.processes import Serve, wait_for

ROUNDS = 3
SENDERS = 8


def _stored_orders(path) -> set[int]:
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {row[0] for row in conn.execute("SELECT order_id FROM events")}


def test_every_webhook_acknowledged_before_a_kill_9_is_stored(spawn, tmp_path, environ):
    serve = Serve(spawn)
    acknowledged: set[int] = set()
    lock = threading.Lock()
    next_order = iter(range(1, 10**9))
    for _ in range(ROUNDS):
        serve.start()
        stop = threading.Event()

        def send(stop: threading.Event = stop) -> None:
            session = requests.Session()
            while not stop.is_set():
                with lock:
                    order_id = next(next_order)
                try:
                    answer = session.post(
                        f"{serve.base}/webhooks/bigcommerce",
                        json=status_updated(order_id, 11),
                        headers={"X-Bridge-Token": WEBHOOK_SECRET, "Connection": "close"},
                        timeout=5,
                    )
                except requests.RequestException:
                    continue  # killed mid-request: not acknowledged, so BigCommerce would send it again
                if answer.status_code == 200:
                    with lock:
                        acknowledged.add(order_id)

        before = len(acknowledged)
        with ThreadPoolExecutor(SENDERS) as pool:
            for _ in range(SENDERS):
                pool.submit(send)
            wait_for(lambda before=before: len(acknowledged) >= before + 150, timeout=60, interval=0.01)
            serve.kill_all()  # mid-stream: requests in flight, batches being committed
            stop.set()
    stored = _stored_orders(tmp_path / "bridge.sqlite3")
    assert len(acknowledged) >= ROUNDS * 150
    assert acknowledged - stored == set(), f"{len(acknowledged - stored)} acknowledged webhooks lost"
