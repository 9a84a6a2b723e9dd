"""``bridge check``: is this configuration ready to run? One line per problem, with what to do.

Checks, in order: the configuration (``load_settings``: exit 2 with one line per problem),
``server.public_url``, the database (a write transaction), then per store BigCommerce (the
token on ``GET /v2/store``, the Orders scope on ``GET /v2/orders?limit=1``, the hooks against
what the bridge needs) and Refersion (the key pair on ``POST affiliate/list``, which changes
nothing). Exit 1 when anything is wrong, else 0 with a one-line summary. Never prints a secret.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import click

from bridge.cli.common import command_name, load_settings_or_exit
from bridge.cli.hooks import call, client_for, explain, stores_or_exit
from bridge.clients.bigcommerce import BigCommerceError
from bridge.clients.refersion import RefersionClient
from bridge.config import Settings
from bridge.core import hooks as wanted
from bridge.core.retry import Failure
from bridge.storage import db as database
from bridge.storage.stores import APP, REFERSION, Store

ORDERS_SCOPE = "store_v2_orders_read_only"
INFORMATION_SCOPE = "store_v2_information_read_only"
REFERSION_KEYS = "copy them again from Refersion › Account › Settings › Refersion API"
FIX_HOOK = {
    wanted.MISSING: "is missing",
    wanted.INACTIVE: "is inactive (BigCommerce deactivated it)",
    wanted.WRONG_DESTINATION: "sends to {destination}",
    wanted.WRONG_HEADER: "sends a wrong X-Bridge-Token header",
}


@click.command(name="check")
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate the config and probe BigCommerce, the store's hooks, Refersion and the database."""
    settings = load_settings_or_exit(ctx)
    problems: list[str] = []
    facts: list[str] = []

    destination = _check_public_url(settings, problems)
    _check_database(settings, problems, facts)
    stores = stores_or_exit(ctx, settings)
    many = len(stores) > 1
    store_facts, hook_facts = [], []
    for store in stores:
        prefix = f"store {store.store_hash}: " if many else ""
        found = _check_bigcommerce(settings, store, destination, prefix)
        problems.extend(found.problems)
        store_facts.extend(found.store_facts)
        hook_facts.extend(found.hook_facts)
    seen: set[tuple[str, str]] = set()
    refersion_ok = True
    for store in stores:
        key = (store.refersion.public_key, store.fingerprint(REFERSION))
        if key in seen:
            continue
        seen.add(key)
        problem = _check_refersion(settings, store)
        if problem:
            refersion_ok = False
            problems.append((f"store {store.store_hash}: " if many else "") + problem)

    for line in problems:
        click.echo(line)
    if problems:
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found.")
        ctx.exit(1)
    summary = [", ".join(store_facts) + " readable", ", ".join(hook_facts)]
    if refersion_ok:
        summary.append("Refersion keys accepted")
    summary.extend(facts)
    click.echo(f"All good: {', '.join(part for part in summary if part)}.")


def _check_public_url(settings: Settings, problems: list[str]) -> str | None:
    public_url = settings.server.public_url
    if not public_url:
        problems.append(
            "server.public_url is not set: hooks cannot be registered without it; set it to the https URL "
            "BigCommerce reaches the bridge at (BRIDGE_SERVER_PUBLIC_URL)."
        )
        return None
    parts = urlsplit(public_url)
    if parts.scheme != "https" or parts.port not in (None, 443):
        problems.append(
            f"server.public_url ({public_url}) is not https on port 443: BigCommerce delivers webhooks only there, "
            "so hooks cannot be registered; put the bridge behind an https address."
        )
    return wanted.destination_for(public_url)


def _check_database(settings: Settings, problems: list[str], facts: list[str]) -> None:
    path = settings.database.path
    try:
        db = database.connect(path)
    except Exception as error:  # an operator problem: say it in one line
        problems.append(f"The database {path} cannot be opened: {_one_line(error)}; check database.path and its directory's permissions.")
        return
    try:
        # A real write, rolled back: BEGIN IMMEDIATE alone does not touch the file.
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            db.conn.execute("CREATE TABLE bridge_check_probe (x INTEGER)")
            db.conn.execute("INSERT INTO bridge_check_probe VALUES (1)")
        finally:
            db.conn.execute("ROLLBACK")
        facts.append("database writable")
    except Exception as error:
        problems.append(f"The database {path} is not writable: {_one_line(error)}; check the file's and its directory's permissions.")
    finally:
        db.close()


class _Found:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.store_facts: list[str] = []
        self.hook_facts: list[str] = []


def _check_bigcommerce(settings: Settings, store: Store, destination: str | None, prefix: str) -> _Found:
    found = _Found()
    client = client_for(settings, store)
    try:
        try:
            info = call(client.store_info)
        except BigCommerceError as error:
            found.problems.append(prefix + explain(error, settings, needed_scope=INFORMATION_SCOPE))
            if error.status == 401 or error.failure in (Failure.CONNECTION, Failure.TIMEOUT) or error.status == 429:
                return found  # nothing else can answer
        else:
            name = str(info.get("name") or "?")
            domain = info.get("domain")
            found.store_facts.append(f"store {name} ({store.store_hash}{', ' + str(domain) if domain else ''})")
        try:
            call(client.probe_orders)
        except BigCommerceError as error:
            found.problems.append(prefix + explain(error, settings, needed_scope=ORDERS_SCOPE))
            if error.status != 403:
                return found
        try:
            listed = call(client.list_hooks)
        except BigCommerceError as error:
            found.problems.append(prefix + "cannot list the hooks: " + explain(error, settings))
            return found
        if destination is None:
            found.hook_facts.append(f"{len(listed)} hooks")
            return found
        states = wanted.compare(wanted.wanted_scopes(store.mode == APP), destination, settings.webhooks.secret, listed)
        fix = f"run `{command_name()} hooks register`"
        for state in states:
            if state.ok:
                continue
            sent_to = (state.hook or {}).get("destination")
            what = " and ".join(FIX_HOOK[problem].format(destination=sent_to) for problem in state.problems)
            hook = f" (hook {state.hook.get('id')})" if state.hook else ""
            found.problems.append(f"{prefix}The {state.scope} hook{hook} {what}: {fix}.")
        if all(state.ok for state in states):
            found.hook_facts.append(f"{len(states)} hooks active")
        return found
    finally:
        client.close()


def _check_refersion(settings: Settings, store: Store) -> str | None:
    ref = settings.refersion
    client = RefersionClient(
        orders_url=ref.orders_url,
        api_url=ref.api_url,
        public_key=store.refersion.public_key,
        secret_key=store.refersion.secret_key,
        timeout=ref.timeout,
    )
    try:
        reply = client.list_affiliates(limit=1)
    finally:
        client.close()
    if reply.failure is Failure.TIMEOUT:
        return f"cannot reach {ref.api_url}: no answer within {ref.timeout:g} s; check refersion.api_url and the network."
    if reply.failure is not None:
        return f"cannot reach {ref.api_url}: {reply.body or 'connection failed'}; check refersion.api_url and the network."
    if reply.status == 401:
        return f"Refersion refused the key pair (401): {REFERSION_KEYS} into refersion.public_key and refersion.secret_key."
    if reply.status is not None and 200 <= reply.status < 300:
        return None
    return f"Refersion answered {reply.status} to affiliate/list: {reply.summary}; check refersion.api_url."


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
