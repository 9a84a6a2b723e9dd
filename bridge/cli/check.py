"""``bridge check``: is this configuration ready to run? One line per problem, with what to do.

Checks, in order: the configuration (``load_settings``: exit 2 with one line per problem),
``server.public_url``, what app installs need (``server.encryption_key``, an https
``server.public_url``), the database (a write transaction), then per store (the configured
one and every app install, each with its own token) BigCommerce (the token on
``GET /v2/store``, the Orders scope on ``GET /v2/orders?limit=1``, the hooks against what the
bridge needs) and Refersion (the store's key pair on ``POST affiliate/list``, which changes
nothing). Exit 1 when anything is wrong, else 0 with a one-line summary. Never prints a secret.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import click

from bridge.cli.common import command_name, load_settings_or_exit
from bridge.cli.hooks import call, client_for, explain, scope_name
from bridge.clients.bigcommerce import BigCommerceError
from bridge.clients.refersion import RefersionClient
from bridge.config import Settings
from bridge.core import hooks as wanted
from bridge.core.retry import Failure
from bridge.storage import db as database
from bridge.storage.stores import APP, RefersionKeys, Store, StoreRegistry
from bridge.storage.vault import VaultError
from bridge.worker.deliver import NO_KEYS

ORDERS_SCOPE = "store_v2_orders_read_only"
INFORMATION_SCOPE = "store_v2_information_read_only"
REFERSION_KEYS = "copy them again from Refersion › Account › Settings › Refersion API"
APP_INSTALLS = "bigcommerce.client_id and bigcommerce.client_secret are set for app installs"
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
    _check_app_setup(settings, problems)
    _check_database(settings, problems, facts)
    stores = _stores_or_exit(ctx, settings, problems, facts)
    many = len(stores) > 1
    store_facts, hook_facts = [], []
    for store in stores:
        prefix = f"store {store.store_hash}: " if many else ""
        found = _check_bigcommerce(settings, store, destination, prefix)
        problems.extend(found.problems)
        store_facts.extend(found.store_facts)
        hook_facts.extend(found.hook_facts)
    refersion_ok = _check_refersion_pairs(settings, stores, many, problems)
    for line in problems:
        click.echo(line)
    if problems:
        click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found.")
        ctx.exit(1)
    summary = [", ".join(store_facts) + " readable" if store_facts else "", ", ".join(hook_facts)]
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


def _app_installs(settings: Settings) -> bool:
    """Whether this bridge takes app installs (the app's OAuth credentials are set)."""
    return bool(settings.bigcommerce.client_id and settings.bigcommerce.client_secret)


def _check_app_setup(settings: Settings, problems: list[str]) -> None:
    if not _app_installs(settings):
        return
    if not settings.server.encryption_keys:
        problems.append(
            f"{APP_INSTALLS}, but server.encryption_key is not: installs cannot be stored (their access tokens are kept "
            f"encrypted with it); generate a key with `{command_name()} keys generate` and set it (BRIDGE_SERVER_ENCRYPTION_KEY)."
        )
    public_url = settings.server.public_url
    if not public_url or urlsplit(public_url).scheme != "https":
        redirect = f"{public_url or '{server.public_url}'}/bigcommerce/auth"
        problems.append(
            f"{APP_INSTALLS}, but server.public_url is not an https URL: the OAuth redirect cannot work (BigCommerce sends "
            f"the installing owner to {redirect}); set it to the https address of the app's callback URLs in the Developer Portal."
        )


def _stores_or_exit(ctx: click.Context, settings: Settings, problems: list[str], facts: list[str]) -> list[Store]:
    """The configured store and every app install; when their secrets cannot be read, the configured one alone."""
    registry = StoreRegistry(settings)
    try:
        db = database.connect(settings.database.path)
    except Exception:  # _check_database said why; the configured store can still be checked
        db = None
    try:
        stores = registry.all(db)
    except VaultError as error:
        problems.append(f"The installed stores cannot be checked: {error}")
        stores = registry.all(None)
    finally:
        if db is not None:
            db.close()
    if not stores and not _app_installs(settings):
        click.echo("No store is configured: set bigcommerce.store_hash and bigcommerce.access_token (a store-level API account).", err=True)
        ctx.exit(2)
    if not stores:
        facts.append("no store has installed the app yet")
    return stores


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
            found.problems.append(prefix + _explain(error, settings, store, INFORMATION_SCOPE))
            if error.status == 401 or error.failure in (Failure.CONNECTION, Failure.TIMEOUT) or error.status == 429:
                return found  # nothing else can answer
        else:
            name = str(info.get("name") or "?")
            domain = info.get("domain")
            found.store_facts.append(f"store {name} ({store.store_hash}{', ' + str(domain) if domain else ''})")
        try:
            call(client.probe_orders)
        except BigCommerceError as error:
            found.problems.append(prefix + _explain(error, settings, store, ORDERS_SCOPE))
            if error.status != 403:
                return found
        try:
            listed = call(client.list_hooks)
        except BigCommerceError as error:
            found.problems.append(prefix + "cannot list the hooks: " + _explain(error, settings, store))
            return found
        if destination is None:
            found.hook_facts.append(f"{len(listed)} hooks")
            return found
        states = wanted.compare(wanted.wanted_scopes(store.mode == APP), destination, store.hook_token(settings.webhooks.secret), listed)
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


def _explain(error: BigCommerceError, settings: Settings, store: Store, needed_scope: str | None = None) -> str:
    """``explain``, except that an app install's token comes from the install, not from an API account."""
    if store.mode == APP and error.status == 401:
        return (
            "BigCommerce refused the app's access token (401): the store's owner must install the app again "
            "(Apps › My Apps in the control panel) for the bridge to get a new one."
        )
    if store.mode == APP and error.status == 403:
        scope = error.missing_scope or needed_scope
        what = f"the scope {scope_name(scope)}" if scope else "a scope this request needs"
        return (
            f"The app was installed without {what} (403): add it to the app's OAuth scopes in the Developer Portal, "
            "then have the store's owner accept the update (Apps › My Apps) for a token that has it."
        )
    return explain(error, settings, needed_scope=needed_scope)


def _check_refersion_pairs(settings: Settings, stores: list[Store], many: bool, problems: list[str]) -> bool:
    """Probe each distinct key pair once (stores sharing the config's pair share one probe); True when all were accepted."""
    ref = settings.refersion
    default = RefersionKeys(ref.public_key, ref.secret_key) if ref.public_key and ref.secret_key else None
    if not stores and default is not None:
        stores_and_pairs = [("", default)]  # no store yet: the default pair stores will use
    else:
        stores_and_pairs = [(f"store {store.store_hash}: " if many else "", store.refersion) for store in stores]
    seen: set[tuple[str, str]] = set()
    accepted = True
    for prefix, keys in stores_and_pairs:
        if keys is None:
            accepted = False
            problems.append(prefix + NO_KEYS)
            continue
        if (keys.public_key, keys.secret_key) in seen:
            continue
        seen.add((keys.public_key, keys.secret_key))
        problem = _check_refersion(settings, keys, own=keys != default)
        if problem:
            accepted = False
            problems.append(prefix + problem)
    return accepted


def _check_refersion(settings: Settings, keys: RefersionKeys, *, own: bool) -> str | None:
    """One probe of a key pair; ``own``: the store's own pair (from the settings page), not the config's."""
    ref = settings.refersion
    client = RefersionClient.for_keys(ref, keys.public_key, keys.secret_key)
    try:
        reply = client.list_affiliates(limit=1)
    finally:
        client.close()
    if reply.failure is Failure.TIMEOUT:
        return f"cannot reach {ref.api_url}: no answer within {ref.timeout:g} s; check refersion.api_url and the network."
    if reply.failure is not None:
        return f"cannot reach {ref.api_url}: {reply.body or 'connection failed'}; check refersion.api_url and the network."
    if reply.status == 401:
        where = "on the store's settings page" if own else "into refersion.public_key and refersion.secret_key"
        pair = "the store's own key pair" if own else "the key pair"
        return f"Refersion refused {pair} (401): {REFERSION_KEYS} {where}."
    if reply.status is not None and 200 <= reply.status < 300:
        return None
    return f"Refersion answered {reply.status} to affiliate/list: {reply.summary}; check refersion.api_url."


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
