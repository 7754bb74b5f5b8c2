"""Delivery reports, kept off the reply's path.

When the edge has written a reply (or found its client gone), the entry's phase must say
so: a delivered reply ends the binding (the next identical call is a new operation), an
undelivered one is replayed to the retry. Writing that report in a transaction of its own
would cost every call a third commit. Reports wait here instead and the process's next
journal transaction carries them; when none comes within :attr:`FLUSH_AFTER` seconds
(an idle gateway), they are written on their own.

Nothing is weakened: until its report lands, an entry is ``replying`` and an identical call
waits (and asks for the flush, in this process); a report is applied by compare-and-set on
the delivery token it carries, so it lands at most once and never over a newer change.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.logger import Logger

from gateway.store.journal import Mark

log = Logger()
T = TypeVar("T")


class DeliveryReports:
    #: At most this long between a report and its write, when no other write carries it.
    FLUSH_AFTER = 0.02

    def __init__(self, write: Callable[[Sequence[Mark]], Awaitable[Any]], clock: Any) -> None:
        self._write = write
        self._clock = clock
        self._pending: list[Mark] = []
        self._timer: Any = None

    def add(self, mark: Mark) -> None:
        self._pending.append(mark)
        if self._timer is None:
            self._timer = self._clock.callLater(self.FLUSH_AFTER, self._flush_soon)

    def take(self) -> list[Mark]:
        """Every report waiting (the caller's transaction writes them)."""
        marks, self._pending = self._pending, []
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return marks

    def put_back(self, marks: Sequence[Mark]) -> None:
        """A transaction that carried ``marks`` failed: they wait for the next one."""
        for mark in marks:
            self.add(mark)

    async def carry(self, write: Callable[[Sequence[Mark]], Awaitable[T]]) -> T:
        """Run ``write`` with the waiting reports; they wait again if it fails."""
        marks = self.take()
        try:
            return await write(marks)
        except BaseException:
            self.put_back(marks)
            raise

    async def flush(self) -> None:
        """Write every waiting report now."""
        if self._pending:
            await self.carry(self._write)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def _flush_soon(self) -> None:
        self._timer = None
        d = defer.ensureDeferred(self.flush())
        d.addErrback(lambda f: log.failure("writing delivery reports failed; retrying", f))
