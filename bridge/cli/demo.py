"""``bridge demo``: the whole flow on this machine, with no credentials and no config file."""

from __future__ import annotations

import logging
import signal

import click
from click.core import ParameterSource

from bridge.cli.common import command_name, require_free_port
from bridge.logs import configure_logging


def _config_given(ctx: click.Context) -> bool:
    """Whether ``--config`` was typed (before or after ``demo``); BRIDGE_CONFIG is ignored like all the environment."""
    return ParameterSource.COMMANDLINE in (ctx.find_root().get_parameter_source("config_path"), ctx.get_parameter_source("config_path"))


@click.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port for the bridge's web app on 127.0.0.1.")
@click.pass_context
def demo(ctx: click.Context, port: int) -> None:
    """Run the bridge against a built-in sandbox store and Refersion, with sample orders, until Ctrl-C."""
    from bridge import demo as scenario

    if _config_given(ctx):
        click.echo(
            f"{command_name()} demo takes no config file: it makes its own settings, sandbox and temporary database. "
            f"To run with your store: {command_name()} --config FILE serve",
            err=True,
        )
        ctx.exit(2)
    require_free_port(ctx, scenario.HOST, port)

    running = scenario.Demo(port)
    signal.signal(signal.SIGTERM, lambda signum, frame: running.stop_event.set())
    signal.signal(signal.SIGINT, lambda signum, frame: running.stop_event.set())
    # Warnings only (the Refersion failures the demo stages are among them), never a secret.
    configure_logging(level=logging.WARNING)
    try:
        running.start()
    except OSError as error:  # the port was taken after the check above
        click.echo(f"cannot start the demo on {scenario.HOST}:{port}: {error.strerror or error}", err=True)
        ctx.exit(2)
    try:
        configure_logging([*running.settings.secrets(), running.login_code, running.sandbox.refersion.public_key], level=logging.WARNING)
        click.echo(
            "Bridge demo: a sandbox BigCommerce store and Refersion on 127.0.0.1, a temporary database, random secrets.\n"
            "Sample orders going through: reported; skipped (free, cancelled, payment declined, gift certificates only, "
            "marketplace channel); waiting, then paid; retried after a Refersion 503; refused by Refersion with a 400 "
            "(dead); no cart id. The 400 and the 503 logged below are staged."
        )
        running.run_scenario()
        name, config = command_name(), f"--config {running.config_path}"
        click.echo(f"Status page: {running.url}/login/once/{running.login_code}")
        click.echo("")
        click.echo("Try this next:")
        click.echo(f"  {name} {config} send-test-webhook {scenario.SPARE} --url {running.url}/webhooks/bigcommerce --follow")
        click.echo(f"  {name} {config} orders why {scenario.CANCELLED}")
        click.echo("")
        click.echo("Press Ctrl-C to stop.")
        while not running.stop_event.wait(0.5):
            pass
        click.echo("Stopping the demo.")
    finally:
        running.stop()
    ctx.exit(0)
