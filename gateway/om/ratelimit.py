"""A per-merchant REST rate limit, and Klarna's ``Retry-After``, shared by a merchant's calls.

Klarna limits the requests each merchant's credentials may send. A nightly ERP batch run
through several gateway processes would otherwise meet that limit all at once: every call
gets 429s, retries them with backoff, and burns its whole retry budget. So every REST
attempt first asks a :class:`RateLimiter` for a slot of its merchant:

- ``rest_rate_limit`` (requests per second) and ``rest_rate_burst`` set a token bucket per
  merchant, kept as one number, its *theoretical arrival time* (GCRA, :func:`take`): a
  request may leave once ``tat - burst × interval`` is reached, and each request pushes
  ``tat`` one interval further. One number means one atomic ``UPDATE … RETURNING`` per
  request when the bucket lives in PostgreSQL (``gateway.store.ratelimit``), shared by every
  process on it; :class:`LocalRateLimiter` keeps the same buckets in memory for a store
  that belongs to one process (SQLite) and for tools.
- A 429 that says ``Retry-After`` *pauses* the merchant: no request of that merchant leaves
  before the pause ends, in this process and (through the store) in the others, instead of
  each call finding the limit again on its own.
- A request still waiting for its slot when a pause begins does not send into the pause:
  its slot went with it, and it takes a new one after the pause (the REST client asks
  :meth:`RateLimiter.paused_for` when its wait ends).
- A slot is only taken if it comes within the caller's budget (``max_wait``); otherwise
  nothing is taken and nothing is sent: the call answers 9119 ("retry the same call") well
  before its client gives up, instead of sending a request its client no longer waits for.

This module is pure apart from the clock it is given; it imports nothing of the store (the
store's limiter implements :class:`RateLimiter`, and the composition root wires it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Protocol

#: The longest pause a ``Retry-After`` may impose (seconds): a garbled or hostile value must
#: not silence a merchant for hours.
MAX_PAUSE_SECONDS: Final = 300.0


@dataclass(frozen=True)
class Limit:
    """A merchant's bucket: ``rate`` requests per second, up to ``burst`` at once."""

    rate: float
    burst: int = 1

    @property
    def interval(self) -> float:
        """Seconds between two requests at the steady rate."""
        return 1.0 / self.rate

    @classmethod
    def of(cls, rate: float, burst: int) -> Limit | None:
        """The limit of a merchant's configuration (None: ``rest_rate_limit = 0``, off)."""
        return cls(rate, max(1, burst)) if rate > 0 else None


@dataclass(frozen=True)
class Slot:
    """A granted request: the bucket's new arrival time and the wait before sending."""

    tat: float
    wait: float


def take(tat: float, paused_until: float, now: float, limit: Limit,
         max_wait: float) -> Slot | None:
    """GCRA: the next slot of a bucket whose theoretical arrival time is ``tat``, or None
    when it would come later than ``now + max_wait`` (then nothing is taken).

    A bucket left alone refills (``tat`` in the past counts as ``now``); a pause pushes the
    first slot to its end and paces the ones after it at the steady rate, so the merchant's
    queued calls do not all leave together the instant it ends. ``gateway.store.ratelimit``
    runs the same arithmetic in SQL; a test holds the two to the same answers.
    """
    interval = limit.interval
    start = max(tat, now, paused_until + (limit.burst - 1) * interval)
    new_tat = start + interval
    send_at = new_tat - limit.burst * interval
    if send_at > now + max_wait:
        return None
    return Slot(new_tat, max(0.0, send_at - now))


class RateLimiter(Protocol):
    """Where a merchant's request slots and pauses are kept (memory, or the store)."""

    async def acquire(self, eid: int, limit: Limit | None, max_wait: float) -> float | None:
        """Take one request slot of ``eid``: the seconds to wait before sending (0: now), or
        None when no slot comes within ``max_wait`` (nothing taken). ``limit`` None: the
        merchant has no rate limit, only a pause is waited for."""
        ...

    async def pause(self, eid: int, seconds: float) -> None:
        """Klarna answered 429 with ``Retry-After``: nothing of ``eid`` before ``seconds``
        from now, in every process that shares this limiter's store. Never raises: a pause
        that cannot be shared is still kept by this process."""
        ...

    def paused_for(self, eid: int) -> float:
        """Seconds left of the pause of ``eid`` this process knows of (0: none)."""
        ...


class LocalRateLimiter:
    """The buckets and pauses of one process, in memory, on its clock."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self._tat: dict[int, float] = {}
        self._paused: dict[int, float] = {}

    def paused_for(self, eid: int) -> float:
        """Seconds left of ``eid``'s pause (0: none)."""
        return max(0.0, self._paused.get(eid, 0.0) - self.clock.seconds())

    def wait_for_pause(self, eid: int, max_wait: float) -> float | None:
        """The wait a request of an unlimited merchant owes its pause (None: too long)."""
        left = self.paused_for(eid)
        return None if left > max_wait else left

    async def acquire(self, eid: int, limit: Limit | None, max_wait: float) -> float | None:
        if limit is None:
            return self.wait_for_pause(eid, max_wait)
        now = self.clock.seconds()
        slot = take(self._tat.get(eid, now), self._paused.get(eid, 0.0), now, limit, max_wait)
        if slot is None:
            return None
        self._tat[eid] = slot.tat
        return slot.wait

    async def pause(self, eid: int, seconds: float) -> None:
        self.note_pause(eid, seconds)

    def note_pause(self, eid: int, seconds: float) -> None:
        """Record a pause of ``seconds`` from now (the longer of it and one already known)."""
        until = self.clock.seconds() + min(max(seconds, 0.0), MAX_PAUSE_SECONDS)
        self._paused[eid] = max(self._paused.get(eid, 0.0), until)
