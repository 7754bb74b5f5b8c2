"""Delivery reports, kept off the reply's path.

When the edge has written a reply (or found its client gone), the entry's phase must say
so: a delivered reply ends the binding (the next identical call is a new operation), an
undelivered one is replayed to the retry. Writing that report in a transaction of its own
would cost every call a third commit. Reports wait here instead, and the store's next
write in this process carries them (:meth:`Store._run`): a transaction already queued in
the next few milliseconds (:attr:`DeliveryReports.FLUSH_AFTER`: under load, and for a
client's next call, the next call's intent), or one of their own after that, which the
SQLite writer commits together with whatever else is waiting (group commit). Under load
that is one statement in an existing transaction. A read of the journal writes them first.

Nothing is weakened: until its report lands, an entry is ``replying`` and an identical call
waits (and asks for the flush, in this process); a report is applied by compare-and-set on
the delivery token it carries, so it lands at most once and never over a newer change. The
one window every design has is unchanged: a process that dies between writing a reply and
writing its report leaves the entry ``replying``; once its grace lapses the reply counts as
never delivered (a retry is answered with it; a deliberate repeat in that instant would be
too). Journal v1 wrote each report in a transaction of its own after the reply, so the
window was one commit; here it is at most :attr:`DeliveryReports.FLUSH_AFTER` more (5 ms).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from gateway.store.journal import Mark

log = Logger()


class DeliveryReports:
    #: Between a report and its own write when no other write carries it. Long enough for a
    #: client's next call (or, under load, anyone's next transaction) to carry it, short
    #: enough to keep the window above within a few commits.
    FLUSH_AFTER = 0.005

    #: After a failed write (the database is away), retry no sooner than this.
    RETRY_AFTER = 1.0

    def __init__(self, write: Callable[[], Awaitable[Any]], clock: Any) -> None:
        self._write = write
        self._clock = clock
        self._pending: list[Mark] = []
        self._timer: Any = None
        self._failing = False

    def add(self, mark: Mark) -> None:
        self._pending.append(mark)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None and self._pending:
            delay = self.RETRY_AFTER if self._failing else self.FLUSH_AFTER
            self._timer = self._clock.callLater(delay, self._flush_soon)

    def take(self) -> list[Mark]:
        """Every report waiting (the caller's transaction writes them)."""
        marks, self._pending = self._pending, []
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return marks

    def put_back(self, marks: Sequence[Mark]) -> None:
        """A transaction that carried ``marks`` failed: they wait for the next one."""
        self._pending[:0] = marks
        self._schedule()

    async def flush(self) -> None:
        """Write every waiting report now."""
        if self._pending:
            await self._write()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def _flush_soon(self) -> None:
        self._timer = None
        d = defer.ensureDeferred(self.flush())
        d.addCallbacks(self._wrote, self._failed)

    def _wrote(self, _: object) -> None:
        self._failing = False

    def _failed(self, failure: Any) -> None:
        if not self._failing:
            log.failure("writing {n} delivery report(s) failed; retrying every "
                        "{s:.0f} s", failure, n=len(self._pending), s=self.RETRY_AFTER)
        self._failing = True
        self._schedule()
