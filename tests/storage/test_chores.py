"""The chores table: scheduling, leased claims, finishing, bringing a chore forward."""

from __future__ import annotations

import pytest

from bridge.storage import chores, stores
from bridge.storage.db import immediate

T = 1_000_000.0


def claim(db, names=("reconcile",), owner="w1", now=T, lease=15.0):
    with immediate(db):
        return chores.claim_due(db, names=list(names), owner=owner, now=now, lease=lease)


def test_a_chore_is_claimed_once_due_and_by_one_worker_at_a_time(db):
    with immediate(db):
        chores.schedule(db, name="reconcile", store_hash="abc", due_at=T + 10)
    assert claim(db) is None  # not due yet
    row = claim(db, now=T + 10)
    assert (row["name"], row["store_hash"], row["state"]) == ("reconcile", "abc", {})
    assert claim(db, owner="w2", now=T + 11) is None  # leased to w1
    assert claim(db, owner="w2", now=T + 10 + 15.1)["lease_owner"] == "w2"  # w1's lease ran out


def test_finishing_records_the_state_and_the_next_time_only_for_the_lease_holder(db):
    with immediate(db):
        chores.schedule(db, name="reconcile", store_hash="abc", due_at=T)
    claim(db)
    with immediate(db):
        assert not chores.finish(db, name="reconcile", store_hash="abc", owner="w2", due_at=T + 900, state={"x": 1}, now=T)
        assert chores.finish(db, name="reconcile", store_hash="abc", owner="w1", due_at=T + 900, state={"until": 5}, now=T, error=None)
    row = chores.find(db, name="reconcile", store_hash="abc")
    assert (row["due_at"], row["state"], row["lease_owner"], row["last_run_at"]) == (T + 900, {"until": 5}, None, T)
    assert claim(db, now=T + 899) is None and claim(db, now=T + 900) is not None


def test_scheduling_again_keeps_the_time_and_bringing_forward_merges_state(db):
    with immediate(db):
        chores.schedule(db, name="reconcile", store_hash="abc", due_at=T + 900)
        chores.schedule(db, name="reconcile", store_hash="abc", due_at=T + 5)
    assert chores.find(db, name="reconcile", store_hash="abc")["due_at"] == T + 900
    with immediate(db):
        chores.bring_forward(db, name="reconcile", store_hash="abc", due_at=T + 60, state={"since": 42})
        chores.bring_forward(db, name="reconcile", store_hash="abc", due_at=T + 600, state={"why": "hook"})
    row = chores.find(db, name="reconcile", store_hash="abc")
    assert (row["due_at"], row["state"]) == (T + 60, {"since": 42, "why": "hook"})


def test_release_and_renew_act_on_the_owners_chores_only(db):
    with immediate(db):
        for store_hash in ("a", "b"):
            chores.schedule(db, name="reconcile", store_hash=store_hash, due_at=T)
    claim(db, owner="w1")
    claim(db, owner="w2")
    with immediate(db):
        assert chores.renew(db, owner="w1", now=T + 10, lease=15.0) == 1
        assert chores.release(db, owner="w2") == 1
    leases = {row["store_hash"]: (row["lease_owner"], row["lease_until"]) for row in chores.all_chores(db)}
    assert leases == {"a": ("w1", T + 25), "b": (None, None)}


def test_an_uninstalled_stores_chores_wait(db, settings):
    from tests.conftest import install_store

    install_store(settings, "gone1")
    with immediate(db):
        chores.schedule(db, name="reconcile", store_hash="gone1", due_at=T)
        stores.uninstall(db, store_hash="gone1", now=T)
    assert claim(db) is None


def test_a_claim_outside_a_transaction_is_a_programming_error(db):
    with pytest.raises(RuntimeError):
        chores.claim_due(db, names=["reconcile"], owner="w1", now=T, lease=15.0)
