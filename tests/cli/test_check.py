"""``bridge check`` against the sandbox: every probe, its error paths and the exit codes."""

import re
import socket

import pytest

from bridge.config import load_settings
from bridge.storage.db import connect, immediate
from bridge.storage.stores import StoreRegistry
from tests.cli.conftest import our_hooks
from tests.conftest import BC_TOKEN, ENCRYPTION_KEY, REFERSION_PUBLIC, REFERSION_SECRET, STORE_HASH, install_store

ALL_GOOD = (
    f"All good: store Sandbox Store {STORE_HASH} ({STORE_HASH}, {STORE_HASH}.sandbox.example) readable, "
    "5 hooks active, Refersion keys accepted, database writable."
)


LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d [\d:,]+ )?(INFO|WARNING) ")


def problems(result) -> list[str]:
    return [line for line in result.output.splitlines() if not LOG_LINE.match(line)]


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


# --- App installs: several stores, each with its own token and key pair ------------------------

APP_TOKENS = {"appone": "app-token-one-4e8a1c2b7d903f56", "apptwo": "app-token-two-9b1d3f5a7c2e0846"}
OWN_PAIR = ("pub_own_apptwo", "sec_own_apptwo_5c8e2a4f61")
APP_MODE = {
    "bigcommerce_client_id": "app-client-id-0001",
    "bigcommerce_client_secret": "app-client-secret-0123456789",
    "server_encryption_key": ENCRYPTION_KEY,
}
NO_CONFIGURED_STORE = {"bigcommerce_store_hash": None, "bigcommerce_access_token": None}


@pytest.fixture
def installed(sandbox, sandbox_environ):
    """Two app installs the sandbox knows (each its own token); apptwo has its own Refersion pair."""
    settings = load_settings(None, environ={**sandbox_environ, "BRIDGE_SERVER_ENCRYPTION_KEY": ENCRYPTION_KEY})
    for store_hash, token in APP_TOKENS.items():
        sandbox.bigcommerce.add_store(store_hash, token)
        install_store(settings, store_hash, access_token=token)
    db = connect(settings.database.path)
    try:
        with immediate(db):
            StoreRegistry(settings).save_settings(db, store_hash="apptwo", now=1.0, public_key=OWN_PAIR[0], secret_key=OWN_PAIR[1])
    finally:
        db.close()
    sandbox.refersion.add_keys(*OWN_PAIR)
    return settings


def app_bridge(bridge, *args, **changes):
    result = bridge(*args, **{**APP_MODE, **changes})
    for secret in (*APP_TOKENS.values(), OWN_PAIR[1]):
        assert secret not in result.output
    return result


def test_app_stores_are_checked_with_their_own_token_and_key_pair(bridge, sandbox, installed):
    assert app_bridge(bridge, "hooks", "register").exit_code == 0
    sandbox.bigcommerce.requests.clear()
    result = app_bridge(bridge, "check")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"All good: store Sandbox Store {STORE_HASH} ({STORE_HASH}, {STORE_HASH}.sandbox.example), "
        "store Sandbox Store appone (appone, appone.sandbox.example), store Sandbox Store apptwo (apptwo, apptwo.sandbox.example) "
        "readable, 5 hooks active, 6 hooks active, 6 hooks active, Refersion keys accepted, database writable."
    )
    tokens = {STORE_HASH: BC_TOKEN, **APP_TOKENS}
    for store_hash, token in tokens.items():
        sent = sandbox.bigcommerce.calls(rf"^/stores/{store_hash}/")
        assert sent and {request.headers["X-Auth-Token"] for request in sent} == {token}
    pairs = [
        (request.headers["Refersion-Public-Key"], request.headers["Refersion-Secret-Key"])
        for request in sandbox.refersion.calls(r"/v2/affiliate/list", "POST")
    ]
    assert sorted(pairs) == sorted([(REFERSION_PUBLIC, REFERSION_SECRET), OWN_PAIR])  # one probe per pair; appone shares the config's


def test_an_app_store_without_any_key_pair_is_a_problem_not_a_crash(bridge, sandbox, installed):
    changes = {**NO_CONFIGURED_STORE, "refersion_public_key": None, "refersion_secret_key": None}
    assert app_bridge(bridge, "hooks", "register", **changes).exit_code == 0
    result = app_bridge(bridge, "check", **changes)
    assert result.exit_code == 1, result.output
    assert problems(result) == [
        "store appone: No Refersion key pair is set for this store: enter it on the settings page "
        "(or set refersion.public_key and secret_key).",
        "1 problem found.",
    ]


def _revoke_token(sandbox) -> None:
    del sandbox.bigcommerce.stores["appone"].tokens[APP_TOKENS["appone"]]


def _revoke_own_pair(sandbox) -> None:
    sandbox.refersion.remove_keys(*OWN_PAIR)


@pytest.mark.parametrize(
    ("revoke", "line"),
    [
        (
            _revoke_token,
            "store appone: BigCommerce refused the app's access token (401): the store's owner must install the app again "
            "(Apps › My Apps in the control panel) for the bridge to get a new one.",
        ),
        (
            _revoke_own_pair,
            "store apptwo: Refersion refused the store's own key pair (401): copy them again from Refersion › Account › "
            "Settings › Refersion API on the store's settings page.",
        ),
    ],
    ids=["app token", "store's own key pair"],
)
def test_a_refused_app_credential_says_what_the_store_owner_must_do(bridge, sandbox, installed, revoke, line):
    app_bridge(bridge, "hooks", "register")
    revoke(sandbox)
    result = app_bridge(bridge, "check")
    assert result.exit_code == 1
    assert problems(result) == [line, "1 problem found."]


def test_stored_secrets_the_key_cannot_read_are_a_problem_and_the_configured_store_is_still_checked(bridge, sandbox, installed):
    app_bridge(bridge, "hooks", "register")
    result = bridge("check", server_encryption_key=None)
    assert result.exit_code == 1
    assert problems(result) == [
        "The installed stores cannot be checked: the database holds encrypted secrets but server.encryption_key is not set: "
        "set it to the key (or list of keys) they were encrypted with.",
        "1 problem found.",
    ]
    assert sandbox.bigcommerce.calls(rf"^/stores/{STORE_HASH}/v2/store$")


def test_app_mode_with_no_install_yet_checks_the_rest(bridge, sandbox):
    result = app_bridge(bridge, "check", **NO_CONFIGURED_STORE)
    assert result.exit_code == 0, result.output
    assert problems(result) == ["All good: Refersion keys accepted, database writable, no store has installed the app yet."]
    assert not sandbox.bigcommerce.requests


def test_app_credentials_without_an_encryption_key_cannot_store_installs(bridge):
    result = app_bridge(bridge, "check", server_encryption_key=None, **NO_CONFIGURED_STORE)
    assert result.exit_code == 1
    assert problems(result) == [
        "bigcommerce.client_id and bigcommerce.client_secret are set for app installs, but server.encryption_key is not: "
        "installs cannot be stored (their access tokens are kept encrypted with it); generate a key with "
        "`cli keys generate` and set it (BRIDGE_SERVER_ENCRYPTION_KEY).",
        "1 problem found.",
    ]


@pytest.mark.parametrize("public_url", [None, "http://bridge.example.com"])
def test_app_credentials_without_an_https_public_url_cannot_take_the_oauth_redirect(bridge, public_url):
    result = app_bridge(bridge, "check", server_public_url=public_url, **NO_CONFIGURED_STORE)
    assert result.exit_code == 1
    redirect = f"{public_url or '{server.public_url}'}/bigcommerce/auth"
    assert problems(result)[1:] == [
        "bigcommerce.client_id and bigcommerce.client_secret are set for app installs, but server.public_url is not an "
        f"https URL: the OAuth redirect cannot work (BigCommerce sends the installing owner to {redirect}); set it to the "
        "https address of the app's callback URLs in the Developer Portal.",
        "2 problems found.",
    ]
    assert problems(result)[0].startswith("server.public_url")  # the hooks' problem, as in single-store mode


def test_without_app_credentials_nothing_is_said_about_app_installs(bridge):
    bridge("hooks", "register")
    result = bridge("check", server_encryption_key=None)
    assert result.exit_code == 0 and result.output.strip() == ALL_GOOD
