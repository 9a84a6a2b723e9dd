"""A store's quota as every client of it in one worker counts it, requests in flight included."""

from __future__ import annotations

from bridge.clients.bigcommerce import QUOTA_RESERVE, QuotaGate


def test_requests_in_flight_count_against_what_the_latest_answer_left():
    gate = QuotaGate()
    assert gate.enter(0.0) == 0.0  # nothing known yet: go
    gate.leave(left=5, reset=10.0, now=1.0)  # the window ends at 11.0
    for _ in range(5 - QUOTA_RESERVE):  # four may be in flight at once: the reserve stays unspent
        assert gate.enter(1.0) == 0.0
    assert gate.enter(1.0) == 10.0 + 0.001  # one more would leave less than the reserve: wait for the reset


def test_an_answer_that_reaches_the_reserve_stops_every_client_until_the_window_resets():
    gate = QuotaGate()
    gate.enter(0.0)
    gate.leave(left=QUOTA_RESERVE, reset=2.0, now=0.5)
    assert gate.enter(1.0) > 1.4
    assert gate.enter(2.6) == 0.0  # a fresh window


def test_answers_of_one_window_arriving_out_of_order_keep_the_least_left():
    gate = QuotaGate()
    for _ in range(3):
        gate.enter(0.0)
    gate.leave(left=7, reset=5.0, now=0.1)
    gate.leave(left=9, reset=4.9, now=0.2)  # sent earlier, answered later: not more quota
    assert gate.left == 7
    gate.leave(left=150, reset=30.0, now=6.0)  # the next window
    assert gate.left == 150


def test_an_answer_without_quota_headers_only_ends_its_request():
    gate = QuotaGate()
    gate.enter(0.0)
    gate.leave(left=None, reset=None, now=0.1)
    assert (gate.in_flight, gate.left) == (0, None)
