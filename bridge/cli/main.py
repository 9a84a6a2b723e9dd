"""The ``bridge`` command group; each command lives in the module of its group."""

from __future__ import annotations

import click

from bridge.cli import backfill, check, coupons, demo, hooks, keys, orders, purge, run, send_webhook
from bridge.cli.common import BridgeGroup, command_name


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (
    demo.demo,
    run.serve,
    run.web,
    run.worker,
    check.check,
    hooks.hooks,
    keys.keys,
    send_webhook.send_test_webhook,
    orders.orders,
    orders.replay,
    backfill.backfill,
    purge.purge,
    coupons.coupons,
):
    cli.add_command(command)


def main() -> None:
    """The ``bridge`` and ``refersion-bridge`` console scripts: named as the user typed them."""
    cli(prog_name=command_name())
