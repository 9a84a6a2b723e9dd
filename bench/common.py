"""What every benchmark part shares: processes to run and measure, wrk, the bridge's environment."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

WEBHOOK_SECRET = "bench-webhook-secret-0123456789"
STORE_HASH = "bench01"
BC_TOKEN = "bench-bc-token-0123456789abcdef"
REFERSION_PUBLIC = "pub_bench_0123"
REFERSION_SECRET = "sec_bench_0123456789abcdef"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], bool], timeout: float, interval: float = 0.05, what: str = "condition", log: Path | None = None
) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log and log.exists() else ""
            raise RuntimeError(f"{what} not met within {timeout} s\n{tail}")
        time.sleep(interval)
    return time.monotonic() - started


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class Proc:
    """A child process with its own environment, output to a log file, stopped with SIGTERM."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        self._log = log_path.open("ab")
        full_env = {key: value for key, value in os.environ.items() if not key.startswith("BRIDGE_")}
        full_env.update(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(command, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def peak_rss(self) -> dict[str, float]:
        """Peak RSS in MiB of this process and each process under it, by a short name."""
        peaks = {}
        for pid in descendants(self.pid):
            with contextlib.suppress(OSError):
                peaks[f"{pid} {process_name(pid)[:60]}"] = peak_rss_mb(pid)
        return peaks

    def stop(self, timeout: float = 40) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()


def bridge(args: list[str], env: dict[str, str], log_path: Path) -> Proc:
    return Proc([sys.executable, "-m", "bridge", *args], env, log_path)


def bridge_env(workdir: Path, *, bc_url: str, refersion_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a single-store bridge against the sandboxes, with its own database."""
    env = {
        "BRIDGE_DATABASE_PATH": str(workdir / "bridge.sqlite3"),
        "BRIDGE_BIGCOMMERCE_STORE_HASH": STORE_HASH,
        "BRIDGE_BIGCOMMERCE_ACCESS_TOKEN": BC_TOKEN,
        "BRIDGE_BIGCOMMERCE_API_URL": bc_url,
        "BRIDGE_WEBHOOKS_SECRET": WEBHOOK_SECRET,
        "BRIDGE_REFERSION_PUBLIC_KEY": REFERSION_PUBLIC,
        "BRIDGE_REFERSION_SECRET_KEY": REFERSION_SECRET,
        "BRIDGE_REFERSION_ORDERS_URL": f"{refersion_url}/tracker/orders/paid",
        "BRIDGE_REFERSION_API_URL": f"{refersion_url}/v2",
        "BRIDGE_SERVER_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "BRIDGE_SERVER_SESSION_SECRET": "bench-session-secret-0123456789abcdef",
        "BRIDGE_SERVER_PORT": str(port),
        "BRIDGE_WORKER_RECONCILE_INTERVAL": "0",
    }
    env.update(extra)
    return env


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors and non-2xx answers

    @property
    def row(self) -> list[str]:
        return [f"{self.requests_per_second:,.0f}", f"{self.p50_ms:.1f}", f"{self.p99_ms:.1f}", str(self.errors)]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-z]+)", text).groups()
    return float(number) * _UNITS[unit]


def run_wrk(url: str, script: Path, *, seconds: float, connections: int, keepalive: bool, env: dict[str, str]) -> WrkResult:
    """Run wrk with a Lua script; ``keepalive`` False makes every request a new connection."""
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "-s", str(script), url]
    if not keepalive:
        command[1:1] = ["-H", "Connection: close"]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed: {done.stderr or out}")
    if "Latency Distribution" not in out:
        raise RuntimeError(f"wrk printed no latency distribution: {out}")
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    total = int(re.search(r"([0-9]+) requests in", out).group(1))
    percentiles = dict(re.findall(r"^ +(50|99)% +([0-9.]+[a-z]+)", out, re.MULTILINE))
    errors = 0
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(n) for n in match.groups())
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    return WrkResult(rps, _ms(percentiles["50"]), _ms(percentiles["99"]), total, errors)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` 0.5 for the median)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def table(headers: list[str], body: list[list[str]]) -> str:
    """A Markdown table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *body, strict=False)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + " |" for row in body]
    return "\n".join(lines)
