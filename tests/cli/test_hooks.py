"""``bridge hooks register|list|delete|reactivate`` against the sandbox BigCommerce."""

import pytest
import requests

from bridge.core.hooks import HEADER
from tests.cli.conftest import DESTINATION, our_hooks
from tests.conftest import BC_TOKEN, STORE_HASH, WEBHOOK_SECRET

SCOPES = {"store/order/statusUpdated", "store/order/created", "store/order/updated", "store/order/refund/created", "store/cart/converted"}


def verbs(result) -> list[str]:
    """The first word of every per-hook line."""
    return [line.split()[0] for line in result.output.splitlines() if "(hook " in line]


def test_register_creates_the_hooks_the_pipeline_handles(bridge, sandbox):
    result = bridge("hooks", "register")
    assert result.exit_code == 0, result.output
    hooks = our_hooks(sandbox)
    assert {hook["scope"] for hook in hooks} == SCOPES
    assert all(hook["is_active"] and hook["headers"] == {HEADER: WEBHOOK_SECRET} for hook in hooks)
    assert verbs(result) == ["created"] * 5
    assert result.output.splitlines()[-1] == f"The store's hooks send to {DESTINATION}."


def test_register_twice_creates_nothing_new(bridge, sandbox):
    bridge("hooks", "register")
    before = sandbox.bigcommerce.hooks()
    again = bridge("hooks", "register")
    assert again.exit_code == 0
    assert sandbox.bigcommerce.hooks() == before
    assert verbs(again) == ["fine"] * 5
    assert len(sandbox.bigcommerce.calls(r"/v3/hooks", "POST")) == 5


def test_register_repairs_a_hook_whose_destination_was_changed_by_hand(bridge, sandbox):
    bridge("hooks", "register")
    hook_id = our_hooks(sandbox)[0]["id"]
    changed = requests.put(
        f"{sandbox.bigcommerce.url}/stores/{STORE_HASH}/v3/hooks/{hook_id}",
        json={"destination": "https://elsewhere.example.com/hook"},
        headers={"X-Auth-Token": BC_TOKEN},
        timeout=5,
    )
    assert changed.status_code == 200
    result = bridge("hooks", "register")
    assert result.exit_code == 0, result.output
    assert f"(hook {hook_id}): destination was elsewhere" in result.output
    assert len(our_hooks(sandbox)) == 5 and len(sandbox.bigcommerce.hooks()) == 5


def test_register_repairs_a_wrong_header_and_a_deactivated_hook(bridge, sandbox):
    bridge("hooks", "register")
    first, second = our_hooks(sandbox)[:2]
    sandbox.bigcommerce.deactivate_hook(first["id"])
    requests.put(
        f"{sandbox.bigcommerce.url}/stores/{STORE_HASH}/v3/hooks/{second['id']}",
        json={"headers": {HEADER: "an-old-secret-0123456789"}},
        headers={"X-Auth-Token": BC_TOKEN},
        timeout=5,
    ).raise_for_status()
    result = bridge("hooks", "register")
    assert result.exit_code == 0, result.output
    assert f"(hook {first['id']}): reactivated" in result.output
    assert f"(hook {second['id']}): X-Bridge-Token header was wrong" in result.output
    assert all(hook["is_active"] and hook["headers"] == {HEADER: WEBHOOK_SECRET} for hook in our_hooks(sandbox))


def test_reactivate_sets_our_deactivated_hooks_active(bridge, sandbox):
    bridge("hooks", "register")
    hook_id = our_hooks(sandbox)[2]["id"]
    sandbox.bigcommerce.deactivate_hook(hook_id)
    result = bridge("hooks", "reactivate")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("reactivated ") and f"(hook {hook_id})" in result.output
    assert all(hook["is_active"] for hook in sandbox.bigcommerce.hooks())
    assert "Nothing to reactivate: all 5 hooks" in bridge("hooks", "reactivate").output


def test_delete_removes_only_our_hooks(bridge, sandbox):
    bridge("hooks", "register")
    foreign = requests.post(
        f"{sandbox.bigcommerce.url}/stores/{STORE_HASH}/v3/hooks",
        json={"scope": "store/order/created", "destination": "https://other-app.example.com/hooks"},
        headers={"X-Auth-Token": BC_TOKEN},
        timeout=5,
    ).json()["data"]
    result = bridge("hooks", "delete")
    assert result.exit_code == 0, result.output
    assert [hook["id"] for hook in sandbox.bigcommerce.hooks()] == [foreign["id"]]
    left = f"left alone  store/order/created (hook {foreign['id']}): not ours (destination https://other-app.example.com/hooks)"
    assert left in result.output.splitlines()
    assert verbs(result).count("deleted") == 5


def test_list_shows_a_table_and_what_is_missing(bridge, sandbox):
    empty = bridge("hooks", "list")
    assert empty.exit_code == 0
    assert empty.output.splitlines()[0] == "No hooks."
    assert "Not right for the bridge: store/order/statusUpdated (missing)" in empty.output
    assert "hooks register`" in empty.output
    bridge("hooks", "register")
    result = bridge("hooks", "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "SCOPE", "ACTIVE", "DESTINATION", "CREATED"]
    assert len(lines) == 7
    assert all(DESTINATION in line and " yes " in line and line.endswith("ours") for line in lines[1:6])
    assert lines[-1] == f"Every hook the bridge needs is in place and active for {DESTINATION}."


@pytest.mark.parametrize("command", ["register", "delete", "reactivate"])
def test_without_a_public_url_it_says_to_set_it_and_exits_2(bridge, sandbox, command):
    result = bridge("hooks", command, server_public_url=None)
    assert result.exit_code == 2
    assert "server.public_url is not set" in result.output
    assert not sandbox.bigcommerce.calls(r"/v3/hooks")


def test_register_refuses_a_public_url_bigcommerce_cannot_deliver_to(bridge, sandbox):
    result = bridge("hooks", "register", server_public_url="http://bridge.example.com:8000")
    assert result.exit_code == 2
    assert "must be https on port 443" in result.output


def test_a_refused_token_is_a_clear_error(bridge, sandbox):
    result = bridge("hooks", "register", bigcommerce_access_token="bc-token-refused-0000000000")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "BigCommerce refused the access token (401): create a new store-level API account "
        "(Settings › Store-level API accounts) and set bigcommerce.access_token to its token."
    )


def test_an_unreachable_api_is_a_clear_error(bridge, sandbox):
    url = sandbox.bigcommerce.url
    sandbox.bigcommerce.stop()
    result = bridge("hooks", "list")
    assert result.exit_code == 1
    assert result.output.startswith(f"cannot reach {url}: ")
    assert "Connection refused" in result.output


def test_a_429_waits_for_the_reset_then_goes_on(bridge, sandbox):
    sandbox.bigcommerce.set_quota(STORE_HASH, 1, window_ms=1000)
    result = bridge("hooks", "register")
    assert result.exit_code == 0, result.output
    assert "BigCommerce's rate limit is reached: waiting" in result.output
    assert len(our_hooks(sandbox)) == 5


def test_a_429_with_a_long_reset_is_not_waited_for(bridge, sandbox):
    sandbox.bigcommerce.set_quota(STORE_HASH, 0, window_ms=120_000)
    result = bridge("hooks", "list")
    assert result.exit_code == 1
    assert "rate limit is reached (429" in result.output and "try again in 120 s" in result.output
