"""``bridge keys generate|rotate``, and start-up refusing stored secrets it cannot read
(``bridge serve``, ``web`` and ``worker``; ``create_app`` and the worker below them)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
import requests
from click.testing import CliRunner
from cryptography.fernet import Fernet

from bridge.cli import cli
from bridge.storage.db import connect, rows
from bridge.storage.stores import StoreRegistry
from bridge.storage.vault import Vault, VaultError, generate_key
from bridge.web.app import create_app
from bridge.worker.loop import Worker
from tests.conftest import ENCRYPTION_KEY, install_store
from tests.processes import BridgeProcess, free_port, wait_for

NEW_KEY = "bmV3LWVuY3J5cHRpb24ta2V5LWZvci10aGUtdGVzdHM="
OTHER_KEY = "b3RoZXItZW5jcnlwdGlvbi1rZXktbm90LWxpc3RlZC0="
APP_TOKENS = {"approt1": "app-token-rotate-one-6c1f0d2e", "approt2": "app-token-rotate-two-93ab47d5"}
STORE_SECRET = "sec_own_rotate_0a7e5c3b91"


@pytest.fixture
def bridge(environ):
    """``bridge(*args, **env_changes)``: the CLI in-process on the test environment; None removes a variable."""
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}

    def invoke(*args, **changes):
        env = {**clean, **environ}
        for name, value in changes.items():
            env[f"BRIDGE_{name.upper()}"] = value
        return CliRunner().invoke(cli, list(args), env=env)

    return invoke


@pytest.fixture
def stored(settings):
    """Two app installs and one store's own Refersion secret key, encrypted with ENCRYPTION_KEY."""
    for store_hash, token in APP_TOKENS.items():
        install_store(settings, store_hash, access_token=token)
    db = connect(settings.database.path)
    try:
        with db.conn:
            StoreRegistry(settings).save_settings(db, store_hash="approt1", now=1.0, public_key="pub_own_rot", secret_key=STORE_SECRET)
    finally:
        db.close()
    return settings


def secret_columns(settings) -> list[dict]:
    db = connect(settings.database.path)
    try:
        return rows(db.execute("SELECT store_hash, access_token, refersion_secret_key FROM stores ORDER BY store_hash"))
    finally:
        db.close()


def read_all(make_settings, key: str) -> dict:
    """Every stored secret, read with only ``key``."""
    settings = make_settings(server_encryption_key=key)
    db = connect(settings.database.path)
    try:
        stores = {store.store_hash: store for store in StoreRegistry(settings).all(db)}
    finally:
        db.close()
    return {
        "tokens": {store_hash: stores[store_hash].access_token for store_hash in APP_TOKENS},
        "secret": stores["approt1"].refersion.secret_key,
    }


# --- generate -------------------------------------------------------------------------------


def test_generate_prints_a_fresh_fernet_key_and_says_where_it_goes(bridge):
    first, second = bridge("keys", "generate"), bridge("keys", "generate")
    assert first.exit_code == 0 and second.exit_code == 0
    key = first.stdout.strip()
    assert len(first.stdout.splitlines()) == 1
    Fernet(key)  # a valid key: raises otherwise
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", key)
    assert second.stdout.strip() != key
    (hint,) = first.stderr.splitlines()
    assert "server.encryption_key" in hint and "BRIDGE_SERVER_ENCRYPTION_KEY" in hint
    assert "list it first" in hint and "cli keys rotate" in hint


def test_generate_needs_no_configuration(tmp_path):
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}
    result = CliRunner().invoke(cli, ["keys", "generate"], env=clean)
    assert result.exit_code == 0
    assert Vault([result.stdout.strip()]).configured


def test_a_generated_key_is_accepted_by_the_configuration(make_settings):
    assert make_settings(server_encryption_key=generate_key()).server.encryption_keys


# --- rotate ---------------------------------------------------------------------------------


def test_rotate_re_encrypts_every_secret_with_the_first_key(bridge, stored, make_settings):
    before = secret_columns(stored)
    result = bridge("keys", "rotate", server_encryption_key=f"{NEW_KEY},{ENCRYPTION_KEY}")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Re-encrypted 3 stored secrets with the first key of server.encryption_key.",
        "The other 1 key can now be removed from server.encryption_key (restart the bridge after removing them).",
    ]
    after = secret_columns(stored)
    changed = [
        (old[column], new[column]) for old, new in zip(before, after, strict=True) for column in ("access_token", "refersion_secret_key")
    ]
    assert all(old != new for old, new in changed if old)  # every stored secret was rewritten
    expected = {"tokens": APP_TOKENS, "secret": STORE_SECRET}
    assert read_all(make_settings, NEW_KEY) == expected  # the new key alone reads them all
    with pytest.raises(VaultError, match=r"server\.encryption_key"):
        read_all(make_settings, ENCRYPTION_KEY)  # the old key alone no longer does


def test_rotate_with_one_key_says_there_is_nothing_to_remove(bridge, stored):
    result = bridge("keys", "rotate")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "server.encryption_key lists one key: there is no old key to remove."


def test_rotate_without_a_key_is_one_clear_line_and_changes_nothing(bridge, stored):
    before = secret_columns(stored)
    result = bridge("keys", "rotate", server_encryption_key=None)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("config error: server.encryption_key is not set")
    assert "Traceback" not in result.output
    assert secret_columns(stored) == before


def test_rotate_with_keys_that_cannot_read_a_secret_changes_nothing(bridge, stored, make_settings):
    # One store's token was written under another key: no listed key reads it.
    other = Vault([OTHER_KEY]).encrypt("app-token-under-another-key-0001")
    db = connect(stored.database.path)
    try:
        with db.conn:
            db.execute("UPDATE stores SET access_token = ? WHERE store_hash = 'approt2'", [other])
    finally:
        db.close()
    before = secret_columns(stored)
    result = bridge("keys", "rotate", server_encryption_key=f"{NEW_KEY},{ENCRYPTION_KEY}")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("config error: server.encryption_key cannot decrypt a secret stored in the database")
    assert line.endswith("Nothing was changed.")
    assert secret_columns(stored) == before  # not even the secrets it could read were rewritten
    assert OTHER_KEY not in result.output and ENCRYPTION_KEY not in result.output and NEW_KEY not in result.output


def test_rotate_prints_no_secret(bridge, stored):
    result = bridge("keys", "rotate", server_encryption_key=f"{NEW_KEY},{ENCRYPTION_KEY}")
    assert result.exit_code == 0
    for secret in (*APP_TOKENS.values(), STORE_SECRET, NEW_KEY, ENCRYPTION_KEY):
        assert secret not in result.output


# --- start-up refuses stored secrets it cannot read ----------------------------------------


@pytest.mark.parametrize("command", ["serve", "web", "worker"])
@pytest.mark.parametrize(
    ("key", "says"),
    [
        (None, "config error: the database holds encrypted secrets but server.encryption_key is not set"),
        (OTHER_KEY, "config error: server.encryption_key cannot decrypt the secrets stored in the database"),
    ],
    ids=["missing key", "wrong key"],
)
def test_start_up_refuses_stored_secrets_it_cannot_read(environ, stored, command, key, says):
    # A real process with a timeout: a bridge that wrongly starts must fail the test, not hang it.
    args = [command] if command == "worker" else [command, "--port", str(free_port())]
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("BRIDGE_")}, **_without_key(environ)}
    if key:
        env["BRIDGE_SERVER_ENCRYPTION_KEY"] = key
    result = subprocess.run([sys.executable, "-m", "bridge", *args], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(says)
    assert "Traceback" not in result.stderr
    assert "Worker" not in result.stderr  # nothing started


@pytest.mark.parametrize("command", [["hooks", "list"], ["orders", "list"]])
def test_other_commands_reading_stored_secrets_say_so_in_one_line(bridge, stored, command):
    result = bridge(*command, server_encryption_key=None)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith(
        "config error: the database holds encrypted secrets but server.encryption_key is not set"
    )
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash


@pytest.mark.parametrize("key", [None, OTHER_KEY], ids=["missing key", "wrong key"])
def test_the_app_and_the_worker_refuse_too(stored, make_settings, key):
    settings = make_settings(server_encryption_key=key)
    with pytest.raises(VaultError, match=r"server\.encryption_key"):
        create_app(settings)
    with pytest.raises(VaultError, match=r"server\.encryption_key"):
        Worker(settings)


def test_the_old_key_listed_after_a_new_one_still_starts(stored, make_settings):
    Worker(make_settings(server_encryption_key=f"{NEW_KEY},{ENCRYPTION_KEY}")).close()


def _without_key(environ) -> dict[str, str]:
    return {name: value for name, value in environ.items() if name != "BRIDGE_SERVER_ENCRYPTION_KEY"}


def _healthy(port: int, process: BridgeProcess) -> bool:
    assert process.process.poll() is None, process.output
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
    except requests.ConnectionError:
        return False


@pytest.mark.parametrize("command", ["serve", "web", "worker"])
def test_with_no_secret_stored_no_key_is_needed(command, environ, tmp_path):
    port = free_port()
    args = [command] if command == "worker" else [command, "--port", str(port)]
    process = BridgeProcess(args, _without_key(environ), tmp_path / f"{command}.log")
    try:
        if command == "worker":
            wait_for(lambda: re.search(r"Worker \S+ started", process.output), timeout=30)
        else:
            wait_for(lambda: _healthy(port, process), timeout=30, interval=0.1)
    finally:
        status = process.stop(signal.SIGTERM)
    assert status == 0, process.output
    assert "encryption_key" not in process.output
