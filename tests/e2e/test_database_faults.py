"""Database faults under a real ``bridge serve``: another writer holding the lock for seconds, and
the disk full. Webhooks keep arriving; each is answered 200 (stored) or 503 (BigCommerce retries
it, as the sender here does once the fault is over), never another 5xx; every acknowledged order
reaches Refersion exactly once; ``/healthz`` names the fault while it lasts.

The disk is a real size-limited file system: a tmpfs mounted for the test (needs root or
CAP_SYS_ADMIN, as CI has; skipped otherwise). The read-only file is a ``chmod`` of the database,
its ``-wal``/``-shm`` and its folder, with the bridge run as ``nobody`` through ``setpriv`` (root
ignores file modes; skipped where either is unavailable). Figures go to RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from bridge.storage.db import connect
from bridge.web.database import REQUEST_BUSY_TIMEOUT
from tests.conftest import WEBHOOK_SECRET, status_updated
from tests.fakes import load_fixture
from tests.processes import BridgeProcess, free_port, wait_for


@dataclass
class Figures:
    sent: int = 0
    acknowledged: set[int] = field(default_factory=set)
    refused: list[int] = field(default_factory=list)  # answered 503, to be sent again
    other_5xx: list[tuple[int, int]] = field(default_factory=list)
    slowest_503: float = 0.0

    def line(self, lost: int, duplicated: int, recovery: float) -> str:
        return (
            f"sent={self.sent} acknowledged={len(self.acknowledged)} answered_503={len(self.refused)} "
            f"other_5xx={len(self.other_5xx)} lost={lost} duplicated={duplicated} slowest_503={self.slowest_503:.2f}s "
            f"recovery={recovery:.1f}s"
        )


class Sender:
    """Posts one webhook per order, one after another, as BigCommerce would, recording each answer."""

    def __init__(self, port: int, figures: Figures):
        self.url = f"http://127.0.0.1:{port}/webhooks/bigcommerce"
        self.figures = figures

    def post(self, order_id: int) -> int:
        started = time.monotonic()
        response = requests.post(
            self.url,
            data=json.dumps(status_updated(order_id, 11, created_at=int(time.time()))),
            headers={"X-Bridge-Token": WEBHOOK_SECRET, "Content-Type": "application/json"},
            timeout=30,
        )
        took = time.monotonic() - started
        self.figures.sent += 1
        if response.status_code == 200:
            self.figures.acknowledged.add(order_id)
        elif response.status_code == 503:
            self.figures.refused.append(order_id)
            self.figures.slowest_503 = max(self.figures.slowest_503, took)
        elif response.status_code >= 500:
            self.figures.other_5xx.append((order_id, response.status_code))
        return response.status_code


def start_bridge(spawn, db_path: Path):
    port = free_port()
    process = spawn(["serve", "--port", str(port)], {"BRIDGE_DATABASE_PATH": str(db_path), "WEB_CONCURRENCY": "2"}, name="serve")
    wait_until_healthy(process, port)
    return port, process


def wait_until_healthy(process, port: int) -> None:

    def healthy():
        assert process.process.poll() is None, process.output
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_for(healthy, timeout=30, interval=0.1)


def health(port: int) -> tuple[int, dict]:
    response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    return response.status_code, response.json()


def finish(sender: Sender, refersion, figures: Figures, process, cleared_at: float, label: str) -> str:
    """Send the refused webhooks again (BigCommerce's retry), wait for every order to reach Refersion."""
    for order_id in list(figures.refused):
        assert sender.post(order_id) == 200, process.output
    wanted = {str(order_id) for order_id in figures.acknowledged}
    wait_for(lambda: wanted <= set(refersion.order_ids), timeout=60, interval=0.1)
    recovery = time.monotonic() - cleared_at
    delivered = refersion.order_ids
    lost = len(wanted - set(delivered))
    duplicated = len(delivered) - len(set(delivered))
    assert process.process.poll() is None, process.output
    assert "Traceback" not in process.output or "OperationalError" in process.output
    line = figures.line(lost, duplicated, recovery)
    print(f"\n[{label}] {line}")
    assert (lost, duplicated, figures.other_5xx) == (0, 0, [])
    return line


def test_another_writer_holding_the_lock_for_seconds_gets_webhooks_503_fast_and_loses_nothing(spawn, tmp_path, bigcommerce, refersion):
    db_path = tmp_path / "bridge.sqlite3"
    port, process = start_bridge(spawn, db_path)
    bigcommerce.set_quota(quota=1_000_000)  # a plan's quota that 30 orders cannot spend: the test is about the database
    orders = [bigcommerce.add(load_fixture("manual_discount"), id=7000 + n) for n in range(30)]
    figures = Figures()
    sender = Sender(port, figures)
    for order_id in orders[:10]:
        assert sender.post(order_id) == 200

    blocker = connect(db_path, migrate=False)
    blocker.conn.execute("BEGIN IMMEDIATE")
    held_from = time.monotonic()
    try:
        status, body = health(port)
        assert (status, body["status"], body["database"]) == (503, "failing", "locked")
        assert "locked by another writer" in body["problems"][0]
        for order_id in orders[10:14]:  # each waits the request's busy timeout, then 503
            assert sender.post(order_id) == 503
        assert time.monotonic() - held_from >= 8
    finally:
        blocker.conn.execute("ROLLBACK")
        blocker.close()
    cleared_at = time.monotonic()
    for order_id in orders[14:]:
        assert sender.post(order_id) == 200
    assert health(port)[0] == 200
    assert figures.slowest_503 < 5.0  # REQUEST_BUSY_TIMEOUT (3 s) and the answer
    finish(sender, refersion, figures, process, cleared_at, "database locked")


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs for the database, unmounted at teardown; skipped where mounting is not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(mount_point: Path) -> Path:
    """Take every free byte of the file system."""
    filler = mount_point / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def start_with_ten_reported(port: int, bigcommerce, refersion, first_id: int, count: int) -> tuple[list[int], Figures, Sender]:
    """``count`` orders in BigCommerce, the first ten sent as webhooks and reported to Refersion."""
    bigcommerce.set_quota(quota=1_000_000)  # a plan's quota that ~40 orders cannot spend: the test is about the database
    orders = [bigcommerce.add(load_fixture("manual_discount"), id=first_id + n) for n in range(count)]
    figures = Figures()
    sender = Sender(port, figures)
    for order_id in orders[:10]:
        assert sender.post(order_id) == 200
    wait_for(lambda: len(refersion.order_ids) == 10, timeout=30)
    return orders, figures, sender


def test_a_full_disk_gets_webhooks_503_health_says_so_and_the_bridge_resumes_when_space_is_freed(spawn, small_disk, bigcommerce, refersion):
    db_path = small_disk / "bridge.sqlite3"
    port, process = start_bridge(spawn, db_path)
    orders, figures, sender = start_with_ten_reported(port, bigcommerce, refersion, 8000, 40)

    filler = fill(small_disk)
    status, body = health(port)
    assert (status, body["status"], body["database"]) == (503, "failing", "full")
    assert "is full" in body["problems"][0]
    for order_id in orders[10:30]:
        sender.post(order_id)  # 200 while SQLite still finds room in pages it has, then 503
    assert figures.refused, "the full disk refused no webhook"
    time.sleep(2)  # the worker meets the full disk too
    assert process.process.poll() is None, process.output

    os.unlink(filler)
    cleared_at = time.monotonic()
    wait_for(lambda: health(port)[0] == 200, timeout=30, interval=0.2)
    for order_id in orders[30:]:
        assert sender.post(order_id) == 200
    finish(sender, refersion, figures, process, cleared_at, "disk full")


NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def python_for_nobody() -> list[str] | None:
    """A command running this interpreter's Python with the project importable, as ``nobody``.

    The venv's own interpreter may link to a home ``nobody`` cannot enter (pyenv under /root);
    then the system interpreter of the same version, given the venv's packages, does the job.
    None when neither can.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    project = str(Path(__file__).resolve().parents[2])
    candidates = [[sys.executable]]
    system_python = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    if system_python:
        candidates.append(["env", "PYTHONPATH=" + os.pathsep.join([*site.getsitepackages(), project]), system_python])
    # ``bridge serve`` starts its halves with its own sys.executable, so that must run too.
    probe = "import subprocess, sys, bridge.serving; subprocess.run([sys.executable, '-c', 'import bridge'], check=True)"
    for python in candidates:
        command = [*AS_NOBODY, *python]
        if subprocess.run([*command, "-c", probe], capture_output=True, cwd="/").returncode == 0:
            return command
    return None


@pytest.fixture
def nobody_folder():
    """A fresh folder owned by ``nobody`` and the command running Python as ``nobody``; its
    modes are restored and it is removed at teardown. Skipped unless root with ``setpriv``."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the bridge as an unprivileged user (root ignores file modes)")
    # A checkout in a private folder (mktemp's 0700, as for CI's clone) is not reachable by
    # ``nobody``: for the test, its parents are opened for traversal (o+x) and the checkout
    # for reading (o+rx: imports list it), then restored.
    project = Path(__file__).resolve().parents[2]
    wanted = {project: stat.S_IROTH | stat.S_IXOTH, **{parent: stat.S_IXOTH for parent in project.parents}}
    opened = {path: path.stat().st_mode for path, bits in wanted.items() if path.stat().st_mode & bits != bits}
    for path, mode in opened.items():
        path.chmod(stat.S_IMODE(mode) | wanted[path])
    folder = None
    try:
        python = python_for_nobody()
        if python is None:
            pytest.skip("no Python interpreter that the user nobody can run with this project importable")
        folder = Path(tempfile.mkdtemp(prefix="bridge-readonly-", dir="/tmp"))
        os.chown(folder, NOBODY, NOBODY)
        folder.chmod(0o755)
        yield folder, python
    finally:
        if folder is not None:
            folder.chmod(0o755)
            shutil.rmtree(folder, ignore_errors=True)
        for path, mode in opened.items():
            path.chmod(stat.S_IMODE(mode))


def set_writable(folder: Path, writable: bool) -> None:
    """The database, its -wal and -shm and the folder read-only for their owner, or writable again."""
    folder.chmod(0o755 if writable else 0o555)
    for file in folder.iterdir():
        file.chmod(0o644 if writable else 0o444)


def test_a_read_only_database_gets_webhooks_503_health_says_so_and_nothing_acknowledged_is_lost(
    nobody_folder, environ, tmp_path, bigcommerce, refersion
):
    """Measured: a chmod stops every new connection from writing ("attempt to write a readonly
    database"), while descriptors opened before keep their write access, so the worker and the
    web's intake writer, whose connections stay open while they work, go on working. A read-only
    bind mount laid over the folder does the same; one the bridge opened its files through cannot
    be remounted read-only while they are open (EBUSY)."""
    folder, python = nobody_folder
    port = free_port()
    process = BridgeProcess(
        ["serve", "--port", str(port)],
        {**environ, "BRIDGE_DATABASE_PATH": str(folder / "bridge.sqlite3"), "WEB_CONCURRENCY": "2"},
        tmp_path / "serve.log",
        python=python,
    )
    try:
        wait_until_healthy(process, port)
        orders, figures, sender = start_with_ten_reported(port, bigcommerce, refersion, 9000, 48)
        bigcommerce.slow_next(0.5, times=8)  # the worker is still busy with these when the fault starts
        for order_id in orders[10:18]:
            assert sender.post(order_id) == 200

        set_writable(folder, False)
        status, body = health(port)
        assert (status, body["status"], body["database"]) == (503, "failing", "read-only")
        assert "is read-only" in body["problems"][0]
        for order_id in orders[18:38]:
            sender.post(order_id)
            time.sleep(0.1)
        # The web's intake writer keeps the connection it opened before the chmod, as the worker
        # does, so webhooks go on being stored through it; any it could not store were refused
        # with a 503 in time, never acknowledged and lost (finish() checks every acknowledged one).
        assert figures.slowest_503 < REQUEST_BUSY_TIMEOUT
        # The worker's connections were opened before the chmod: it goes on with what was acknowledged.
        wait_for(lambda: {str(order_id) for order_id in orders[:18]} <= set(refersion.order_ids), timeout=30, interval=0.1)
        assert health(port)[1]["database"] == "read-only"
        assert process.process.poll() is None, process.output

        set_writable(folder, True)
        cleared_at = time.monotonic()
        wait_for(lambda: health(port)[0] == 200, timeout=30, interval=0.2)
        for order_id in orders[38:]:
            assert sender.post(order_id) == 200
        finish(sender, refersion, figures, process, cleared_at, "database read-only")
    finally:
        process.stop()
