"""The sandbox's notion of "now", separate from the wall clock so tests can travel in time.

Authorization expiry (28 days), extension caps (180 days) and the 24 h idempotency window
cannot be tested against real time. Every piece of sandbox logic therefore asks a
:class:`SandboxClock` for the time; nothing calls ``datetime.now()`` itself.

The clock ticks with the reactor (``reactor.seconds()``) so a standalone sandbox behaves
like a real service, and tests move it with :meth:`advance` / :meth:`set` or stop it with
:meth:`freeze`. Times are truncated to whole seconds because Klarna's timestamps in the
Order Management examples carry no fractions.

Seeded mode (``[sandbox] seed``) starts the clock **frozen** at :data:`SEEDED_EPOCH`, so two
runs of the same suite see identical timestamps: time then moves only through the control
API (``POST /sandbox/v1/clock``), never with the wall clock.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

#: Where a seeded sandbox's clock starts (and returns to on ``POST /sandbox/v1/reset``).
SEEDED_EPOCH = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix, e.g. ``2015-11-29T10:25:40Z`` (Klarna's form)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; a missing offset is read as UTC.

    Raises:
        ValueError: the text is not an ISO-8601 date-time.
    """
    moment = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class SandboxClock:
    """A controllable UTC clock.

    Args:
        seconds: monotonic-ish source of elapsed seconds, normally ``reactor.seconds``.
            Only differences between two readings are used.
        start: the sandbox time at construction; default the real UTC time, truncated to
            seconds (the single place the wall clock is read).
        frozen: when true the clock does not tick; only :meth:`advance`/:meth:`set` move it.
    """

    def __init__(
        self,
        seconds: Callable[[], float],
        start: datetime | None = None,
        *,
        frozen: bool = False,
    ) -> None:
        if start is None:
            start = datetime.now(UTC).replace(microsecond=0)
        elif start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self._seconds = seconds
        self._base = start.astimezone(UTC)
        self._base_reading = seconds()
        self._frozen = frozen

    @property
    def frozen(self) -> bool:
        return self._frozen

    def now(self) -> datetime:
        """Current sandbox time (UTC, whole seconds)."""
        if self._frozen:
            moment = self._base
        else:
            moment = self._base + timedelta(seconds=self._seconds() - self._base_reading)
        return moment.replace(microsecond=0)

    def set(self, moment: datetime) -> None:
        """Jump to ``moment`` (naive values are UTC); the clock keeps ticking from there."""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        self._base = moment.astimezone(UTC)
        self._base_reading = self._seconds()

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, for negative values) by ``seconds``."""
        self.set(self._current_precise() + timedelta(seconds=seconds))

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or restart) ticking, keeping the current time."""
        self.set(self._current_precise())
        self._frozen = frozen

    def restart(self, moment: datetime, *, frozen: bool) -> None:
        """Jump to ``moment`` and set the frozen state at once (a seeded sandbox's reset)."""
        self.set(moment)
        self._frozen = frozen

    def _current_precise(self) -> datetime:
        if self._frozen:
            return self._base
        return self._base + timedelta(seconds=self._seconds() - self._base_reading)


def http_date(clock: SandboxClock) -> str:
    """The clock's time as an HTTP ``Date`` (``Thu, 01 Jan 2026 12:00:00 GMT``).

    Why every answer carries it: a client reads Klarna's clock from the ``Date`` of Klarna's
    answers (the gateway judges the v2 activation delay and expiring authorizations on it),
    so the sandbox's must follow the sandbox's clock, moved or seeded, never the wall clock.
    """
    return format_datetime(clock.now(), usegmt=True)
