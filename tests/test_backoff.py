"""The one capped exponential backoff: doubling, cap, reset, jitter bounds, waits that a stop ends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from storage.queue.backoff import Backoff


def test_backoff_doubles_up_to_its_cap() -> None:
    """Delays double from the first one and stop at the cap."""
    backoff = Backoff(first_s=0.5, cap_s=4.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_failures_count_until_a_reset() -> None:
    """Each failure waits longer; a success (reset) brings the first delay back."""
    backoff = Backoff(first_s=0.1, cap_s=0.4)
    assert [backoff.failed() for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    assert backoff.failures == 4
    backoff.reset()
    assert backoff.failed() == 0.1


def test_a_long_failure_streak_stays_at_the_cap() -> None:
    """Thousands of failures in a row (a crash loop for days) never overflow the exponent."""
    backoff = Backoff(first_s=0.5, cap_s=30.0)
    assert backoff.delay(100_000) == 30.0


def test_jitter_stays_within_its_fraction() -> None:
    """With jitter 0.25 every delay lies between 75% and 100% of the plain one."""
    backoff = Backoff(first_s=1.0, cap_s=1.0, jitter=0.25)
    delays = [backoff.failed() for _ in range(200)]
    assert all(0.75 <= delay <= 1.0 for delay in delays)
    assert len(set(delays)) > 1


def test_fresh_copies_the_delays_not_the_failures() -> None:
    """One template, one count per thing that retries on its own."""
    template = Backoff(first_s=0.2, cap_s=1.0)
    template.failed()
    copy = template.fresh()
    assert (copy.first_s, copy.cap_s, copy.failures) == (0.2, 1.0, 0)


async def test_a_wait_ends_when_stop_is_set_and_counts_the_failure() -> None:
    """A stop cuts the wait short, also when the other side asked for a long one (a timedelta)."""
    stop = asyncio.Event()
    stop.set()
    backoff = Backoff(first_s=3600.0, cap_s=3600.0)
    await backoff.wait(stop)
    await backoff.wait(stop, seconds=timedelta(hours=1))
    assert backoff.failures == 2
