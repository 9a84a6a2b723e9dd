"""Running the real ``bridge`` command as child processes in tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


class BridgeProcess:
    """``python -m bridge ARGS`` with its own environment; output goes to a log file.

    ``python`` is the command that runs the interpreter, this one's by default; another, e.g.
    behind ``setpriv``, runs the bridge as another user.
    """

    def __init__(self, args: list[str], environ: dict[str, str], log_path: Path, python: list[str] | None = None):
        self.log_path = log_path
        env = {key: value for key, value in os.environ.items() if not key.startswith("BRIDGE_")}
        env.update(environ)
        env["PYTHONUNBUFFERED"] = "1"
        self._log = log_path.open("ab")
        command = [*(python or [sys.executable]), "-m", "bridge", *args]
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to tidy up."""
        self.process.kill()
        self.wait(timeout=10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        """Send ``sig`` (unless it has exited) and wait for the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._log.close()


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    """Wait until ``condition()`` holds; returns the seconds it took, fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def free_port() -> int:
    """A port nothing listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` (Linux /proc), each with its command line."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry)] = command
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (gunicorn's workers are grandchildren of ``bridge serve``)."""
    found = [pid]
    for child in children(pid):
        found.extend(descendants(child))
    return found


def kill_pid(pid: int) -> None:
    """SIGKILL one process by id; gone already is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Serve:
    """``bridge serve`` on a fixed port, restartable: ``start``, ``worker_pid``, ``kill_worker``, ``kill_all``.

    ``spawn`` is the conftest fixture; every start gets its own log file.
    """

    def __init__(self, spawn: Callable, environ: dict[str, str] | None = None, port: int | None = None):
        self.spawn = spawn
        self.environ = {"BRIDGE_WORKER_POLL_INTERVAL": "0.05", "WEB_CONCURRENCY": "2", **(environ or {})}
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: BridgeProcess | None = None
        self.starts = 0

    def start(self, timeout: float = 30, **environ: str) -> Serve:
        """Start (again, after a kill) and wait until ``/healthz`` answers and the worker runs."""
        import requests

        self.environ.update(environ)
        self.process = self.spawn(["serve", "--port", str(self.port)], self.environ, name=f"serve-{self.starts}")
        self.starts += 1

        def ready() -> bool:
            assert self.process.process.poll() is None, self.process.output
            try:
                answered = requests.get(f"{self.base}/healthz", timeout=2).status_code in (200, 503)
            except requests.RequestException:  # not listening yet, or busy starting
                return False
            return answered and self.worker_pid() is not None

        wait_for(ready, timeout=timeout, interval=0.05)
        return self

    def worker_pid(self) -> int | None:
        found = [pid for pid, command in children(self.process.process.pid).items() if " worker" in command]
        return found[0] if found else None

    def kill_worker(self) -> None:
        """SIGKILL the worker child; ``bridge serve`` then stops its web half and exits 1."""
        pid = self.worker_pid()
        if pid is not None:
            kill_pid(pid)
        self.process.wait(timeout=40)

    def kill_all(self) -> None:
        """SIGKILL ``bridge serve`` and every process below it at once (``kill -9`` of its process
        group, as a host crash or the OOM killer would)."""
        # Freeze the tree first: gunicorn may be forking a worker right now, and a child forked
        # after the listing would outlive the kill, holding the port for seconds.
        pids: list[int] = []
        while new := [pid for pid in descendants(self.process.process.pid) if pid not in pids]:
            for pid in new:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            pids.extend(new)
        for pid in pids:
            kill_pid(pid)
        self.process.wait(timeout=20)
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=10)

    def stop(self) -> int:
        return self.process.stop(signal.SIGTERM, timeout=40)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (exists and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class WebhookStream:
    """Posts one ``statusUpdated`` webhook per order to a bridge, as BigCommerce does: each is
    retried (refused connection, 5xx, timeout) until it is answered 200, i.e. acknowledged.

    ``rate`` orders per second are started (0: as fast as ``senders`` threads go).
    """

    def __init__(
        self, base: str, order_ids: list[int], *, token: str, rate: float = 0.0, senders: int = 4, body: Callable[[int], dict] | None = None
    ):
        import queue
        import threading

        from tests.conftest import status_updated

        self.base, self.token, self.rate = base, token, rate
        self.body = body or (lambda order_id: status_updated(order_id, 11))
        self.stopped = threading.Event()
        self.order_ids = order_ids
        self.acknowledged: dict[int, float] = {}  # order id → when it was answered 200
        self.answered_5xx = 0
        self.refused = 0  # connection refused or dropped: the bridge was down
        self.unexpected: list[str] = []
        self._lock = threading.Lock()
        self._todo: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._send_all, daemon=True) for _ in range(senders)]
        self._feeder = threading.Thread(target=self._feed, daemon=True)

    def start(self) -> WebhookStream:
        self.started = time.monotonic()
        self._feeder.start()
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in [self._feeder, *self._threads]:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not self.unexpected, self.unexpected[:5]
        assert len(self.acknowledged) == len(self.order_ids), f"{len(self.acknowledged)} of {len(self.order_ids)} acknowledged"

    def stop(self) -> None:
        """Stop sending (what is in flight is finished); the acknowledged count says how far it got."""
        self.stopped.set()
        for thread in [self._feeder, *self._threads]:
            thread.join(15)

    @property
    def done(self) -> bool:
        return len(self.acknowledged) == len(self.order_ids)

    def _feed(self) -> None:
        for n, order_id in enumerate(self.order_ids):
            if self.stopped.is_set():
                break
            if self.rate:
                time.sleep(max(0.0, self.started + n / self.rate - time.monotonic()))
            self._todo.put(order_id)
        for _ in self._threads:
            self._todo.put(None)

    def _send_all(self) -> None:
        import json

        import requests

        while (order_id := self._todo.get()) is not None and not self.stopped.is_set():
            body = json.dumps(self.body(order_id))
            while not self.stopped.is_set():
                try:
                    answer = requests.post(
                        f"{self.base}/webhooks/bigcommerce",
                        data=body,
                        headers={"X-Bridge-Token": self.token, "Content-Type": "application/json"},
                        timeout=10,
                    )
                except requests.RequestException:
                    with self._lock:
                        self.refused += 1
                    time.sleep(0.05)
                    continue
                if answer.status_code == 200:
                    with self._lock:
                        self.acknowledged[order_id] = time.time()
                    break
                if answer.status_code < 500:  # a webhook refused for good: the test's mistake or a bug
                    self.unexpected.append(f"order {order_id}: {answer.status_code} {answer.text[:200]}")
                    break
                with self._lock:
                    self.answered_5xx += 1
                time.sleep(0.05)
