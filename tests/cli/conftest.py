"""The sandbox (BigCommerce and Refersion on 127.0.0.1) and a CLI runner pointed at it, for
``bridge check`` and ``bridge hooks``."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from bridge.cli import cli
from bridge.sandbox import Sandbox
from tests.conftest import BC_TOKEN, REFERSION_PUBLIC, REFERSION_SECRET, STORE_HASH, WEBHOOK_SECRET

PUBLIC_URL = "https://bridge.example.com"  # the sandbox wants https:443 destinations; nothing is ever sent there
DESTINATION = PUBLIC_URL + "/webhooks/bigcommerce"
SECRETS = (BC_TOKEN, REFERSION_SECRET, WEBHOOK_SECRET)


@pytest.fixture
def sandbox():
    with Sandbox(store_hash=STORE_HASH, access_token=BC_TOKEN, public_key=REFERSION_PUBLIC, secret_key=REFERSION_SECRET) as started:
        yield started


@pytest.fixture
def sandbox_environ(tmp_path, sandbox) -> dict[str, str]:
    env = sandbox.environ(
        database_path=str(tmp_path / "bridge.sqlite3"),
        webhooks_secret=WEBHOOK_SECRET,
        server_public_url=PUBLIC_URL,
        bigcommerce_timeout="2",
        refersion_timeout="2",
    )
    return env


@pytest.fixture
def bridge(sandbox_environ):
    """``bridge(*args, **env_changes)``: the CLI in-process; an env value of None removes the variable."""
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}

    def invoke(*args, **changes):
        env = {**clean, **sandbox_environ}
        env.update({f"BRIDGE_{name.upper()}": value for name, value in changes.items()})
        result = CliRunner().invoke(cli, list(args), env=env)
        for secret in SECRETS:
            assert secret not in result.output, f"a secret was printed by {args}"
        return result

    return invoke


def our_hooks(sandbox) -> list[dict]:
    return [hook for hook in sandbox.bigcommerce.hooks() if hook["destination"] == DESTINATION]
