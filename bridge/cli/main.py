"""The ``bridge`` command."""

from __future__ import annotations

import logging
import sys

import click

from bridge.config import ConfigError, Settings, load_settings
from bridge.logs import configure_logging
from bridge.storage import db as database

log = logging.getLogger("bridge")


def _settings(ctx: click.Context) -> Settings:
    """Load and validate the configuration, or stop with one line per problem."""
    try:
        settings = load_settings(ctx.obj)
    except ConfigError as error:
        click.echo(str(error), err=True)
        ctx.exit(2)
    configure_logging(settings.secrets())
    if not settings.bigcommerce.store_hash:
        log.warning("No store is configured (bigcommerce.store_hash and bigcommerce.access_token): webhooks will be recorded as ignored")
    if settings.rules.dry_run:
        log.warning("Dry run (rules.dry_run): orders are evaluated and recorded, nothing is sent to Refersion")
    return settings


def _prepare_database(ctx: click.Context, settings: Settings) -> None:
    try:
        database.connect(settings.database.path).close()
    except Exception as error:  # any failure here is an operator problem: say it in one line
        click.echo(f"database error: cannot open {settings.database.path}: {error}", err=True)
        ctx.exit(2)


host_option = click.option("--host", default=None, help="Interface to listen on [default: server.host].")
port_option = click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port to listen on [default: server.port].")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="BRIDGE_CONFIG",
    help="TOML configuration file [env: BRIDGE_CONFIG].",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """BigCommerce → Refersion bridge: reports paid orders to Refersion, once each."""
    ctx.obj = config_path


@cli.command()
@host_option
@port_option
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the web app and the worker together until SIGTERM/SIGINT."""
    from bridge.serving import run_both

    settings = _settings(ctx)
    _prepare_database(ctx, settings)
    sys.exit(run_both(ctx.obj, host or settings.server.host, port or settings.server.port))


@cli.command()
@host_option
@port_option
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run only the web app (webhook intake, health) under gunicorn."""
    from bridge.serving import run_web

    settings = _settings(ctx)
    _prepare_database(ctx, settings)
    run_web(settings, host or settings.server.host, port or settings.server.port)


@cli.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run only the worker: evaluate orders and deliver reports to Refersion."""
    from bridge.serving import run_worker

    settings = _settings(ctx)
    _prepare_database(ctx, settings)
    run_worker(settings)


def main() -> None:
    cli(prog_name="bridge")
