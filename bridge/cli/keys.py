"""``bridge keys generate|rotate``: the key that encrypts the secrets stored in the database.

``server.encryption_key`` is one Fernet key or a list of them: the first encrypts, every
one decrypts. A rotation lists a new key first, restarts the bridge, re-encrypts every
stored secret with it (``rotate``), then drops the old key from the list.
"""

from __future__ import annotations

import click

from bridge.cli.common import command_name, load_settings_or_exit
from bridge.storage import db as database
from bridge.storage.db import immediate
from bridge.storage.stores import StoreRegistry
from bridge.storage.vault import SETTING, VaultError, generate_key


@click.group(name="keys")
def keys() -> None:
    """Generate and rotate server.encryption_key, which encrypts the secrets stored in the database."""


@keys.command(name="generate")
def generate() -> None:
    """Print a fresh key for server.encryption_key (nothing is stored or changed)."""
    click.echo(generate_key())
    click.echo(
        f"Put it in {SETTING} (or BRIDGE_SERVER_ENCRYPTION_KEY) and keep it safe: without it the stored secrets cannot be read. "
        f"To rotate, list it first, before the current key, restart, then run `{command_name()} keys rotate`.",
        err=True,
    )


@keys.command(name="rotate")
@click.pass_context
def rotate(ctx: click.Context) -> None:
    """Re-encrypt every stored secret with the first key of server.encryption_key."""
    settings = load_settings_or_exit(ctx)
    listed = settings.server.encryption_keys
    if not listed:
        click.echo(
            f"config error: {SETTING} is not set: list the new key first and the current one after it "
            f"(a new key comes from `{command_name()} keys generate`).",
            err=True,
        )
        ctx.exit(2)
    try:
        db = database.connect(settings.database.path)
    except Exception as error:  # an operator problem: say it in one line
        click.echo(f"database error: cannot open {settings.database.path}: {error}", err=True)
        ctx.exit(2)
    try:
        with immediate(db):  # all or nothing: a secret no key can read leaves every one as it was
            count = StoreRegistry(settings).rotate_secrets(db)
    except VaultError as error:
        click.echo(f"config error: {error} Nothing was changed.", err=True)
        ctx.exit(2)
    finally:
        db.close()
    plural = "" if count == 1 else "s"
    click.echo(f"Re-encrypted {count} stored secret{plural} with the first key of {SETTING}.")
    if len(listed) > 1:
        others = len(listed) - 1
        click.echo(
            f"The other {others} key{'s' if others != 1 else ''} can now be removed from {SETTING} "
            "(restart the bridge after removing them)."
        )
    else:
        click.echo(f"{SETTING} lists one key: there is no old key to remove.")
