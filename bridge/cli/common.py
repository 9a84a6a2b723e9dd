"""What every command needs: validated settings, logging, a usable database."""

from __future__ import annotations

import logging
import os
import sys

import click

from bridge.config import ConfigError, Settings, load_settings
from bridge.logs import configure_logging
from bridge.storage import db as database
from bridge.storage.stores import StoreRegistry
from bridge.storage.vault import VaultError

log = logging.getLogger("bridge")

host_option = click.option("--host", default=None, help="Interface to listen on [default: server.host].")
port_option = click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port to listen on [default: server.port].")


def command_name() -> str:
    """The name the user invoked the command by (``bridge``, ``refersion-bridge``, ``python -m bridge``).

    Every message that tells the user a command to run goes through this: on many Linux
    hosts ``bridge`` is iproute2's tool, and such a user typed ``refersion-bridge``.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().info_name:
        return ctx.find_root().info_name
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m bridge" if name in ("", "__main__.py", "-m", "-c") else name


def _use_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.obj = value


def accept_config(command: click.Command) -> None:
    """Let ``command`` (and every command under it) take ``--config`` after its name too."""
    if not any(param.name == "config_path" for param in command.params):
        command.params.append(
            click.Option(
                ["--config", "config_path"],
                type=click.Path(dir_okay=False),
                expose_value=False,
                callback=_use_config,
                help="TOML configuration file [overrides --config before the command name, and BRIDGE_CONFIG].",
            )
        )
    for subcommand in getattr(command, "commands", {}).values():
        accept_config(subcommand)


class BridgeGroup(click.Group):
    """A command group whose commands all accept ``--config`` before or after their name."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        accept_config(cmd)
        super().add_command(cmd, name)


def load_settings_or_exit(ctx: click.Context) -> Settings:
    """Load and validate the configuration, or stop with one line per problem."""
    try:
        settings = load_settings(ctx.obj)
    except ConfigError as error:
        click.echo(str(error), err=True)
        ctx.exit(2)
    configure_logging(settings.secrets())
    bc = settings.bigcommerce
    if not bc.store_hash and not (bc.client_id and bc.client_secret):
        log.warning(
            "No store is configured (bigcommerce.store_hash and access_token) and app installs are off "
            "(bigcommerce.client_id and client_secret): webhooks will be recorded as ignored"
        )
    if settings.rules.dry_run:
        log.warning("Dry run (rules.dry_run): orders are evaluated and recorded, nothing is sent to Refersion")
    return settings


def require_free_port(ctx: click.Context, host: str, port: int) -> None:
    """Stop with one line unless gunicorn will be able to listen on ``host:port``."""
    from bridge.serving import listen_problem

    problem = listen_problem(host, port)
    if problem:
        click.echo(problem, err=True)
        ctx.exit(2)


def prepare_database(ctx: click.Context, settings: Settings) -> None:
    """Create and migrate the database and check its secrets can be read, or stop with one line saying why not."""
    try:
        db = database.connect(settings.database.path)
    except Exception as error:  # any failure here is an operator problem: say it in one line
        click.echo(f"database error: cannot open {settings.database.path}: {error}", err=True)
        ctx.exit(2)
    try:
        StoreRegistry(settings).check_secrets(db)
    except VaultError as error:
        click.echo(f"config error: {error}", err=True)
        ctx.exit(2)
    finally:
        db.close()


def chosen_stores(ctx: click.Context, stores: list, store_hash: str | None) -> list:
    """The stores a command acts on: every store served, or the one ``--store`` names; exit 2 saying why there is none."""
    if store_hash is not None:
        served = ", ".join(store.store_hash for store in stores) or "none"
        stores = [store for store in stores if store.store_hash == store_hash]
        if not stores:
            click.echo(f"The bridge does not serve store {store_hash} (it serves: {served}).", err=True)
            ctx.exit(2)
    if not stores:
        click.echo(
            "No store is served: set bigcommerce.store_hash and bigcommerce.access_token (a store-level API account), "
            "or install the app on a store.",
            err=True,
        )
        ctx.exit(2)
    return stores
