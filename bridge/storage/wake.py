"""Wake-ups beside the database: a writer tells a sleeping worker that work has arrived.

A named pipe (FIFO) next to the database file, ``<database>-wake``. The worker creates it and
keeps it open; the web's intake writes one byte after each commit that stored webhooks, and
the worker, blocked in ``select`` on the pipe, wakes at once — where it would otherwise poll
SQLite a hundred times a second to be as quick, and burn CPU doing so when idle.

A wake-up is only a hint: a byte lost (no worker running, the pipe full, another worker
reading it first) costs latency, never work, because the worker still looks at the database
on its own schedule. So every error here is swallowed, and nothing waits on the pipe.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def pipe_path(database_path: str | Path) -> str:
    return f"{database_path}-wake"


class Notifier:
    """The writer's end: ``notify()`` after a commit. Keeps the pipe open between commits."""

    refusal_logged = False  # once per process: each intake writer thread has a notifier of its own

    def __init__(self, database_path: str | Path):
        self._path = pipe_path(database_path)
        self._fd: int | None = None

    def notify(self) -> bool:
        """Wake a worker; True when a byte was written (or the pipe already holds enough)."""
        for _ in range(2):  # a worker restarted since: the old pipe end is broken, open anew once
            if self._fd is None:
                try:
                    # Non-blocking: with no worker reading, opening fails (ENXIO) rather than waiting.
                    self._fd = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                except PermissionError:
                    if not Notifier.refusal_logged:
                        Notifier.refusal_logged = True
                        log.warning(
                            "Cannot open the worker's wake-up pipe %s (permission denied): the worker sees new webhooks "
                            "within a quarter of a second instead of at once; run the web and the worker as the same user",
                            self._path,
                        )
                    return False
                except OSError:
                    return False  # no pipe (no worker yet) or no reader
                if not stat.S_ISFIFO(os.fstat(self._fd).st_mode):
                    self.close()
                    return False
            try:
                os.write(self._fd, b"\0")
                return True
            except BlockingIOError:
                return True  # the pipe is full of wake-ups the worker has not read yet: it is awake
            except OSError:
                self.close()  # EPIPE: the reader went away
        return False

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class Listener:
    """The worker's end: ``wait(timeout)`` returns True as soon as a writer notified or
    ``poke()`` was called (from any thread), False after ``timeout``.

    ``listening`` is False when the pipe could not be made (a read-only folder, a file of that
    name that is not a pipe): the worker then looks at the database more often instead.
    """

    def __init__(self, database_path: str | Path):
        self._pokes_read, self._pokes_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._fds = [self._pokes_read]
        self._pipe_fds: list[int] = []
        path = pipe_path(database_path)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkfifo(path, 0o600)
            reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._pipe_fds.append(reader)
            if not stat.S_ISFIFO(os.fstat(reader).st_mode):
                raise OSError(errno.EEXIST, "not a named pipe", path)
            # A write end of our own: with no writer left, a pipe reads as end-of-file, and
            # select would return at once for ever.
            self._pipe_fds.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
            self._fds.append(reader)
        except OSError as error:
            log.warning("No wake-up pipe at %s (%s): the worker looks for new work more often instead", path, error.strerror or error)
            self._close_pipe()

    @property
    def listening(self) -> bool:
        return bool(self._pipe_fds)

    def poke(self) -> None:
        """Wake ``wait`` from this process (a lane finished, a stop was asked)."""
        with contextlib.suppress(OSError):  # full: a wake-up is pending already; -1: closed
            os.write(self._pokes_write, b"\0")

    def wait(self, timeout: float) -> bool:
        poller = select.poll()  # not select.select: no limit on the descriptors' numbers
        for fd in self._fds:
            poller.register(fd, select.POLLIN)
        ready = [fd for fd, _ in poller.poll(max(timeout, 0.0) * 1000)]
        for fd in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(fd, 4096):
                    pass
        return bool(ready)

    def _close_pipe(self) -> None:
        for fd in self._pipe_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = [self._pokes_read]
        self._pipe_fds = []

    def close(self) -> None:
        self._close_pipe()
        # Forgotten before closed: a late poke from a lane must not write into a reused number.
        fds, self._pokes_read, self._pokes_write, self._fds = (self._pokes_read, self._pokes_write), -1, -1, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
