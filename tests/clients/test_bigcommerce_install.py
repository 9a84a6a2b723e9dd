"""The app-install half of the BigCommerce client against the sandbox: the OAuth token exchange
(``exchange_code``) and hook registration (``BigCommerceClient.register_hooks``)."""

import socket

import pytest

from bridge.clients.bigcommerce import CREATED, FAILED, FINE, REPAIRED, BigCommerceClient, BigCommerceError, exchange_code
from bridge.core.hooks import HEADER, WRONG_HEADER, wanted_scopes
from bridge.core.retry import Failure
from bridge.sandbox._server import json_response
from tests.conftest import BC_TOKEN, STORE_HASH, WEBHOOK_SECRET

APP_STORE = "app456"
CALLBACK = "https://bridge.example.com/bigcommerce/auth"
DESTINATION = "https://bridge.example.com/webhooks/bigcommerce"
SCOPES = "store_v2_orders_read_only store_v2_information_read_only"


@pytest.fixture
def exchange(bigcommerce):
    bigcommerce.add_store(APP_STORE)

    def run(code: str | None = None, **changes):
        options = {
            "login_url": bigcommerce.url,
            "client_id": bigcommerce.client_id,
            "client_secret": bigcommerce.client_secret,
            "code": code or bigcommerce.issue_code(APP_STORE, SCOPES, redirect_uri=CALLBACK),
            "scope": SCOPES,
            "store_hash": APP_STORE,
            "redirect_uri": CALLBACK,
            "timeout": 2.0,
        }
        return exchange_code(**{**options, **changes})

    return run


def test_a_code_becomes_the_stores_token_with_its_scopes_and_users(exchange, bigcommerce):
    token = exchange()
    assert token["store_hash"] == APP_STORE
    assert token["access_token"] in bigcommerce.stores[APP_STORE].tokens
    assert token["scopes"] == SCOPES.split()
    assert token["user"] == token["owner"] == {"id": 9_876_543, "email": "owner@example.com"}
    (sent,) = bigcommerce.recorded("/oauth2/token", "POST")
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_another_user_than_the_owner_is_told_apart(exchange, bigcommerce):
    code = bigcommerce.issue_code(APP_STORE, SCOPES, user_id=77, user_email="clerk@shop.test", owner={"id": 5, "email": "boss@shop.test"})
    token = exchange(code)
    assert (token["user"]["id"], token["owner"]["id"]) == (77, 5)


def refused(run, **changes) -> BigCommerceError:
    with pytest.raises(BigCommerceError) as caught:
        run(**changes)
    return caught.value


def test_a_refusal_carries_the_status_and_the_login_servers_words_but_never_the_code(exchange, bigcommerce):
    code = "code-echoed-back-0123456789"
    bigcommerce.fail_next(400, body={"error": f"Invalid authorization code {code}"}, path="^/oauth2/token$")
    error = refused(exchange, code=code)
    assert (error.status, error.failure) == (400, None)
    assert error.detail == "Invalid authorization code …"
    assert code not in str(error)


def test_wrong_client_credentials_are_a_401(exchange, bigcommerce):
    secret = "a-wrong-client-secret-0123456789abcdef"
    error = refused(exchange, client_secret=secret)
    assert error.status == 401 and "Invalid client id or secret" in error.detail
    assert secret not in str(error) + error.detail


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("<html>not json</html>", "the answer is not a JSON object"),
        ([1, 2], "the answer is not a JSON object"),
        ({"access_token": "", "scope": SCOPES, "context": f"stores/{APP_STORE}", "user": {"id": 1}, "owner": {"id": 1}}, "access_token"),
        ({"access_token": "t", "scope": SCOPES, "context": f"stores/{APP_STORE}", "user": {"id": True}, "owner": {"id": 1}}, "user"),
        ({"access_token": "t", "scope": SCOPES, "context": f"stores/{APP_STORE}", "user": {"id": "7"}, "owner": {"id": 1}}, "user"),
        ({"access_token": "t", "scope": SCOPES, "context": "stores/zzz999", "user": {"id": 1}, "owner": {"id": 1}}, "stores/zzz999"),
    ],
    ids=["not-json", "a-list", "empty-token", "boolean-user", "string-user", "another-store"],
)
def test_an_answer_that_cannot_be_used_is_a_bad_response(exchange, bigcommerce, body, detail):
    if isinstance(body, str):
        bigcommerce.fail_next(200, body=body, path="^/oauth2/token$")
    else:
        bigcommerce.respond_next(lambda request: json_response(body), path="^/oauth2/token$")
    error = refused(exchange)
    assert error.failure is Failure.BAD_RESPONSE
    assert detail in error.detail


def test_a_slow_login_server_is_a_timeout(exchange, bigcommerce):
    bigcommerce.slow_next(1.0, path="^/oauth2/token$")
    error = refused(exchange, timeout=0.2)
    assert error.failure is Failure.TIMEOUT and error.detail == "no answer within 0.2 s"


def test_an_unreachable_login_server_is_a_connection_failure(exchange):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    error = refused(exchange, login_url=f"http://127.0.0.1:{port}")
    assert error.failure is Failure.CONNECTION and "Connection refused" in error.detail


# --- register_hooks ---------------------------------------------------------------------------------


@pytest.fixture
def client(bigcommerce):
    made = BigCommerceClient(api_url=bigcommerce.url, store_hash=STORE_HASH, access_token=BC_TOKEN, timeout=2.0)
    yield made
    made.close()


def test_register_creates_then_finds_fine_then_repairs(client, bigcommerce):
    scopes = wanted_scopes(app=True)
    heard = []
    first = client.register_hooks(scopes, DESTINATION, WEBHOOK_SECRET, report=heard.append)
    assert [result.action for result in first] == [CREATED] * len(scopes) and heard == first
    assert all(hook["headers"] == {HEADER: WEBHOOK_SECRET} for hook in bigcommerce.hooks())

    assert [result.action for result in client.register_hooks(scopes, DESTINATION, WEBHOOK_SECRET)] == [FINE] * len(scopes)
    hook_id = bigcommerce.hooks()[0]["id"]
    client.update_hook(hook_id, headers={HEADER: "an-old-secret-0123456789"})
    third = client.register_hooks(scopes, DESTINATION, WEBHOOK_SECRET)
    assert [(result.action, result.problems) for result in third if result.hook.get("id") == hook_id] == [(REPAIRED, (WRONG_HEADER,))]
    assert len(bigcommerce.hooks()) == len(scopes)


def test_a_hook_refused_alone_is_a_failed_result_and_the_others_go_on(client, bigcommerce):
    bigcommerce.fail_next(422, body={"status": 422, "title": "Nope"}, path="/v3/hooks$", method="POST")
    results = client.register_hooks(wanted_scopes(), DESTINATION, WEBHOOK_SECRET)
    assert [result.action for result in results] == [FAILED] + [CREATED] * (len(results) - 1)
    assert results[0].error.status == 422 and not results[0].ok


def test_a_failure_every_hook_would_meet_stops_after_reporting_the_results_so_far(client, bigcommerce):
    scopes = wanted_scopes()
    client.create_hook(scope=scopes[0], destination=DESTINATION, headers={HEADER: WEBHOOK_SECRET})
    bigcommerce.fail_next(401, path="/v3/hooks$", method="POST")
    heard = []
    with pytest.raises(BigCommerceError) as caught:
        client.register_hooks(scopes, DESTINATION, WEBHOOK_SECRET, report=heard.append)
    assert caught.value.status == 401
    assert [(result.scope, result.action) for result in heard] == [(scopes[0], FINE)]
    assert len(bigcommerce.hooks()) == 1


def test_calls_go_through_the_given_call(client, bigcommerce):
    seen = []

    def call(what):
        seen.append(what)
        return what()

    client.register_hooks(wanted_scopes(), DESTINATION, WEBHOOK_SECRET, call=call)
    assert len(seen) == 1 + len(wanted_scopes())  # the list, then one create per scope
