"""``bridge serve``, ``bridge web`` and ``bridge worker``: running the bridge."""

from __future__ import annotations

import sys

import click

from bridge.cli.common import host_option, load_settings_or_exit, port_option, prepare_database, require_free_port
from bridge.config import Settings


def _ready_to_listen(ctx: click.Context, settings: Settings, host: str | None, port: int | None) -> tuple[str, int]:
    """The address to listen on (options over settings), checked free, with the database ready."""
    host, port = host or settings.server.host, port or settings.server.port
    require_free_port(ctx, host, port)
    prepare_database(ctx, settings)
    return host, port


@click.command()
@host_option
@port_option
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the web app and the worker together until SIGTERM/SIGINT."""
    from bridge.serving import run_both

    settings = load_settings_or_exit(ctx)
    host, port = _ready_to_listen(ctx, settings, host, port)
    sys.exit(run_both(ctx.obj, host, port))


@click.command()
@host_option
@port_option
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run only the web app (webhook intake, health) under gunicorn."""
    from bridge.serving import run_web

    settings = load_settings_or_exit(ctx)
    host, port = _ready_to_listen(ctx, settings, host, port)
    run_web(settings, host, port)


@click.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run only the worker: evaluate orders and deliver reports to Refersion."""
    from bridge.serving import run_worker

    settings = load_settings_or_exit(ctx)
    prepare_database(ctx, settings)
    run_worker(settings)
