"""``python -m bench``: run the performance suite and print its tables (see BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from bench import common

PARTS = ("ingest", "e2e", "drain")


def _rss_rows(rss: dict[str, dict[str, float]]) -> list[list[str]]:
    return [[phase, name, f"{mb:.1f}"] for phase, procs in rss.items() for name, mb in sorted(procs.items())]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the suite, not figures to quote)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--drain-seconds", type=float, help="cut the backlog drain after this long (its rate then projects the rest)")
    args = parser.parse_args()
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# bench: commit {commit or '?'}, {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}, quick={args.quick}\n")
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        if "ingest" in parts:
            from bench import ingest

            (workdir / "ingest").mkdir()
            result = ingest.run(workdir / "ingest", seconds=3 if args.quick else 10)
            figures["ingest"] = result
            print("## 1. Ingest (wrk, 16 connections)\n")
            print(common.table(ingest.HEADERS, result["rows"]))
            print(f"\nWebhooks stored by the bridge: {result['bridge_events_stored']:,}\n")
            alternating = ingest.alternate(workdir / "ingest", rounds=2 if args.quick else 5, seconds=2 if args.quick else 5)
            figures["ingest_alternating"] = alternating
            print("### The bridge and the bare app in turns (keep-alive off, both running)\n")
            print(common.table(ingest.ALTERNATE_HEADERS, alternating["rows"]))
            print(f"\nMedian ratio: {alternating['median_ratio']:.2f}\n")
        if "e2e" in parts:
            from bench import e2e

            (workdir / "e2e").mkdir()
            result = e2e.run(workdir / "e2e", orders=60 if args.quick else 400)
            figures["e2e"] = result
            print("## 2. End to end, and 4. API economy\n")
            print(common.table(e2e.HEADERS, result["rows"]))
            print()
        if "drain" in parts:
            from bench import drain

            (workdir / "drain").mkdir()
            result = drain.run(workdir / "drain", quick=args.quick, max_seconds=args.drain_seconds)
            figures["drain"] = result
            print("## 3. Backlog drain\n")
            print(common.table(drain.HEADERS, result["rows"]))
            print(f"\n{result['summary']}\n")
        rss = {part: figures[part]["rss"] for part in figures if "rss" in figures[part]}
        if rss:
            print("## 5. Peak RSS per process (MiB)\n")
            print(common.table(["part", "process", "peak RSS"], [r for part in rss.values() for r in _rss_rows(part)]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
