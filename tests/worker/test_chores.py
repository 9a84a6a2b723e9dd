"""The worker's chore runner: chores run per store on their interval, remember their state,
retry after a failure, and turn BigCommerce's 429 and 401 into a hold and a pause."""

from __future__ import annotations

import pytest

from bridge.clients.bigcommerce import BigCommerceError
from bridge.storage import chores as chore_rows
from bridge.storage import pauses
from bridge.storage.db import immediate
from bridge.worker import chores
from tests.conftest import STORE_HASH


@pytest.fixture
def runs(monkeypatch):
    """One test chore every 100 s per store; it records its calls and does what ``runs.next`` says."""
    calls = Calls()

    def run(ctx, store, state):
        calls.append((store.store_hash, dict(state)))
        action = calls_next.pop(0) if calls_next else None
        if isinstance(action, Exception):
            raise action
        return {"count": state.get("count", 0) + 1}

    calls_next: list = []
    monkeypatch.setattr(chores, "CHORES", [chores.Chore("test-chore", per_store=True, interval=lambda settings: 100.0, run=run)])
    calls.next = calls_next
    return calls


class Calls(list):
    """The runs seen; ``next`` lists what the coming runs do (an exception to raise, or None)."""

    next: list


def test_a_chore_runs_one_interval_after_it_is_scheduled_then_on_its_interval_with_its_state(worker, clock, runs):
    worker.run_until_idle()
    assert runs == []
    clock.advance(100)
    worker.run_until_idle()
    clock.advance(100)
    worker.run_until_idle()
    assert runs == [(STORE_HASH, {}), (STORE_HASH, {"count": 1})]


def test_a_failed_run_is_retried_sooner_and_keeps_the_state(worker, clock, runs, db):
    worker.run_until_idle()
    runs.next.append(RuntimeError("boom"))
    clock.advance(100)
    worker.run_until_idle()
    row = chore_rows.find(db, name="test-chore", store_hash=STORE_HASH)
    assert row["last_error"] == "internal error: RuntimeError" and row["state"] == {}
    assert row["due_at"] == pytest.approx(clock.now + chores.RETRY_SECONDS)
    clock.advance(chores.RETRY_SECONDS)
    worker.run_until_idle()
    assert len(runs) == 2 and chore_rows.find(db, name="test-chore", store_hash=STORE_HASH)["state"] == {"count": 1}


def test_a_rate_limit_holds_the_store_and_a_refused_token_pauses_it(worker, clock, runs, db):
    worker.run_until_idle()
    runs.next.append(BigCommerceError("429", status=429, retry_after=90.0))
    clock.advance(100)
    worker.run_until_idle()
    hold = pauses.find_hold(db, store_hash=STORE_HASH, service="bigcommerce")
    assert hold["until"] == pytest.approx(clock.now + 90)
    assert chore_rows.find(db, name="test-chore", store_hash=STORE_HASH)["due_at"] == pytest.approx(clock.now + 90)
    runs.next.append(BigCommerceError("401", status=401))
    clock.advance(90)
    worker.run_until_idle()
    assert [row["service"] for row in pauses.pauses(db)] == ["bigcommerce"]


def test_two_workers_never_run_one_chore_at_once(make_worker, clock, runs, db):
    first, second = make_worker(), make_worker()
    first.run_until_idle()
    clock.advance(100)
    with immediate(db):
        claimed = chore_rows.claim_due(db, names=["test-chore"], owner=first.owner, now=clock.now, lease=15.0)
    assert claimed is not None
    second.run_until_idle()
    first.run_until_idle()
    assert runs == []  # held by the first worker's lease
