"""Closing answered connections gracefully, all of them on one thread.

A graceful close (RFC 9112 §9.6) sends FIN, then reads whatever the client still sends until
it hangs up, so that unread bytes never make the kernel answer with a reset that cuts the end
of the response. gunicorn's gthread does it on its main loop, where a client slow to hang up
would stop the worker for up to two seconds; a thread per close (what the bridge did before)
cost a thread's start for every webhook, since BigCommerce opens a connection for each one.
Here one thread waits on every closing socket at once, with a selector.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import selectors
import socket
import threading
import time

log = logging.getLogger(__name__)

LINGER_SECONDS = 2.0  # what gunicorn's own graceful close waits for the client to hang up
MAX_DRAIN = 65536  # bytes read from a client after its answer, at most, before closing anyway


class Closer:
    """``close(sock)`` from any thread: sends FIN now, closes the socket on this closer's thread
    once the client has hung up, sent MAX_DRAIN bytes, or LINGER_SECONDS have passed."""

    def __init__(self, linger: float = LINGER_SECONDS):
        self._linger = linger
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process whose thread and pipe these are (made after gunicorn's fork)
        self._thread: threading.Thread | None = None

    def close(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            if sock.recv(4096) == b"":  # the client has hung up already (a webhook sender most often has)
                _close(sock)
                return
        except BlockingIOError:
            pass  # not yet: the closer waits for it
        except OSError:  # the client is gone already
            _close(sock)
            return
        if self._pid != os.getpid() or not self._thread.is_alive():
            self._start()
        self._handed.put(sock)
        with contextlib.suppress(BlockingIOError):  # full: the thread is being woken already
            os.write(self._wake_write, b"\0")

    def _start(self) -> None:
        """The thread and its pipe, made in this process (after a fork), or again if it ended."""
        with self._lock:
            if self._pid == os.getpid() and self._thread.is_alive():
                return
            if self._pid == os.getpid():  # it ended (a bug): what it was handed is closed now
                log.error("The connection closer's thread had stopped; starting it again")
                while not self._handed.empty():
                    _close(self._handed.get_nowait())
            self._handed: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
            self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._thread = threading.Thread(target=self._serve, args=(self._handed, self._wake_read), name="closer", daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _serve(self, handed: queue.SimpleQueue[socket.socket], wake_read: int) -> None:
        selector = selectors.DefaultSelector()
        selector.register(wake_read, selectors.EVENT_READ)
        closing: collections.OrderedDict[socket.socket, tuple[float, int]] = collections.OrderedDict()  # by deadline
        while True:
            try:
                self._step(selector, closing, handed, wake_read)
            except Exception:  # a bug must not stop every later close in this process
                log.exception("The connection closer failed; going on")
                time.sleep(0.1)

    def _step(
        self,
        selector: selectors.BaseSelector,
        closing: collections.OrderedDict[socket.socket, tuple[float, int]],
        handed: queue.SimpleQueue[socket.socket],
        wake_read: int,
    ) -> None:
        """Wait for the next event or deadline, and close what is done."""
        timeout = max(0.0, next(iter(closing.values()))[0] - time.monotonic()) if closing else None
        for key, _ in selector.select(timeout):
            if key.fileobj == wake_read:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_read, 4096):
                        pass
                while True:
                    try:
                        sock = handed.get_nowait()
                    except queue.Empty:
                        break
                    if sock in closing:
                        continue  # handed over twice: watched already
                    try:
                        stale = selector.get_key(sock).fileobj  # its number, once another socket's
                    except (KeyError, ValueError):
                        stale = None
                    if stale is not None:
                        _forget(selector, closing, stale)
                    try:
                        selector.register(sock, selectors.EVENT_READ)
                    except (ValueError, OSError):  # closed meanwhile
                        _close(sock)
                        continue
                    closing[sock] = (time.monotonic() + self._linger, 0)
                continue
            sock = key.fileobj
            deadline, drained = closing[sock]
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data and drained + len(data) < MAX_DRAIN:
                closing[sock] = (deadline, drained + len(data))
                continue
            _forget(selector, closing, sock)
        now = time.monotonic()
        while closing:
            sock, (deadline, _) = next(iter(closing.items()))
            if deadline > now:
                break
            _forget(selector, closing, sock)


def _forget(selector: selectors.BaseSelector, closing: dict, sock: socket.socket) -> None:
    closing.pop(sock, None)
    with contextlib.suppress(KeyError, ValueError):
        selector.unregister(sock)
    _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
