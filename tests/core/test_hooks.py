"""What hooks should exist against what exists: the pure comparison behind check and register."""

from bridge.core.hooks import (
    HEADER,
    INACTIVE,
    MISSING,
    OK,
    WRONG_DESTINATION,
    WRONG_HEADER,
    compare,
    destination_for,
    is_ours,
    repair,
    wanted_scopes,
)

DEST = "https://bridge.example.com/webhooks/bigcommerce"
SECRET = "whsec-test-0123456789-abcdefghij"


def hook(id, scope, destination=DEST, active=True, headers=None):
    headers = {HEADER: SECRET} if headers is None else headers
    return {"id": id, "scope": scope, "destination": destination, "is_active": active, "headers": headers}


def test_the_wanted_scopes_are_those_the_pipeline_handles():
    assert wanted_scopes() == (
        "store/order/statusUpdated",
        "store/order/created",
        "store/order/updated",
        "store/order/refund/created",
        "store/cart/converted",
    )
    assert wanted_scopes(app=True)[-1] == "store/app/uninstalled"
    assert destination_for("https://bridge.example.com/") == DEST


def test_each_scope_is_ok_missing_inactive_wrong_destination_or_wrong_header():
    scopes = ("a", "b", "c", "d", "e")
    hooks = [
        hook(1, "a"),
        hook(2, "c", active=False),
        hook(3, "d", destination="https://old.example.com/webhooks/bigcommerce"),
        hook(4, "e", headers={HEADER: "another-secret-value"}),
    ]
    states = compare(scopes, DEST, SECRET, hooks)
    expected = [("a", OK), ("b", MISSING), ("c", INACTIVE), ("d", WRONG_DESTINATION), ("e", WRONG_HEADER)]
    assert [(s.scope, s.status) for s in states] == expected
    assert [s.hook["id"] if s.hook else None for s in states] == [1, None, 2, 3, 4]


def test_a_hook_neither_at_our_destination_nor_with_our_header_is_not_ours():
    foreign = hook(9, "a", destination="https://other.example.com/hooks", headers={})
    assert not is_ours(foreign, DEST, SECRET)
    assert compare(("a",), DEST, SECRET, [foreign])[0].status == MISSING


def test_the_header_name_is_case_insensitive_and_other_headers_are_kept_on_repair():
    assert compare(("a",), DEST, SECRET, [hook(1, "a", headers={"x-bridge-token": SECRET})])[0].ok
    state = compare(("a",), DEST, SECRET, [hook(1, "a", headers={"x-bridge-token": "stale-value-12345", "X-Other": "1"})])[0]
    assert repair(state, DEST, SECRET) == {"headers": {"X-Other": "1", HEADER: SECRET}}


def test_several_problems_are_all_repaired_in_one_change():
    state = compare(("a",), DEST, SECRET, [hook(1, "a", destination="https://old.example.com/webhooks/bigcommerce", active=False)])[0]
    assert state.problems == (WRONG_DESTINATION, INACTIVE)
    assert repair(state, DEST, SECRET) == {"destination": DEST, "is_active": True}


def test_of_several_hooks_of_ours_the_one_needing_least_repair_serves_the_scope():
    hooks = [hook(1, "a", destination="https://old.example.com/webhooks/bigcommerce"), hook(2, "a", active=False), hook(3, "a")]
    state = compare(("a",), DEST, SECRET, hooks)[0]
    assert state.ok and state.hook["id"] == 3
    assert compare(("a",), DEST, SECRET, hooks[:2])[0].hook["id"] == 2


def test_no_hooks_means_every_scope_is_missing():
    assert {s.status for s in compare(wanted_scopes(), DEST, SECRET, [])} == {MISSING}
