"""The rate limit's arithmetic (GCRA) and the in-memory limiter, on a fake clock.

The guarantee a merchant relies on: with ``rest_rate_limit = r`` and ``rest_rate_burst = b``
no half-open window of ``w`` seconds ever sees more than ``b + ceil(w·r) − 1`` requests
leave, however the calls arrive; a refused slot takes nothing; a ``Retry-After`` pause
holds every call of that merchant (and only that merchant) until it ends.
"""
from __future__ import annotations

import math

import pytest_twisted
from hypothesis import given, settings, strategies as st
from twisted.internet import task

from gateway.om.ratelimit import MAX_PAUSE_SECONDS, Limit, LocalRateLimiter, take


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


@settings(max_examples=200, deadline=None)
@given(rate=st.sampled_from([0.5, 1.0, 3.0, 20.0, 100.0]), burst=st.integers(1, 10),
       gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=150),
       waits=st.lists(st.floats(0, 8), min_size=1, max_size=150))
def test_no_window_sees_more_than_the_limit(rate: float, burst: int, gaps: list[float],
                                            waits: list[float]) -> None:
    limit = Limit(rate, burst)
    tat, now, sent = 0.0, 1000.0, []
    for i, gap in enumerate(gaps):
        now += gap
        max_wait = waits[i % len(waits)]
        slot = take(tat, 0.0, now, limit, max_wait)
        if slot is None:
            # refused only when the slot really was too far away; nothing taken
            assert max(tat, now) + limit.interval - burst * limit.interval > now + max_wait
            continue
        assert 0.0 <= slot.wait <= max_wait
        tat = slot.tat
        sent.append(now + slot.wait)
    for window in (1.0, 5.0, 60.0):
        # a small tolerance for float rounding at the window's edge
        assert _max_in_window(sent, window - 1e-6) <= burst + math.ceil(window * rate) - 1


def test_steady_rate_and_burst() -> None:
    """At 20/s with burst 1 a queue of 100 requests leaves 50 ms apart; with burst 5 the
    first five leave at once, then the steady rate."""
    paced = []
    tat = 0.0
    for _ in range(100):
        slot = take(tat, 0.0, 10.0, Limit(20.0), 60.0)
        assert slot is not None
        tat = slot.tat
        paced.append(round(slot.wait, 6))
    assert paced[:3] == [0.0, 0.05, 0.1] and paced[-1] == 4.95
    tat, bursty = 0.0, []
    for _ in range(7):
        slot = take(tat, 0.0, 10.0, Limit(20.0, 5), 60.0)
        assert slot is not None
        tat = slot.tat
        bursty.append(round(slot.wait, 6))
    assert bursty == [0.0] * 5 + [0.05, 0.1]


@pytest_twisted.ensureDeferred
async def test_local_limiter_refuses_beyond_the_budget_and_takes_nothing() -> None:
    clock = task.Clock()
    clock.advance(1000)
    limiter = LocalRateLimiter(clock)
    one_per_second = Limit(1.0)
    assert await limiter.acquire(1234, one_per_second, 0.5) == 0.0
    assert await limiter.acquire(1234, one_per_second, 0.5) is None  # next slot in 1 s
    assert await limiter.acquire(1234, one_per_second, 2.0) == 1.0  # the refusal took nothing
    assert await limiter.acquire(5678, one_per_second, 0.0) == 0.0  # another merchant's bucket
    assert await limiter.acquire(5678, None, 0.0) == 0.0  # no limit, no pause: never waits
    clock.advance(10)
    assert await limiter.acquire(1234, one_per_second, 0.0) == 0.0  # refilled


@pytest_twisted.ensureDeferred
async def test_a_pause_holds_the_merchant_limited_or_not() -> None:
    clock = task.Clock()
    clock.advance(1000)
    limiter = LocalRateLimiter(clock)
    await limiter.pause(1234, 3.0)
    assert await limiter.acquire(1234, None, 1.0) is None
    assert await limiter.acquire(1234, None, 5.0) == 3.0
    assert await limiter.acquire(5678, None, 0.0) == 0.0
    # a limited merchant: its first slot at the pause's end, the next ones paced after it
    await limiter.pause(4321, 2.0)
    waits = [await limiter.acquire(4321, Limit(10.0, 3), 10.0) for _ in range(3)]
    assert [round(w, 6) for w in waits if w is not None] == [2.0, 2.1, 2.2]
    # a shorter pause never shortens a longer one; a huge one is capped
    await limiter.pause(1234, 1.0)
    assert limiter.paused_for(1234) == 3.0
    await limiter.pause(1234, 1e9)
    assert limiter.paused_for(1234) == MAX_PAUSE_SECONDS
