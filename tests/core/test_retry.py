"""Outcome classification and the retry schedule (pure)."""

import pytest

from bridge.core.retry import Action, Failure, RetryPolicy, classify, parse_retry_after
from tests.conftest import T0

SCHEDULE = RetryPolicy((5, 300, 1800))


@pytest.mark.parametrize(
    ("status", "failure", "action", "overloaded"),
    [
        (200, None, Action.DONE, False),
        (201, None, Action.DONE, False),
        (204, None, Action.DONE, False),
        (301, None, Action.DEAD, False),
        (400, None, Action.DEAD, False),
        (401, None, Action.PAUSE, False),
        (403, None, Action.PAUSE, False),
        (404, None, Action.DEAD, False),
        (408, None, Action.RETRY, False),
        (409, None, Action.DEAD, False),
        (410, None, Action.DEAD, False),
        (422, None, Action.DEAD, False),
        (429, None, Action.RETRY, True),
        (500, None, Action.RETRY, False),
        (502, None, Action.RETRY, False),
        (503, None, Action.RETRY, False),
        (504, None, Action.RETRY, False),
        (None, Failure.TIMEOUT, Action.RETRY, True),
        (None, Failure.CONNECTION, Action.RETRY, False),
        (200, Failure.BAD_RESPONSE, Action.RETRY, False),
        (None, Failure.INTERNAL, Action.RETRY, False),
    ],
)
def test_classification_table(status, failure, action, overloaded):
    outcome = classify(status, failure)
    assert (outcome.action, outcome.overloaded) == (action, overloaded)


def test_classify_needs_something_to_classify():
    with pytest.raises(ValueError):
        classify(None)


def test_schedule_steps_and_exhaustion():
    assert [SCHEDULE.delay(n, jitter=0.5) for n in (1, 2, 3, 4)] == [5, 300, 1800, None]


@pytest.mark.parametrize(("jitter", "expected"), [(0.0, 240.0), (0.5, 300.0), (0.999999, 360.0)])
def test_jitter_moves_a_delay_by_at_most_twenty_percent(jitter, expected):
    assert SCHEDULE.delay(2, jitter=jitter) == pytest.approx(expected, abs=0.01)


def test_retry_after_is_honoured_but_capped_by_the_longest_step():
    assert SCHEDULE.delay(1, jitter=0.5, retry_after=120) == 120
    assert SCHEDULE.delay(2, jitter=0.5, retry_after=1) == 300  # never sooner than the schedule
    assert SCHEDULE.delay(1, jitter=0.5, retry_after=10**9) == 1800


def test_overload_waits_at_least_a_minute():
    assert SCHEDULE.delay(1, jitter=0.5, overloaded=True) == 60
    assert SCHEDULE.delay(2, jitter=0.5, overloaded=True) == 300


def test_default_schedule_lasts_about_three_days():
    from bridge.config import DEFAULT_RETRY_SCHEDULE

    days = RetryPolicy(DEFAULT_RETRY_SCHEDULE).total_seconds / 86400
    assert 2.5 < days < 3.5


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("²", None),
        ("٣٠", None),
        ("9" * 5000, None),
    ],
)
def test_retry_after_header_forms(header, seconds):
    assert parse_retry_after(header, T0) == seconds


def test_retry_after_http_date_counts_from_now():
    from email.utils import formatdate

    assert parse_retry_after(formatdate(T0 + 90, usegmt=True), T0) == pytest.approx(90)
    assert parse_retry_after(formatdate(T0 - 90, usegmt=True), T0) == 0.0
