"""Chore ``alerts``: tell the operator's chat when a store's reports stop flowing, and when they flow again.

Every ALERT_CHECK_SECONDS the watcher compares what is wrong now, per store, with the open
incidents. A new problem opens an incident and queues one alert; a problem gone clears it
and queues one more. Alerts travel through the outbox like every delivery (retried on the
schedule, dead on a 4xx), keyed by incident and phase, so each is posted once. Off while
``alerts.webhook_url`` is unset.

Kinds: the store's Refersion reports paused (keys refused), its BigCommerce reads paused
(token refused), its webhooks missing or deactivated, dead items, and no webhook for longer
than ``alerts.quiet_hours`` while reconcile keeps finding orders.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

from bridge.storage import hook_checks, inbox, incidents, outbox, pauses
from bridge.storage.stores import APP, BIGCOMMERCE, REFERSION, Store
from bridge.worker.chores import CHORES, Chore
from bridge.worker.context import Context

ALERT_CHECK_SECONDS = 60.0  # an owner hears of a stop within about a minute; one cheap read of the database
REPAIR_NEWS_SECONDS = 24 * 3600  # a repair the watcher did not see happen is told if it is at most this old

REFERSION_PAUSED, BIGCOMMERCE_PAUSED, HOOKS, DEAD, QUIET = "refersion_paused", "bigcommerce_paused", "hooks", "dead", "quiet"


def interval(settings) -> float | None:
    return ALERT_CHECK_SECONDS if settings.alerts.webhook_url else None


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _refusal(reason: str, service: str) -> str:
    """A pause's reason in one short sentence, without the remote's raw answer."""
    status = re.search(r"\b(40[13])\b", reason)
    code = f" (HTTP {status.group(1)})" if status else ""
    if service == REFERSION and reason.startswith("Refersion refused"):
        return f"Refersion refused the API keys{code}"
    if service == BIGCOMMERCE:
        return f"BigCommerce refused the store's API token{code}"
    return reason.rstrip(".")


def problems_now(ctx: Context, store: Store, now: float) -> dict[str, str]:
    """What is wrong with the store now: kind -> the opening alert's text."""
    db, store_hash = ctx.db, store.store_hash
    found: dict[str, str] = {}
    for pause in pauses.pauses(db):
        if pause["store_hash"] != store_hash:
            continue
        since = f"Paused since {when(pause['paused_at'])}."
        if pause["service"] == REFERSION:
            found[REFERSION_PAUSED] = (
                f"Reports to Refersion for store {store_hash} are paused: {_refusal(pause['reason'], REFERSION)}. "
                f"Enter the right key pair in the bridge's settings; the held reports are sent as soon as it is saved. {since}"
            )
        elif pause["service"] == BIGCOMMERCE:
            fix = (
                "Open the app from the store's control panel to install it again."
                if store.mode == APP
                else "Create a new store-level API account and set bigcommerce.access_token to its token."
            )
            found[BIGCOMMERCE_PAUSED] = (
                f"The bridge cannot read the orders of store {store_hash}: {_refusal(pause['reason'], BIGCOMMERCE)}. "
                f"No order is reported until this is fixed. {fix} {since}"
            )
    check = hook_checks.find(db, store_hash)
    if check is not None and check["problems"]:
        fix = "Run `bridge hooks register` to re-create and re-activate them"
        fix += f" ({check['note']})." if check["note"] else "."
        found[HOOKS] = (
            f"BigCommerce webhooks of store {store_hash} are not working: {hook_checks.describe(check['problems'])}. "
            f"New orders reach the bridge only through its periodic reconcile passes, late. {fix} "
            f"Noticed at {when(check['checked_at'])}."
        )
    dead_events, dead_deliveries = incidents.dead_counts(db, store_hash)
    if dead_events or dead_deliveries:
        parts = []
        if dead_deliveries:
            parts.append(f"{dead_deliveries} report(s) to Refersion failed for good")
        if dead_events:
            parts.append(f"{dead_events} order(s) could not be read from BigCommerce")
        found[DEAD] = (
            f"Store {store_hash}: {' and '.join(parts)}. Open the bridge's status page to see why, fix the cause, "
            "then retry them (the retry button, or `bridge replay --dead`)."
        )
    quiet_hours = ctx.settings.alerts.quiet_hours
    last = incidents.quiet_since(
        db,
        store_hash,
        now=now,
        quiet_seconds=quiet_hours * 3600,
        reconcile_scope=inbox.RECONCILE,
        recovered_scopes=inbox.RECOVERED_SCOPES,
    )
    if last is not None:
        since = (
            f"has reached the bridge for store {store_hash} since {when(last)}"
            if last
            else f"has ever reached the bridge for store {store_hash}"
        )
        found[QUIET] = (
            f"No webhook from BigCommerce {since} (over {quiet_hours:g} hours), "
            "yet its reconcile passes keep finding orders no webhook brought. Check the store's webhooks "
            "(`bridge hooks list`) and that server.public_url reaches the bridge."
        )
    return found


def recovery_words(reconciling: bool, since: float | None) -> str:
    """How the orders of a webhook outage are recovered: the reconcile chore, or by hand when it is off."""
    if reconciling:
        return "A reconcile pass recovers the orders of the time they were down."
    start = time.strftime("%Y-%m-%d", time.gmtime(since)) if since else "the day they stopped"
    return f"Reconcile is off (worker.reconcile_interval = 0): run `bridge backfill --since {start}` to recover the orders of that time."


def cleared_text(kind: str, store_hash: str, now: float, check: dict | None, reconciling: bool = True) -> str:
    at = when(now)
    if kind == REFERSION_PAUSED:
        return f"Reports to Refersion for store {store_hash} flow again ({at}): the key pair was accepted; held reports are being sent."
    if kind == BIGCOMMERCE_PAUSED:
        return f"The bridge reads the orders of store {store_hash} again ({at}); held work goes on."
    if kind == HOOKS:
        repaired = check is not None and check["repaired_at"] is not None and check["repaired_at"] > now - REPAIR_NEWS_SECONDS
        by = f"the bridge repaired them at {when(check['repaired_at'])}" if repaired else f"checked at {at}"
        since = check.get("repaired_since") or check.get("down_since") if check else None
        return f"BigCommerce webhooks of store {store_hash} work again ({by}). {recovery_words(reconciling, since)}"
    if kind == DEAD:
        return f"Store {store_hash} has no failed reports or orders left ({at})."
    return f"Webhooks from BigCommerce reach the bridge again for store {store_hash} ({at})."


def repaired_text(store_hash: str, check: dict, reconciling: bool = True) -> str:
    stopped = f"BigCommerce webhooks of store {store_hash} had stopped: {hook_checks.describe(check['repaired'])}. "
    if not reconciling:
        return stopped + f"The bridge repaired them at {when(check['repaired_at'])}. " + recovery_words(False, check["repaired_since"])
    since = f" placed since {when(check['repaired_since'])}" if check["repaired_since"] else ""
    return (
        stopped
        + f"The bridge repaired them at {when(check['repaired_at'])} and a reconcile pass recovers the orders{since}. Nothing to do."
    )


def scrub(text: str, secrets: list[str]) -> str:
    """Defence in depth: no configured or store secret in a message, whatever a reason echoed."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    return text


def run(ctx: Context, store: Store | None, state: dict) -> dict:
    now = ctx.clock()
    served = ctx.stores.all(ctx.db)
    secrets = list(ctx.settings.secrets())
    for each in served:
        secrets += [each.access_token, *([each.refersion.secret_key] if each.refersion else [])]
    current = {(each.store_hash, kind): text for each in served for kind, text in problems_now(ctx, each, now).items()}
    served_hashes = {each.store_hash for each in served}
    checks = {each.store_hash: hook_checks.find(ctx.db, each.store_hash) for each in served}

    def alert(store_hash: str, kind: str, opened_at: float, phase: str, text: str) -> None:
        outbox.enqueue(
            ctx.db,
            key=outbox.alert_key(store_hash, kind, opened_at, phase),
            kind=outbox.ALERT,
            store_hash=store_hash,
            order_id=None,
            payload=json.dumps({"text": scrub(text, secrets)}),
            now=now,
        )

    reconciling = bool(ctx.settings.worker.reconcile_interval)

    def write() -> None:
        opened = {(row["store_hash"], row["kind"]): row for row in incidents.open_incidents(ctx.db)}
        for (store_hash, kind), text in current.items():
            if (store_hash, kind) not in opened:
                incidents.open_incident(ctx.db, store_hash=store_hash, kind=kind, at=now, detail=text)
                alert(store_hash, kind, now, "open", text)
        for (store_hash, kind), row in opened.items():
            if (store_hash, kind) in current:
                continue
            incidents.clear(ctx.db, incident_id=row["id"], at=now)
            if store_hash in served_hashes:  # a store that left needs no news of it
                text = cleared_text(kind, store_hash, now, checks.get(store_hash), reconciling)
                alert(store_hash, kind, row["opened_at"], "clear", text)
        for store_hash, check in checks.items():
            # A hook repaired between two looks: its outage opened and ended unseen; told once.
            if check is None or check["repaired_at"] is None or check["repaired_at"] <= now - REPAIR_NEWS_SECONDS:
                continue
            last = incidents.latest(ctx.db, store_hash=store_hash, kind=HOOKS)
            if last is None or (last["cleared_at"] is not None and last["cleared_at"] < check["repaired_at"]):
                opened_at = check["repaired_since"] or check["repaired_at"]
                text = repaired_text(store_hash, check, reconciling)
                incidents.open_incident(
                    ctx.db, store_hash=store_hash, kind=HOOKS, at=opened_at, detail=text, cleared_at=check["repaired_at"]
                )
                alert(store_hash, HOOKS, check["repaired_at"], "repaired", text)  # each repair its own message

    ctx.write("the alerts' incidents", write)
    return state


CHORE = Chore(name="alerts", per_store=False, interval=interval, run=run)
CHORES.append(CHORE)
