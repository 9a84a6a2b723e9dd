"""``bridge check`` against the sandbox: every probe, its error paths and the exit codes."""

import socket

from tests.cli.conftest import our_hooks
from tests.conftest import STORE_HASH

ALL_GOOD = (
    f"All good: store Sandbox Store {STORE_HASH} ({STORE_HASH}, {STORE_HASH}.sandbox.example) readable, "
    "5 hooks active, Refersion keys accepted, database writable."
)


def problems(result) -> list[str]:
    return [line for line in result.output.splitlines() if not line.startswith(("INFO", "WARNING"))]


def test_all_good_once_the_hooks_are_registered(bridge, sandbox):
    assert bridge("hooks", "register").exit_code == 0
    result = bridge("check")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ALL_GOOD
    assert sandbox.refersion.calls(r"/v2/affiliate/list", "POST")


def test_missing_hooks_are_one_line_each_with_the_fix(bridge):
    result = bridge("check")
    assert result.exit_code == 1
    assert problems(result) == [
        "The store/order/statusUpdated hook is missing: run `cli hooks register`.",
        "The store/order/created hook is missing: run `cli hooks register`.",
        "The store/order/updated hook is missing: run `cli hooks register`.",
        "The store/order/refund/created hook is missing: run `cli hooks register`.",
        "The store/cart/converted hook is missing: run `cli hooks register`.",
        "5 problems found.",
    ]


def test_a_hook_deactivated_by_bigcommerce_is_reported_and_reactivate_fixes_it(bridge, sandbox):
    bridge("hooks", "register")
    hook = our_hooks(sandbox)[1]
    sandbox.bigcommerce.deactivate_hook(hook["id"])
    result = bridge("check")
    assert result.exit_code == 1
    assert problems(result) == [
        f"The {hook['scope']} hook (hook {hook['id']}) is inactive (BigCommerce deactivated it): run `cli hooks register`.",
        "1 problem found.",
    ]
    assert bridge("hooks", "reactivate").exit_code == 0
    assert bridge("check").exit_code == 0


def test_a_hook_sending_elsewhere_is_reported_and_register_repairs_it(bridge, sandbox):
    bridge("hooks", "register")
    hook = our_hooks(sandbox)[0]
    moved = bridge("check", server_public_url="https://new-home.example.com")
    assert moved.exit_code == 1
    assert problems(moved)[0] == (
        f"The {hook['scope']} hook (hook {hook['id']}) sends to https://bridge.example.com/webhooks/bigcommerce: run `cli hooks register`."
    )
    assert bridge("hooks", "register", server_public_url="https://new-home.example.com").exit_code == 0
    assert bridge("check", server_public_url="https://new-home.example.com").exit_code == 0


def test_a_refused_token_says_to_create_a_new_api_account(bridge):
    result = bridge("check", bigcommerce_access_token="bc-token-refused-0000000000")
    assert result.exit_code == 1
    assert problems(result)[0] == (
        "BigCommerce refused the access token (401): create a new store-level API account "
        "(Settings › Store-level API accounts) and set bigcommerce.access_token to its token."
    )


def test_a_token_without_the_orders_scope_names_it(bridge, sandbox):
    sandbox.bigcommerce.add_token(STORE_HASH, "bc-token-no-orders-00000000", scopes=["store_v2_information_read_only"])
    bridge("hooks", "register")
    result = bridge("check", bigcommerce_access_token="bc-token-no-orders-00000000")
    assert result.exit_code == 1
    assert problems(result) == [
        "The API account lacks the scope Orders: read-only (store_v2_orders_read_only) (403): scopes cannot be changed after "
        "creation; create a new store-level API account with that scope (Settings › Store-level API accounts) and set "
        "bigcommerce.access_token to its token.",
        "1 problem found.",
    ]


def test_a_token_without_the_information_scope_names_it(bridge, sandbox):
    sandbox.bigcommerce.add_token(STORE_HASH, "bc-token-orders-only-000000", scopes=["store_v2_orders_read_only"])
    bridge("hooks", "register")
    result = bridge("check", bigcommerce_access_token="bc-token-orders-only-000000")
    assert result.exit_code == 1
    assert "lacks the scope Information & Settings: read-only (store_v2_information_read_only) (403)" in problems(result)[0]
    assert problems(result)[-1] == "1 problem found."


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_bigcommerce_says_so(bridge):
    url = f"http://127.0.0.1:{_free_port()}"
    result = bridge("check", bigcommerce_api_url=url)
    assert result.exit_code == 1
    first = problems(result)[0]
    assert first.startswith(f"cannot reach {url}: ") and "Connection refused" in first
    assert first.endswith("check bigcommerce.api_url and the network.")


def test_a_stopped_bigcommerce_is_unreachable(bridge, sandbox):
    url = sandbox.bigcommerce.url
    sandbox.bigcommerce.stop()
    result = bridge("check")
    assert result.exit_code == 1
    assert problems(result)[0].startswith(f"cannot reach {url}: ")


def test_a_429_waits_for_the_quota_reset_then_goes_on(bridge, sandbox):
    bridge("hooks", "register")
    sandbox.bigcommerce.set_quota(STORE_HASH, 2, window_ms=1000)
    result = bridge("check")
    assert result.exit_code == 0, result.output
    assert "BigCommerce's rate limit is reached: waiting" in result.output
    assert result.output.strip().endswith(ALL_GOOD)


def test_a_429_that_lasts_is_reported_not_waited_for(bridge, sandbox):
    sandbox.bigcommerce.set_quota(STORE_HASH, 0, window_ms=120_000)
    result = bridge("check")
    assert result.exit_code == 1
    assert "rate limit is reached (429" in problems(result)[0]


def test_refused_refersion_keys_say_where_to_copy_them(bridge):
    bridge("hooks", "register")
    result = bridge("check", refersion_secret_key="sec_live_wrong_0123456789ab")
    assert result.exit_code == 1
    assert problems(result) == [
        "Refersion refused the key pair (401): copy them again from Refersion › Account › Settings › Refersion API "
        "into refersion.public_key and refersion.secret_key.",
        "1 problem found.",
    ]
    assert "sec_live_wrong_0123456789ab" not in result.output


def test_an_unreachable_refersion_says_so(bridge, sandbox):
    bridge("hooks", "register")
    api_url = sandbox.refersion.api_url
    sandbox.refersion.stop()
    result = bridge("check")
    assert result.exit_code == 1
    assert problems(result)[0].startswith(f"cannot reach {api_url}: ")


def test_a_missing_public_url_is_a_problem(bridge):
    bridge("hooks", "register")
    result = bridge("check", server_public_url=None)
    assert result.exit_code == 1
    assert problems(result)[0].startswith("server.public_url is not set: hooks cannot be registered without it")


def test_a_plain_http_public_url_is_a_problem(bridge):
    bridge("hooks", "register")
    result = bridge("check", server_public_url="http://bridge.example.com")
    assert result.exit_code == 1
    assert problems(result)[0].startswith("server.public_url (http://bridge.example.com) is not https on port 443")


def test_a_database_that_cannot_be_written_is_a_problem(bridge, tmp_path):
    bridge("hooks", "register")
    result = bridge("check", database_path=str(tmp_path))  # a directory: SQLite cannot open it
    assert result.exit_code == 1
    assert problems(result)[0].startswith(f"The database {tmp_path} cannot be opened: ")


def test_a_config_error_exits_2_with_one_line_per_problem(bridge, sandbox):
    result = bridge("check", webhooks_secret=None, refersion_public_key=None)
    assert result.exit_code == 2
    assert "webhooks.secret" in result.output and "refersion.public_key" in result.output
    assert not sandbox.bigcommerce.requests
