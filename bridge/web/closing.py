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
import os
import queue
import selectors
import socket
import threading
import time

LINGER_SECONDS = 2.0  # what gunicorn's own graceful close waits for the client to hang up
MAX_DRAIN = 65536  # bytes read from a client after its answer, at most, before closing anyway


class Closer:
    """``close(sock)`` from any thread: sends FIN now, closes the socket on this closer's thread
    once the client has hung up, sent MAX_DRAIN bytes, or LINGER_SECONDS have passed."""

    def __init__(self, linger: float = LINGER_SECONDS):
        self._linger = linger
        self._lock = threading.Lock()
        self._pid: int | None = None  # the process whose thread and pipe these are (made after gunicorn's fork)

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
        if self._pid != os.getpid():
            self._start()
        self._handed.put(sock)
        with contextlib.suppress(BlockingIOError):  # full: the thread is being woken already
            os.write(self._wake_write, b"\0")

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._handed: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
            self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            threading.Thread(target=self._serve, args=(self._handed, self._wake_read), name="closer", daemon=True).start()
            self._pid = os.getpid()

    def _serve(self, handed: queue.SimpleQueue[socket.socket], wake_read: int) -> None:
        selector = selectors.DefaultSelector()
        selector.register(wake_read, selectors.EVENT_READ)
        closing: collections.OrderedDict[socket.socket, tuple[float, int]] = collections.OrderedDict()  # by deadline
        while True:
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
                del closing[sock]
                selector.unregister(sock)
                _close(sock)
            now = time.monotonic()
            while closing:
                sock, (deadline, _) = next(iter(closing.items()))
                if deadline > now:
                    break
                del closing[sock]
                selector.unregister(sock)
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
