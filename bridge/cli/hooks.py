"""``bridge hooks register|list|delete|reactivate``: the store's BigCommerce webhooks (``/v3/hooks``).

Also the helpers ``bridge check`` shares: which stores, their clients, one BigCommerce call
with a bounded wait on a 429, and one line saying what a failed call means and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import click

from bridge.cli.common import chosen_stores, command_name, load_settings_or_exit
from bridge.clients.bigcommerce import FAILED, REPAIRED, BigCommerceClient, BigCommerceError, HookResult
from bridge.config import Settings
from bridge.core import hooks as wanted
from bridge.core.retry import Failure
from bridge.core.scopes import SCOPE_NAMES
from bridge.storage import db as database
from bridge.storage.stores import APP, Store, StoreRegistry
from bridge.storage.vault import VaultError

T = TypeVar("T")

MAX_RATE_LIMIT_WAIT = 30.0  # seconds: a CLI waits once for BigCommerce's quota reset, never longer
NEW_ACCOUNT = "create a new store-level API account (Settings › Store-level API accounts) and set bigcommerce.access_token to its token"


class Stop(Exception):
    """A BigCommerce call failed; the message is the one line to print."""


# --- Stores and clients ------------------------------------------------------------------


def stores_or_exit(ctx: click.Context, settings: Settings, store_hash: str | None = None) -> list[Store]:
    """The stores the registry serves (or the one asked for), or exit 2 saying what to set."""
    db = None
    try:
        db = database.connect(settings.database.path)
    except Exception:  # the registry falls back to the configured store; `bridge check` reports the database
        db = None
    try:
        stores = StoreRegistry(settings).all(db)
    except VaultError as error:
        click.echo(f"config error: {error}", err=True)
        ctx.exit(2)
    finally:
        if db is not None:
            db.close()
    return chosen_stores(ctx, stores, store_hash)


def client_for(settings: Settings, store: Store) -> BigCommerceClient:
    bc = settings.bigcommerce
    return BigCommerceClient(
        api_url=bc.api_url, store_hash=store.store_hash, access_token=store.access_token, client_id=store.client_id, timeout=bc.timeout
    )


def scope_name(scope: str) -> str:
    name = SCOPE_NAMES.get(scope)
    return f"{name} ({scope})" if name else scope


def explain(error: BigCommerceError, settings: Settings, *, needed_scope: str | None = None) -> str:
    """One line: what a failed BigCommerce call means and what to do about it."""
    api_url = settings.bigcommerce.api_url
    if error.failure is Failure.CONNECTION:
        return f"cannot reach {api_url}: {error.detail or 'connection failed'}; check bigcommerce.api_url and the network."
    if error.failure is Failure.TIMEOUT:
        return f"cannot reach {api_url}: {error.detail or 'no answer in time'}; check bigcommerce.api_url, or raise bigcommerce.timeout."
    if error.status == 401:
        return f"BigCommerce refused the access token (401): {NEW_ACCOUNT}."
    if error.status == 403:
        scope = error.missing_scope or needed_scope
        what = f"lacks the scope {scope_name(scope)}" if scope else "lacks a scope this request needs"
        return (
            f"The API account {what} (403): scopes cannot be changed after creation; "
            f"{NEW_ACCOUNT.replace('account ', 'account with that scope ', 1)}."
        )
    if error.status == 429:
        wait = f"{error.retry_after:.0f} s" if error.retry_after is not None else "a minute"
        return f"BigCommerce's rate limit is reached (429; the store's quota is shared with its other apps): try again in {wait}."
    if error.status == 404:
        return f"BigCommerce does not know store {error_store(error)} (404): check bigcommerce.store_hash and bigcommerce.api_url."
    if error.status is not None:
        return f"BigCommerce answered {error.status}: {error.detail or 'no details'}."
    return f"BigCommerce sent an answer the bridge cannot read: {error}."


def error_store(error: BigCommerceError) -> str:
    return getattr(error, "store_hash", "") or "(bigcommerce.store_hash)"


def call(what: Callable[[], T], *, echo: Callable[[str], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run one BigCommerce call; after a 429 wait for the quota's reset once (at most 30 s), then retry once."""
    try:
        return what()
    except BigCommerceError as error:
        if error.status != 429 or error.retry_after is None or error.retry_after > MAX_RATE_LIMIT_WAIT:
            raise
        (echo or _stderr)(f"BigCommerce's rate limit is reached: waiting {error.retry_after:.1f} s for the quota to reset…")
        sleep(error.retry_after)
        return what()


def _stderr(line: str) -> None:
    click.echo(line, err=True)


# --- The group -----------------------------------------------------------------------------


@click.group(name="hooks")
def hooks() -> None:
    """Manage the store's BigCommerce webhooks for server.public_url (/v3/hooks)."""


store_option = click.option("--store", "store_hash", help="Only this store [default: every store the bridge serves].")


def _destination_or_exit(ctx: click.Context, settings: Settings) -> str:
    public_url = settings.server.public_url
    if not public_url:
        click.echo(
            "server.public_url is not set: set it to the https URL BigCommerce reaches the bridge at "
            "(BRIDGE_SERVER_PUBLIC_URL), then run this again.",
            err=True,
        )
        ctx.exit(2)
    return wanted.destination_for(public_url)


def _https_or_exit(ctx: click.Context, destination: str) -> None:
    problem = wanted.destination_problem(destination)
    if problem:
        click.echo(problem, err=True)
        ctx.exit(2)


Work = Callable[[BigCommerceClient, Callable[[str], None]], bool]


def _run(ctx: click.Context, settings: Settings, store: Store, many: bool, work: Work) -> bool:
    """Run ``work`` for one store; True when it went fine. API failures print one line."""
    prefix = f"{store.store_hash}: " if many else ""

    def say(line: str) -> None:
        click.echo(prefix + line)

    client = client_for(settings, store)
    try:
        return work(client, say)
    except BigCommerceError as error:
        error.store_hash = store.store_hash
        click.echo(prefix + explain(error, settings), err=True)
        return False
    finally:
        client.close()


def _hook_line(verb: str, hook: dict, detail: str = "") -> str:
    return f"{verb:<11} {hook.get('scope', '?')} (hook {hook.get('id', '?')}){': ' + detail if detail else ''}"


@hooks.command(name="register")
@store_option
@click.pass_context
def register(ctx: click.Context, store_hash: str | None) -> None:
    """Create the hooks the bridge needs, and repair ours whose destination, header or active flag is wrong. Idempotent."""
    settings = load_settings_or_exit(ctx)
    destination = _destination_or_exit(ctx, settings)
    _https_or_exit(ctx, destination)
    secret = settings.webhooks.secret
    stores = stores_or_exit(ctx, settings, store_hash)

    def work_for(store: Store):
        def work(client: BigCommerceClient, say: Callable[[str], None]) -> bool:
            def report(result: HookResult) -> None:
                if result.action == FAILED:
                    say(f"{'failed':<11} {result.scope}: {explain(result.error, settings)}")
                elif result.action == REPAIRED:
                    say(_hook_line("repaired", result.hook, ", ".join(_repaired(problem) for problem in result.problems)))
                else:
                    say(_hook_line(result.action, result.hook))

            token = store.hook_token(secret)
            results = client.register_hooks(wanted.wanted_scopes(store.mode == APP), destination, token, call=call, report=report)
            fine = all(result.ok for result in results)
            if fine:
                say(f"The store's hooks send to {destination}.")
            return fine

        return work

    results = [_run(ctx, settings, store, len(stores) > 1, work_for(store)) for store in stores]
    ctx.exit(0 if all(results) else 1)


def _repaired(problem: str) -> str:
    return {
        wanted.WRONG_DESTINATION: "destination was elsewhere",
        wanted.WRONG_HEADER: "X-Bridge-Token header was wrong",
        wanted.INACTIVE: "reactivated",
    }.get(problem, problem)


@hooks.command(name="list")
@store_option
@click.pass_context
def list_hooks(ctx: click.Context, store_hash: str | None) -> None:
    """Show the store's hooks (this API account's: BigCommerce shows no other's) and what the bridge misses."""
    settings = load_settings_or_exit(ctx)
    public_url = settings.server.public_url
    destination = wanted.destination_for(public_url) if public_url else None
    secret = settings.webhooks.secret
    stores = stores_or_exit(ctx, settings, store_hash)

    def work_for(store: Store):
        def work(client: BigCommerceClient, say: Callable[[str], None]) -> bool:
            listed = sorted(call(client.list_hooks), key=lambda hook: (str(hook.get("scope")), str(hook.get("id"))))
            if not listed:
                say("No hooks.")
            else:
                for line in table(listed, destination, store.hook_token(secret)):
                    say(line)
            if destination is None:
                say("server.public_url is not set: the bridge cannot tell which hooks are its own.")
                return True
            states = wanted.compare(wanted.wanted_scopes(store.mode == APP), destination, store.hook_token(secret), listed)
            problems = ", ".join(f"{state.scope} ({state.status})" for state in states if not state.ok)
            if problems:
                say(f"Not right for the bridge: {problems}; run `{command_name()} hooks register`.")
            else:
                say(f"Every hook the bridge needs is in place and active for {destination}.")
            return True

        return work

    results = [_run(ctx, settings, store, len(stores) > 1, work_for(store)) for store in stores]
    ctx.exit(0 if all(results) else 1)


def table(listed: list[dict], destination: str | None, secret: str) -> list[str]:
    """The hooks as aligned columns: id, scope, active, destination, created (UTC), and whose."""
    rows = [("ID", "SCOPE", "ACTIVE", "DESTINATION", "CREATED", "")]
    for hook in listed:
        ours = destination is not None and wanted.is_ours(hook, destination, secret)
        rows.append(
            (
                str(hook.get("id", "")),
                str(hook.get("scope", "")),
                "yes" if hook.get("is_active") is True else "no",
                str(hook.get("destination", "")),
                _when(hook.get("created_at")),
                "ours" if ours else ("not ours" if destination is not None else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _when(value) -> str:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "?"


@hooks.command(name="delete")
@store_option
@click.pass_context
def delete(ctx: click.Context, store_hash: str | None) -> None:
    """Delete this bridge's hooks (destination server.public_url); leave every other hook alone."""
    settings = load_settings_or_exit(ctx)
    destination = _destination_or_exit(ctx, settings)
    stores = stores_or_exit(ctx, settings, store_hash)

    def work(client: BigCommerceClient, say: Callable[[str], None]) -> bool:
        listed = call(client.list_hooks)
        deleted = 0
        for hook in sorted(listed, key=lambda hook: str(hook.get("id"))):
            if hook.get("destination") == destination:
                call(lambda h=hook: client.delete_hook(h["id"]))
                say(_hook_line("deleted", hook))
                deleted += 1
            else:
                say(_hook_line("left alone", hook, f"not ours (destination {hook.get('destination')})"))
        plural = "s" if deleted != 1 else ""
        say(f"Deleted {deleted} hook{plural} sending to {destination}." if deleted else f"No hook sends to {destination}.")
        return True

    results = [_run(ctx, settings, store, len(stores) > 1, work) for store in stores]
    ctx.exit(0 if all(results) else 1)


@hooks.command(name="reactivate")
@store_option
@click.pass_context
def reactivate(ctx: click.Context, store_hash: str | None) -> None:
    """Set is_active again on this bridge's hooks that BigCommerce deactivated."""
    settings = load_settings_or_exit(ctx)
    destination = _destination_or_exit(ctx, settings)
    stores = stores_or_exit(ctx, settings, store_hash)

    def work(client: BigCommerceClient, say: Callable[[str], None]) -> bool:
        listed = call(client.list_hooks)
        ours = [hook for hook in listed if hook.get("destination") == destination]
        inactive = [hook for hook in ours if hook.get("is_active") is not True]
        for hook in sorted(inactive, key=lambda hook: str(hook.get("id"))):
            call(lambda h=hook: client.update_hook(h["id"], is_active=True))
            say(_hook_line("reactivated", hook))
        if not ours:
            say(f"No hook sends to {destination}: run `{command_name()} hooks register`.")
        elif not inactive:
            say(f"Nothing to reactivate: all {len(ours)} hooks sending to {destination} are active.")
        return True

    results = [_run(ctx, settings, store, len(stores) > 1, work) for store in stores]
    ctx.exit(0 if all(results) else 1)
