"""What the fault tests measure and publish (RELIABILITY.md): per-order counts at the sandbox
Refersion, the in-doubt window, percentiles, and one JSON line per run."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections import Counter
from pathlib import Path

FIGURES_FILE = "FAULT_FIGURES"  # environment: append each run's figures to this file (JSON lines)
SEED = "FAULT_SEED"  # environment: replay a run's random choices


def seeded(name: str) -> tuple[random.Random, int]:
    """A random source for one test, seeded from FAULT_SEED or afresh; the seed is printed."""
    seed = int(os.environ.get(SEED) or random.SystemRandom().randrange(2**32))
    print(f"\n{name}: seed {seed} (re-run with {SEED}={seed})")
    return random.Random(seed), seed


def posts_per_order(refersion) -> Counter:
    """How many times each order id was accepted by the sandbox Refersion."""
    return Counter(int(order_id) for order_id in refersion.order_ids)


def first_arrivals(refersion) -> dict[int, float]:
    """When the sandbox accepted each order id first (just before it answered)."""
    found: dict[int, float] = {}
    for received in list(refersion.received):
        found.setdefault(int(received.body["order_id"]), received.at)
    return found


def done_at(db_path: str | Path) -> dict[int, float]:
    """When each delivered order's answer was written (the delivery row's ``done_at``)."""
    conn = sqlite3.connect(str(db_path), timeout=30)
    try:
        return {order_id: at for order_id, at in conn.execute("SELECT order_id, done_at FROM deliveries WHERE state = 'done'")}
    finally:
        conn.close()


def in_doubt_windows(refersion, db_path: str | Path) -> list[float]:
    """Seconds from Refersion's answer to the answer on disk, for every order posted once."""
    posts = posts_per_order(refersion)
    arrived = first_arrivals(refersion)
    written = done_at(db_path)
    return [written[order_id] - arrived[order_id] for order_id, count in posts.items() if count == 1 and order_id in written]


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max, in milliseconds."""
    if not values:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return {"p50_ms": round(at(0.5) * 1000, 2), "p99_ms": round(at(0.99) * 1000, 2), "max_ms": round(ordered[-1] * 1000, 2)}


def publish(name: str, **figures) -> dict:
    """Print one run's figures, and append them to $FAULT_FIGURES when it is set."""
    line = json.dumps({"test": name, **figures}, sort_keys=False)
    print(f"FIGURES {line}")
    target = os.environ.get(FIGURES_FILE)
    if target:
        with open(target, "a") as handle:
            handle.write(line + "\n")
    return figures
