"""An idle worker wakes when another connection commits, not a poll interval later."""

from __future__ import annotations

import threading
import time

from bridge.worker.loop import WAKE_CHECK_SECONDS


def _waited(worker, stop: threading.Event, timeout: float, during=None) -> float:
    started = time.monotonic()
    if during is not None:
        threading.Timer(0.1, during).start()
    worker.wait_for_work(stop, timeout)
    return time.monotonic() - started


def test_a_commit_by_another_connection_wakes_the_idle_worker_within_milliseconds(worker, db):
    took = _waited(worker, threading.Event(), 5.0, during=lambda: db.execute("CREATE TABLE a_commit (id INTEGER)"))
    assert 0.1 <= took < 0.1 + 10 * WAKE_CHECK_SECONDS + 0.2


def test_without_a_commit_the_worker_waits_out_its_timeout(worker):
    took = _waited(worker, threading.Event(), 0.3)
    assert 0.3 <= took < 0.6


def test_a_stop_request_ends_the_wait_at_once(worker):
    stop = threading.Event()
    took = _waited(worker, stop, 5.0, during=stop.set)
    assert took < 0.5
