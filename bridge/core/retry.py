"""What to do after talking to a remote system: done, retry, pause or dead.

The one place every outcome of an outbound call is classified, for Refersion
deliveries and BigCommerce reads alike, plus the retry schedule. Pure functions.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

JITTER = 0.2  # each delay is moved by up to ±20 % so retries of many items spread out
OVERLOAD_FLOOR = 60.0  # seconds: a 429 or a timeout means the other side is busy


class Action(enum.Enum):
    DONE = "done"
    RETRY = "retry"  # transient: try again later, on the schedule
    PAUSE = "pause"  # our credentials were refused: stop this store, burn no attempts
    DEAD = "dead"  # permanent: retrying cannot help


class Failure(enum.Enum):
    """A call that produced no HTTP status."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BAD_RESPONSE = "bad_response"  # an answer we could not read
    INTERNAL = "internal"  # a bug on our side while handling the item


@dataclass(frozen=True)
class Outcome:
    action: Action
    overloaded: bool = False  # the remote asked us to slow down
    rate_limited: bool = False  # a 429: the caller's quota is spent until the remote's reset time


def classify(status: int | None, failure: Failure | None = None) -> Outcome:
    """Classify one call by its HTTP status, or by how it failed without a usable one."""
    if failure is not None:
        return Outcome(Action.RETRY, overloaded=failure is Failure.TIMEOUT)
    if status is None:
        raise ValueError("classify needs a status or a failure")
    if 200 <= status < 300:
        return Outcome(Action.DONE)
    if status in (401, 403):
        return Outcome(Action.PAUSE)
    if status == 429:
        return Outcome(Action.RETRY, overloaded=True, rate_limited=True)
    if status == 408 or status >= 500:
        return Outcome(Action.RETRY)
    return Outcome(Action.DEAD)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,10}", value):
        return float(value)
    when = parse_http_date(value)
    return None if when is None else max(0.0, when - now)


def parse_http_date(value: str) -> float | None:
    """An HTTP / RFC 2822 date ("Tue, 05 Mar 2019 21:40:11 +0000") as Unix seconds; None when unreadable."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass(frozen=True)
class RetryPolicy:
    """``schedule[n]`` is the wait in seconds before retry n+1; when it runs out, the item is dead."""

    schedule: tuple[float, ...]

    @property
    def total_seconds(self) -> float:
        return float(sum(self.schedule))

    def delay(self, failures: int, *, jitter: float, retry_after: float | None = None, overloaded: bool = False) -> float | None:
        """Seconds until the next attempt after ``failures`` failed attempts, or None when exhausted.

        :param jitter: a number in [0, 1), usually ``random.random()``; 0.5 means no jitter.
        :param retry_after: what the remote asked for; honoured, but never beyond the
            longest step of the schedule, so a remote cannot stall the queue.
        """
        if failures < 1:
            raise ValueError("delay is for after a failure")
        if failures > len(self.schedule):
            return None
        base = float(self.schedule[failures - 1])
        delay = base * (1 - JITTER + 2 * JITTER * jitter)
        if retry_after is not None:
            delay = max(delay, min(retry_after, max(self.schedule)))
        elif overloaded:
            delay = max(delay, min(OVERLOAD_FLOOR, max(self.schedule)))
        return delay
