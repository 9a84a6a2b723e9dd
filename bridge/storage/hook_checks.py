"""The last check of each store's BigCommerce webhooks, one row per store.

``problems`` maps each wanted scope that is not fine to what is wrong with it (core.hooks'
problem names: missing, inactive, wrong destination, wrong header); empty when all are fine.
``down_since`` is when the hooks are taken to have stopped delivering (see the hook health
chore), kept while the problem lasts; ``healthy_at`` is the last check that found them fine;
``repaired_*`` tell the last repair the bridge made and the outage it ended.
"""

from __future__ import annotations

import json

from sqlite_utils import Database

from bridge.storage.db import rows
from bridge.storage.inbox import RECOVERED_SCOPES


def record(
    db: Database,
    *,
    store_hash: str,
    checked_at: float,
    wanted: int,
    problems: dict[str, list[str]],
    down_since: float | None,
    note: str | None = None,
) -> None:
    """Write one check's result (call in a transaction); a healthy check forgets ``down_since``."""
    healthy = not problems
    db.execute(
        """
        INSERT INTO hook_checks (store_hash, checked_at, wanted, problems, down_since, healthy_at, note)
        VALUES (:store, :at, :wanted, :problems, :down, :healthy_at, :note)
        ON CONFLICT (store_hash) DO UPDATE SET
            checked_at = excluded.checked_at, wanted = excluded.wanted, problems = excluded.problems,
            down_since = excluded.down_since, healthy_at = coalesce(excluded.healthy_at, hook_checks.healthy_at),
            note = excluded.note
        """,
        {
            "store": store_hash,
            "at": checked_at,
            "wanted": wanted,
            "problems": json.dumps(problems, sort_keys=True),
            "down": None if healthy else down_since,
            "healthy_at": checked_at if healthy else None,
            "note": note,
        },
    )


def record_repair(db: Database, *, store_hash: str, at: float, repaired: dict[str, list[str]], since: float | None) -> None:
    """Remember that the bridge repaired ``repaired`` (scope: what was wrong) at ``at``, ending an outage from ``since``."""
    db.execute(
        "UPDATE hook_checks SET repaired_at = ?, repaired = ?, repaired_since = ? WHERE store_hash = ?",
        [at, json.dumps(repaired, sort_keys=True), since, store_hash],
    )


def _decoded(row: dict) -> dict:
    row["problems"] = json.loads(row["problems"])
    row["repaired"] = json.loads(row["repaired"]) if row["repaired"] else {}
    return row


def find(db: Database, store_hash: str) -> dict | None:
    found = rows(db.execute("SELECT * FROM hook_checks WHERE store_hash = ?", [store_hash]))
    return _decoded(found[0]) if found else None


def failing(db: Database) -> list[dict]:
    """The last checks that found something wrong, of stores still served (an uninstalled store's hooks are gone by design)."""
    found = rows(
        db.execute(
            """
            SELECT * FROM hook_checks WHERE problems != '{}'
              AND store_hash NOT IN (SELECT store_hash FROM stores WHERE uninstalled_at IS NOT NULL)
            ORDER BY store_hash
            """
        )
    )
    return [_decoded(row) for row in found]


MISSING, INACTIVE = "missing", "inactive"  # core.hooks' names of the two problems BigCommerce causes
_PROBLEM_WORDS = {
    MISSING: "missing",
    INACTIVE: "deactivated by BigCommerce",
    "wrong destination": "sending to another address",
    "wrong header": "sending the wrong X-Bridge-Token",
}


def describe(problems: dict[str, list[str]]) -> str:
    """What is wrong, in words: ``store/order/created missing; store/order/updated deactivated by BigCommerce``."""
    by_words: dict[str, list[str]] = {}
    for scope, found in sorted(problems.items()):
        words = " and ".join(_PROBLEM_WORDS.get(problem, problem) for problem in found)
        by_words.setdefault(words, []).append(scope)
    return "; ".join(f"{', '.join(scopes)} {words}" for words, scopes in by_words.items())


def last_webhook_at(db: Database, store_hash: str) -> float | None:
    """When the store's last webhook from BigCommerce arrived (events the bridge made itself left out)."""
    return db.execute(
        "SELECT max(received_at) FROM events WHERE store_hash = ? AND scope NOT IN (?, ?)", [store_hash, *RECOVERED_SCOPES]
    ).fetchone()[0]
