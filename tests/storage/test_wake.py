"""The wake-up pipe beside the database: a writer's notify wakes a listener at once, and
every failure of it (no listener, a restarted one, no pipe) is silent and costs nothing."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from bridge.storage.wake import Listener, Notifier, pipe_path


@pytest.fixture
def database(tmp_path):
    return tmp_path / "bridge.sqlite3"


@pytest.fixture
def listener(database):
    made = Listener(database)
    yield made
    made.close()


def test_a_notify_wakes_the_listener_and_is_read_once(database, listener):
    assert listener.listening
    assert not listener.wait(0.05)
    notifier = Notifier(database)
    assert notifier.notify() and notifier.notify()
    assert listener.wait(5)
    assert not listener.wait(0.05)  # both bytes were read: the next wait sleeps again
    notifier.close()


def test_a_wait_returns_as_soon_as_another_thread_notifies(database, listener):
    threading.Timer(0.1, lambda: Notifier(database).notify()).start()
    started = time.monotonic()
    assert listener.wait(5)
    assert time.monotonic() - started < 2  # not the whole timeout


def test_a_poke_from_this_process_wakes_the_listener(listener):
    threading.Timer(0.1, listener.poke).start()
    assert listener.wait(5)


def test_notify_without_a_listener_returns_false_at_once(database):
    assert not Notifier(database).notify()  # no pipe yet
    Listener(database).close()  # the pipe is left behind, with nobody reading it
    assert os.path.exists(pipe_path(database))
    started = time.monotonic()
    assert not Notifier(database).notify()
    assert time.monotonic() - started < 1  # an open that would block for a reader is not made


def test_a_notifier_reaches_a_listener_started_after_the_last_one_stopped(database):
    first = Listener(database)
    notifier = Notifier(database)
    assert notifier.notify()
    first.close()
    assert not notifier.notify()  # the reader went away: the broken end is dropped, not kept
    second = Listener(database)
    try:
        assert notifier.notify()
        assert second.wait(5)
    finally:
        second.close()
        notifier.close()


def test_a_file_in_the_pipes_place_is_left_alone_and_the_listener_says_it_is_not_listening(database):
    with open(pipe_path(database), "w") as file:
        file.write("not a pipe")
    listener = Listener(database)
    try:
        assert not listener.listening
        assert not Notifier(database).notify()
        assert not listener.wait(0.05)
        listener.poke()
        assert listener.wait(5)  # pokes still work
    finally:
        listener.close()
    assert Path(pipe_path(database)).read_text() == "not a pipe"


def test_a_closed_listener_ignores_late_pokes(listener):
    listener.close()
    listener.poke()  # a lane finishing after the worker closed: no error, no write elsewhere
    assert not listener.listening
