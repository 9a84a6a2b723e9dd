"""An idle worker wakes when the intake notifies it or another connection commits, not a poll
interval later."""

from __future__ import annotations

import threading
import time

from bridge.storage.wake import Notifier
from bridge.worker.loop import DATA_VERSION_CHECK_SECONDS
from tests.conftest import post_webhook, status_updated


def _waited(worker, stop: threading.Event, timeout: float, during=None) -> float:
    started = time.monotonic()
    timer = threading.Timer(0.1, during or (lambda: None))
    timer.start()
    worker.wait_for_work(stop, timeout)
    took = time.monotonic() - started
    timer.join()
    return took


def test_a_commit_by_another_connection_wakes_the_idle_worker_within_milliseconds(worker, db):
    took = _waited(worker, threading.Event(), 5.0, during=lambda: db.execute("CREATE TABLE a_commit (id INTEGER)"))
    assert 0.1 <= took < 0.1 + DATA_VERSION_CHECK_SECONDS + 0.2


def test_without_a_commit_the_worker_waits_out_its_timeout(worker):
    took = _waited(worker, threading.Event(), 0.3)
    assert 0.3 <= took < 0.6


def test_a_stop_request_ends_the_wait_at_once(worker):
    stop = threading.Event()
    took = _waited(worker, stop, 5.0, during=stop.set)
    assert took < 0.5


def test_the_intakes_wake_up_ends_the_wait_at_once(worker, settings):
    assert worker.wake.listening
    notifier = Notifier(settings.database.path)
    took = _waited(worker, threading.Event(), 5.0, during=notifier.notify)
    notifier.close()
    assert took < 2  # the pipe, not the timeout (nothing was committed for data_version to show)


def test_a_webhook_stored_by_the_web_wakes_the_idle_worker(worker, client):
    answers = []
    took = _waited(worker, threading.Event(), 5.0, during=lambda: answers.append(post_webhook(client, status_updated(101, 11)).status_code))
    assert answers == [200]
    assert took < 2
