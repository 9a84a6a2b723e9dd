"""The group-commit writer: many threads' writes, one transaction, each acknowledged after the commit."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from bridge.storage import group_commit
from bridge.storage.db import connect
from bridge.storage.group_commit import GroupCommit, WriteTimeout


@pytest.fixture
def path(tmp_path):
    db = connect(tmp_path / "bridge.sqlite3")
    db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE)")
    db.close()
    return tmp_path / "bridge.sqlite3"


def _texts(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT text FROM notes ORDER BY id")]


def _insert(text: str):
    return lambda db: db.execute("INSERT INTO notes (text) VALUES (?) RETURNING id", [text]).fetchone()[0]


def test_a_write_returns_its_result_once_committed(path):
    writer = GroupCommit(path, busy_timeout=1)
    assert writer.run(_insert("a"), timeout=5) == 1
    assert _texts(path) == ["a"]  # another connection sees it: committed before the answer


def test_writes_queued_while_the_writer_is_busy_share_one_commit_and_are_answered_after_it(path):
    writer = GroupCommit(path, busy_timeout=1)
    gate = threading.Event()
    ran_at: dict[int, float] = {}
    answered_at: dict[int, float] = {}

    def write(n: int):
        def work(db):
            db.execute("INSERT INTO notes (text) VALUES (?)", [f"n{n}"])
            ran_at[n] = time.monotonic()
            time.sleep(0.002)

        writer.run(work, timeout=10)
        answered_at[n] = time.monotonic()

    holder = threading.Thread(target=writer.run, args=(lambda db: gate.wait(5),), kwargs={"timeout": 10})
    holder.start()
    time.sleep(0.05)
    threads = [threading.Thread(target=write, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # all twenty queue up behind the busy writer
    gate.set()
    for thread in [holder, *threads]:
        thread.join()
    assert sorted(_texts(path)) == sorted(f"n{n}" for n in range(20))
    # One batch: nobody was answered before the last of them had run, so all were
    # acknowledged by the same commit (one after another, the first would be answered first).
    assert min(answered_at.values()) >= max(ran_at.values())


def test_a_failing_write_is_undone_alone_and_its_caller_gets_the_error(path):
    writer = GroupCommit(path, busy_timeout=1)
    writer.run(_insert("taken"), timeout=5)
    results: dict[str, object] = {}
    gate = threading.Event()

    def hold(db):
        gate.wait(5)  # keeps the writer busy while the next three queue up: they form one batch
        return "held"

    def run(name, work):
        try:
            results[name] = writer.run(work, timeout=10)
        except Exception as error:
            results[name] = error

    threads = [threading.Thread(target=run, args=("hold", hold))]
    threads[0].start()
    time.sleep(0.1)

    def half_done(db):
        db.execute("INSERT INTO notes (text) VALUES ('half')")
        raise ValueError("a bug after the first insert")

    for name, work in (("before", _insert("x")), ("duplicate", _insert("taken")), ("half", half_done), ("after", _insert("y"))):
        threads.append(threading.Thread(target=run, args=(name, work)))
        threads[-1].start()
    time.sleep(0.1)
    gate.set()
    for thread in threads:
        thread.join()
    assert isinstance(results["duplicate"], sqlite3.IntegrityError)
    assert isinstance(results["half"], ValueError)
    assert isinstance(results["before"], int) and isinstance(results["after"], int)
    assert _texts(path) == ["taken", "x", "y"]


def test_when_the_commit_fails_no_write_of_the_batch_is_stored_and_every_caller_is_told(path):
    writer = GroupCommit(path, busy_timeout=0.05)
    writer.run(_insert("first"), timeout=5)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            writer.run(_insert("second"), timeout=5)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert _texts(path) == ["first"]
    assert writer.run(_insert("third"), timeout=5)  # the writer recovers with a new connection
    assert _texts(path) == ["first", "third"]


def test_a_write_not_committed_in_time_raises_write_timeout(path):
    writer = GroupCommit(path, busy_timeout=1)
    gate = threading.Event()
    slow = threading.Thread(target=writer.run, args=(lambda db: gate.wait(5),), kwargs={"timeout": 10})
    slow.start()
    time.sleep(0.05)
    with pytest.raises(WriteTimeout):
        writer.run(_insert("late"), timeout=0.1)
    gate.set()
    slow.join()
    # It was still queued, and is committed after all: the caller was told neither way.
    deadline = time.monotonic() + 5
    while _texts(path) != ["late"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _texts(path) == ["late"]


def test_an_idle_writer_ends_its_thread_and_a_new_write_starts_another(path, monkeypatch):
    monkeypatch.setattr(group_commit, "IDLE_SECONDS", 0.05)
    writer = GroupCommit(path, busy_timeout=1)

    def writers() -> int:
        return sum(thread.name == "group-commit" and thread.is_alive() for thread in threading.enumerate())

    before = writers()
    writer.run(_insert("a"), timeout=5)
    deadline = time.monotonic() + 5
    while writers() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writers() == before  # no thread, no open connection left behind
    writer.run(_insert("b"), timeout=5)
    assert _texts(path) == ["a", "b"]


def test_a_commit_wakes_a_listener_beside_the_database_and_a_failed_write_does_not(path):
    from bridge.storage.wake import Listener

    listener = Listener(path)
    try:
        writer = GroupCommit(path, busy_timeout=1)
        with pytest.raises(sqlite3.IntegrityError):
            writer.run(_insert("same"), timeout=5) and writer.run(_insert("same"), timeout=5)
        assert listener.wait(5)  # the first write was stored
        with pytest.raises(sqlite3.IntegrityError):
            writer.run(_insert("same"), timeout=5)
        assert not listener.wait(0.2)  # nothing stored: nobody woken for nothing
        writer.run(_insert("other"), timeout=5)
        assert listener.wait(5)
    finally:
        listener.close()


@pytest.mark.soak
def test_writer_threads_that_end_and_start_again_tell_every_caller_the_truth(path, monkeypatch):
    """A writer thread ending (idle) just as the next write starts another: each thread keeps its
    own lock file and wake-up pipe, so no write is told it failed after it was committed (with
    one shared between them, about 4 writes in 10 s were; hence a soak run, not a quick one)."""
    import random
    import sys

    from bridge.storage.wake import Listener

    monkeypatch.setattr(group_commit, "IDLE_SECONDS", 0.001)
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can: the hand-over is raced hard
    listener = Listener(path)
    writer = GroupCommit(path, busy_timeout=5)
    told: dict[str, bool] = {}
    rng = random.Random(11)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = f"note-{len(told)}"
            try:
                writer.run(_insert(text), timeout=10)
                told[text] = True
            except Exception:
                told[text] = False
            time.sleep(rng.random() * 0.002)
    finally:
        sys.setswitchinterval(before)
        listener.close()
    assert {text for text, ok in told.items() if ok} == set(_texts(path))
    assert all(told.values())
