"""``python -m bench.profile_ingest``: where a ``bridge web`` worker spends its time under the ingest load.

Runs ``bridge web``, drives it with wrk (keep-alive off, 16 connections) and samples one
gunicorn worker with py-spy (``pip install py-spy``); prints the functions with the most
samples, by own time and by time including callees (from the bridge's and the libraries' code).
``--writer`` samples the intake writer (the ``bridge web`` process itself) instead.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench.common import STORE_HASH, WEBHOOK_SECRET, bridge, bridge_env, descendants, free_port, listening, run_wrk, wait_until
from bench.ingest import SCRIPT


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_ingest", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--writer", action="store_true", help="sample the intake writer instead of a web worker")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        env = bridge_env(workdir, bc_url="http://127.0.0.1:9", refersion_url="http://127.0.0.1:9", port=port)
        web = bridge(["web", "--port", str(port)], env, workdir / "web.log")
        try:
            wait_until(lambda: listening(port), 30, what="bridge web listening")
            # bridge web is the intake writer; below it gunicorn's master, below that its workers.
            wait_until(lambda: _workers(web.pid), 30, what="a gunicorn worker")
            worker_pid = web.pid if args.writer else _workers(web.pid)[0]
            raw = workdir / "profile.txt"
            load_env = {"BENCH_STORE_HASH": STORE_HASH, "BENCH_TOKEN": WEBHOOK_SECRET, "BENCH_FIRST_ORDER": "1"}
            url = f"http://127.0.0.1:{port}/webhooks/bigcommerce"
            load = threading.Thread(
                target=run_wrk,
                args=(url, SCRIPT),
                kwargs={"seconds": args.seconds + 2, "connections": 16, "keepalive": False, "env": load_env},
            )
            load.start()
            time.sleep(1)
            subprocess.run(
                [
                    "py-spy",
                    "record",
                    "-d",
                    str(int(args.seconds)),
                    "-r",
                    "250",
                    "-p",
                    str(worker_pid),
                    "-f",
                    "raw",
                    "-o",
                    str(raw),
                    "--nonblocking",
                    "--gil",
                ],
                capture_output=True,
                check=True,
            )
            load.join()
        finally:
            web.stop()
        own, inclusive, total = collections.Counter(), collections.Counter(), 0
        for line in raw.read_text().splitlines():
            stack, count = line.rsplit(" ", 1)
            frames = stack.split(";")
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
    what = "the intake writer" if args.writer else "one web worker"
    print(f"{total} samples of {what} (threads holding the GIL)\n\nBy own time:")
    for frame, count in own.most_common(args.top):
        print(f"{count / total:6.1%}  {frame}")
    print("\nIncluding callees:")
    for frame, count in inclusive.most_common(args.top * 2):
        print(f"{count / total:6.1%}  {frame}")


def _workers(pid: int) -> list[int]:
    """The processes below ``pid`` with none below them: gunicorn's workers."""
    return [found for found in descendants(pid)[1:] if descendants(found) == [found]]


if __name__ == "__main__":
    main()
