"""Which OAuth scopes an app install needs (bridge/core/scopes.py)."""

from bridge.core.scopes import RECOMMENDED, REQUIRED, missing


def test_orders_read_is_required_and_the_modify_scope_covers_it():
    assert [need.scope for need in missing("")] == ["store_v2_orders_read_only"]
    assert missing("store_v2_orders_read_only") == []
    assert missing(["store_v2_orders"]) == []
    assert [need.scope for need in missing("store_v2_information_read_only store_v2_marketing")] == ["store_v2_orders_read_only"]


def test_recommended_scopes_are_named_with_why_and_marketing_must_modify():
    assert [need.scope for need in missing("", RECOMMENDED)] == [
        "store_v2_transactions_read_only",
        "store_v2_information_read_only",
        "store_v2_marketing",
    ]
    assert [need.scope for need in missing("store_v2_marketing_read_only store_v2_transactions", RECOMMENDED)] == [
        "store_v2_information_read_only",
        "store_v2_marketing",
    ]
    assert all(need.why and need.name != need.scope for need in (*REQUIRED, *RECOMMENDED))
