"""Group commit: many threads' small writes made durable by one transaction and one fsync.

A webhook is acknowledged only once its event is on disk (``synchronous=FULL``), and a
commit costs an fsync. One writer thread per process, with one connection kept open,
takes every write queued while it was committing the previous batch and runs them
together: each in a savepoint of its own (one failing write does not undo the others),
then one COMMIT for all. Each caller gets its own result back only after that commit,
so nothing is acknowledged before it is durable, and a failed commit fails every write
of the batch (none of them is stored, and every caller is told so). After each commit that
stored something, a sleeping worker is woken through the pipe beside the database (``wake``).

``BatchWriter`` is the committing part alone: ``GroupCommit`` feeds it from its queue, and the
intake writer process (``web/intake.py``) from its socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from sqlite_utils import Database

from bridge.storage import db as database
from bridge.storage.wake import Notifier

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 256  # writes per transaction at most: a batch's slowest write delays all of them
IDLE_SECONDS = 5.0  # an idle writer closes its connection and ends; the next write starts another


class WriteTimeout(Exception):
    """The write was not committed in time: it may still be, later (the caller must not assume either)."""


class Write(Generic[T]):
    """One caller's write: its work, then its result or error once its batch is settled."""

    __slots__ = ("_settled", "error", "result", "work")

    def __init__(self, work: Callable[[Database], T]):
        self.work = work
        # A bare lock, held until the write is settled: what an Event does, without the
        # Condition and the second lock an Event makes for every wait (one write per webhook).
        self._settled = threading.Lock()
        self._settled.acquire()
        self.result: T | None = None
        self.error: BaseException | None = None

    def settle(self) -> None:
        self._settled.release()

    def wait(self, timeout: float) -> bool:
        return self._settled.acquire(timeout=timeout)


class GroupCommit:
    """A writer thread with its own connection to ``path``; ``run(work)`` from any thread.

    The thread starts with the first write and ends after IDLE_SECONDS without one, so a
    process (or a test) that stops writing holds no thread and no open file.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float):
        self._path = path
        self._busy_timeout = busy_timeout
        self._queue: queue.SimpleQueue[Write] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False

    def run(self, work: Callable[[Database], T], *, timeout: float) -> T:
        """Run ``work(db)`` inside a write transaction; returns its result once committed.

        Raises what ``work`` raised (its writes undone), the database's error when the commit
        failed, or ``WriteTimeout`` when nothing was settled within ``timeout`` seconds.
        """
        write = Write(work)
        with self._lock:
            self._queue.put(write)
            if not self._running:
                self._running = True
                threading.Thread(target=self._serve, name="group-commit", daemon=True).start()
        if not write.wait(timeout):
            raise WriteTimeout(f"the write was not committed within {timeout:.1f} s")
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[return-value]

    def _next(self) -> Write | None:
        """The next write, or None when none came for IDLE_SECONDS (the thread then ends)."""
        try:
            return self._queue.get(timeout=IDLE_SECONDS)
        except queue.Empty:
            with self._lock:
                if self._queue.empty():
                    self._running = False
                    return None
            return self._queue.get()

    def _serve(self) -> None:
        # The connection, the turns file and the wake-up pipe are this thread's own: the next
        # thread (started by a write that comes as this one ends) opens its own, so neither can
        # close what the other is using.
        writer = BatchWriter(self._path, busy_timeout=self._busy_timeout)
        try:
            while (first := self._next()) is not None:
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    stored = writer.commit(batch)
                finally:
                    for write in batch:
                        write.settle()
                if stored:
                    writer.notify()
        finally:
            writer.close()


class BatchWriter:
    """One connection to ``path``, the writers' turns file and the worker's wake-up pipe: commits
    batches of writes, each batch in one transaction. Used by one thread only."""

    def __init__(self, path: str | Path, *, busy_timeout: float):
        self._path = path
        self._busy_timeout = busy_timeout
        self._db: Database | None = None
        self._turns = _open_turns(path)
        self._wake = Notifier(path)

    def commit(self, batch: list[Write]) -> bool:
        """Run the batch's writes in one transaction, each in a savepoint of its own; sets each
        write's result or error (answering the callers is the caller's). True when the commit
        stored at least one write: then ``notify()`` once the callers are answered."""
        try:
            if self._db is None:
                self._db = database.connect(self._path, migrate=False, busy_timeout=self._busy_timeout)
            with _writers_in_turn(self._turns):
                _commit_batch(self._db, batch)
        except BaseException as error:  # the connection or the commit failed: no write of the batch is stored
            log.warning("A group commit of %d write(s) failed: %s", len(batch), error)
            for write in batch:
                if write.error is None:
                    write.error = error
            if self._db is not None:
                self._db.close()
                self._db = None  # a new connection for the next batch (the file may have been replaced or repaired)
            return False
        return any(write.error is None for write in batch)

    def notify(self) -> None:
        """Wake a sleeping worker: webhooks were stored."""
        self._wake.notify()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._wake.close()
        if self._turns is not None:
            self._turns.close()
            self._turns = None


def _commit_batch(db: Database, batch: list[Write]) -> None:
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        for write in batch:
            conn.execute("SAVEPOINT write")
            try:
                write.result = write.work(db)
            except Exception as error:
                conn.execute("ROLLBACK TO write")
                write.error = error
            conn.execute("RELEASE write")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _open_turns(path: str | Path):
    """The lock file the web processes' writers take turns with, or None (a read-only folder)."""
    try:
        return open(f"{path}-intake.lock", "a")  # closed by the writer thread when it ends
    except OSError:
        return None


@contextlib.contextmanager
def _writers_in_turn(turns):
    """The web processes' writers take turns through a lock file: one waiting for another's
    commit wakes the moment it ends, where SQLite's busy handler would sleep 1, 2, 5 … 100 ms
    between tries (the intake's slowest answers were those sleeps). Without the file (a
    read-only folder) SQLite's own lock does the job, only later."""
    if turns is None:
        yield
        return
    fcntl.flock(turns, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(turns, fcntl.LOCK_UN)
