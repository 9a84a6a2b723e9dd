"""The sandbox as the outside world: ``environ`` (and so ``settings``, ``app``, ``make_worker``)
points the bridge at a fresh ``Sandbox`` of its own instead of the session-wide servers
of tests/conftest.py."""

from __future__ import annotations

import pytest

from bridge.sandbox import Sandbox
from tests.conftest import BC_TOKEN, REFERSION_PUBLIC, REFERSION_SECRET, STORE_HASH, base_environ


@pytest.fixture
def sandbox():
    with Sandbox(store_hash=STORE_HASH, access_token=BC_TOKEN, public_key=REFERSION_PUBLIC, secret_key=REFERSION_SECRET) as started:
        yield started


@pytest.fixture
def environ(tmp_path, sandbox) -> dict[str, str]:
    env = base_environ(tmp_path / "bridge.sqlite3", sandbox.bigcommerce.url, sandbox.refersion.orders_url)
    env["BRIDGE_BIGCOMMERCE_LOGIN_URL"] = sandbox.bigcommerce.url
    env["BRIDGE_REFERSION_API_URL"] = sandbox.refersion.api_url
    return env
