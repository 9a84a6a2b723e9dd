"""Running the real ``bridge`` command as child processes in tests."""

from __future__ import annotations

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
