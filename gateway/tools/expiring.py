"""Authorizations about to lapse: registered reservations whose order Klarna will expire
soon (its ``expires_at``), with the amount still uncaptured.

One implementation for three readers: ``klarna-gateway expiring`` (a cron job that alerts
on exit status 1), the console's expiring page, and the gauge
``klarna_gateway_authorizations_expiring{within}`` that ``serve`` refreshes in the
background (:class:`ExpiryWatch`).

Time left is measured against Klarna's clock: the ``Date`` header of the order's own GET
(the local clock only when that header is missing or unreadable). Klarna decides when an
authorization lapses, so a gateway host whose clock is off, or a seeded sandbox whose clock
is frozen at its epoch, must not shift the answer.

Only reservations that may still hold an authorization are read: last known status
AUTHORIZED or PART_CAPTURED, or none yet (registered without a read). The background
refresher records a final status it reads (CAPTURED, CANCELLED, EXPIRED: an order never
leaves those), so the next round does not read that order again.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, TypeVar

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.config import Config
from gateway.metrics import Metrics
from gateway.model import Reservation
from gateway.om.client import OmClient, OmError, RestResponseError, http_date_seconds

log = Logger()
T = TypeVar("T")

#: Statuses whose order may still lapse (Klarna expires only uncaptured authorizations).
OPEN_STATUSES: Final = ("AUTHORIZED", "PART_CAPTURED")
#: Statuses an order never leaves: a reservation recorded in one is not read again.
FINAL_STATUSES: Final = frozenset({"CAPTURED", "CANCELLED", "EXPIRED"})
#: Orders read from Klarna at once.
CONCURRENCY: Final = 8
#: Seconds one order read may take, retries included.
READ_SECONDS: Final = 10.0
#: The gauge's windows: label → seconds.
GAUGE_WINDOWS: Final = (("1d", 86400.0), ("3d", 3 * 86400.0))
#: Seconds between refreshes of the gauge unless ``[gateway] expiry_check_seconds`` says.
DEFAULT_INTERVAL: Final = 600.0
#: Reservations a background round reads from the store at once.
PAGE_SIZE: Final = 500
#: Unreadable orders a background round keeps to name (the rest are counted).
KEPT_UNREADABLE: Final = 20

_WINDOW = re.compile(r"(\d{1,9})([dhms]?)")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}
_MAX_WINDOW = 366 * 86400


def parse_window(text: str) -> float:
    """``3d``, ``12h``, ``90m``, ``45s`` or plain seconds → seconds.

    Raises:
        ValueError: anything else, zero, or more than a year (no authorization lives
            that long: Klarna caps extensions at 180 days after the purchase).
    """
    m = _WINDOW.fullmatch(text.strip().lower())
    if m is None:
        raise ValueError(f"expected a duration like 3d, 12h, 90m or seconds, got {text!r}")
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if not 0 < seconds <= _MAX_WINDOW:
        raise ValueError(f"must be more than 0 and at most 366d, got {text!r}")
    return float(seconds)


def format_left(seconds: float) -> str:
    """Time left for a human: ``2d 03h``, ``5h 07m``, ``12m``; ``lapsed`` once passed."""
    if seconds <= 0:
        return "lapsed"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    return f"{hours}h {mins:02d}m" if hours else f"{mins}m"


def iso_utc(moment: datetime) -> str:
    """``2026-01-29T12:00:00Z``: ISO-8601 in UTC, Klarna's own form."""
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """An ISO-8601 timestamp (a missing offset is UTC). Raises ValueError."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def klarna_time(headers: Mapping[str, str], fallback: float) -> float:
    """Klarna's time of an answer (its ``Date`` header), else ``fallback``."""
    moment = http_date_seconds(headers.get("date"))
    return fallback if moment is None else moment


def om_error_text(e: OmError) -> str:
    """One line saying why an order could not be read."""
    if isinstance(e, RestResponseError):
        return f"Klarna answered HTTP {e.status} {e.error_code or ''}".rstrip()
    return f"Klarna did not answer ({e})"


@dataclass(frozen=True)
class Expiring:
    """An authorization with money uncaptured and the time Klarna gives it."""

    reservation: Reservation
    status: str
    remaining: int  # remaining_authorized_amount, minor units
    currency: str
    expires_at: str  # ISO-8601 UTC
    seconds_left: float  # negative once passed (Klarna has not marked it EXPIRED yet)

    @property
    def days_left(self) -> float:
        return self.seconds_left / 86400

    def to_json(self) -> dict[str, Any]:
        r = self.reservation
        return {"eid": r.eid, "rno": r.rno, "order_id": r.order_id, "status": self.status,
                "remaining_authorized_amount": self.remaining, "currency": self.currency,
                "expires_at": self.expires_at, "seconds_left": int(self.seconds_left),
                "time_left": format_left(self.seconds_left)}


@dataclass(frozen=True)
class Unreadable:
    reservation: Reservation
    reason: str


@dataclass(frozen=True)
class Scan:
    """What one pass over the reservations found."""

    #: Every authorization with money uncaptured, soonest lapse first.
    open: tuple[Expiring, ...]
    unreadable: tuple[Unreadable, ...]
    #: Reservations whose order Klarna holds in a final status (the store's is stale).
    final: tuple[tuple[Reservation, str], ...]
    checked: int

    def within(self, seconds: float) -> list[Expiring]:
        return [e for e in self.open if e.seconds_left <= seconds]


def expiring_item(res: Reservation, order: Mapping[str, Any], now: float) -> Expiring | None:
    """The order's authorization if it can still lapse (open status, money uncaptured).

    Raises:
        ValueError: an open order whose ``expires_at`` is missing or unreadable.
    """
    status, remaining = order.get("status"), order.get("remaining_authorized_amount")
    if status not in OPEN_STATUSES:
        return None
    if not isinstance(remaining, int) or isinstance(remaining, bool) or remaining <= 0:
        return None
    expires = order.get("expires_at")
    if not isinstance(expires, str):
        raise ValueError("the order has no expires_at")
    try:
        at = parse_iso(expires)
    except ValueError:
        raise ValueError(f"unreadable expires_at {expires!r}") from None
    return Expiring(res, str(status), remaining, str(order.get("purchase_currency") or ""),
                    iso_utc(at), at.timestamp() - now)


async def bounded(items: Sequence[Any],
                  fn: Callable[[Any], Coroutine[defer.Deferred[Any], Any, T]],
                  concurrency: int) -> list[T]:
    """``fn`` over ``items``, at most ``concurrency`` at a time, results in order.

    ``concurrency`` workers take the next item as they finish one, so only that many
    coroutines exist at any moment (not one per item waiting on a semaphore: over tens of
    thousands of reservations that was a lasting step in the process's RSS). The first
    error stops the workers from taking more items and is raised once they are done."""
    results: list[Any] = [None] * len(items)
    queue = iter(range(len(items)))
    errors: list[BaseException] = []

    async def worker() -> None:
        for i in queue:
            if errors:
                return
            try:
                results[i] = await fn(items[i])
            except BaseException as e:  # noqa: BLE001 - handed to the caller below
                errors.append(e)
                return

    workers = [defer.ensureDeferred(worker()) for _ in range(max(1, min(concurrency,
                                                                        len(items))))]
    await defer.gatherResults(workers, consumeErrors=True)
    if errors:
        raise errors[0]
    return results


async def scan(config: Config, om: OmClient, reservations: Sequence[Reservation], clock: Any,
               *, concurrency: int = CONCURRENCY, read_seconds: float = READ_SECONDS) -> Scan:
    """Read each reservation's order (GET only) and sort out what may lapse."""
    async def one(res: Reservation) -> Expiring | Unreadable | tuple[Reservation, str] | None:
        merchant = config.merchant(res.eid)
        if merchant is None:
            return Unreadable(res, f"eid {res.eid} is not configured")
        try:
            order = await om.get_order(merchant, res.order_id,
                                       deadline=clock.seconds() + read_seconds)
            status = order.get("status")
            if status in FINAL_STATUSES:
                return res, str(status)
            now = order.klarna_time
            return expiring_item(res, order, clock.seconds() if now is None else now)
        except OmError as e:
            return Unreadable(res, om_error_text(e))
        except ValueError as e:
            return Unreadable(res, str(e))

    results = await bounded(reservations, one, concurrency)
    items = sorted((r for r in results if isinstance(r, Expiring)),
                   key=lambda e: (e.seconds_left, e.reservation.eid, e.reservation.rno))
    return Scan(open=tuple(items),
                unreadable=tuple(r for r in results if isinstance(r, Unreadable)),
                final=tuple(r for r in results if isinstance(r, tuple)),
                checked=len(reservations))


class ExpiryWatch:
    """``serve``'s background refresh of ``klarna_gateway_authorizations_expiring{within}``.

    Never in a call's path: every ``interval`` seconds a round reads the reservations that
    may still hold an authorization, :data:`PAGE_SIZE` at a time from the store, and their
    orders, at most :data:`CONCURRENCY` at a time. A round still running when the next is
    due is left to finish (that tick is skipped). A round that fails, or reads no order at all, logs one
    line and leaves the gauge as it was; orders Klarna did not answer for are left out of
    the count (a lower bound) and named in one line.
    """

    def __init__(self, config: Config, store: Any, om: OmClient, metrics: Metrics,
                 clock: Any, *, concurrency: int = CONCURRENCY,
                 read_seconds: float = READ_SECONDS) -> None:
        self.config = config
        self.store = store
        self.om = om
        self.metrics = metrics
        self.clock = clock
        self.concurrency = concurrency
        self.read_seconds = read_seconds
        self.last: Scan | None = None
        self.skipped = 0
        self._loop: task.LoopingCall | None = None
        self._round: defer.Deferred[Scan | None] | None = None

    @property
    def running(self) -> bool:
        return self._round is not None and not self._round.called

    def start(self, interval: float) -> None:
        """A round now, then every ``interval`` seconds."""
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(interval, now=True)

    def stop(self) -> None:
        """No more rounds; the one running is cancelled (it only reads)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._round is not None and not self._round.called:
            self._round.cancel()

    def _tick(self) -> None:
        if self.running:
            self.skipped += 1
            log.debug("expiry check still running: this round is skipped")
            return
        self._begin()

    def _begin(self) -> None:
        self._round = defer.ensureDeferred(self._run())
        self._round.addErrback(self._failed)

    async def refresh(self) -> Scan | None:
        """A round that starts now, or right after the one running (tests, operators);
        its scan, or None if it failed."""
        while self._round is not None and not self._round.called:
            await _follow(self._round)
        self._begin()
        assert self._round is not None
        return await _follow(self._round)

    async def _run(self) -> Scan:
        """One round, a page of reservations at a time: the process holds one page and
        what the gauge needs (the authorizations within its widest window), never every
        open reservation and its order at once."""
        widest = max(seconds for _, seconds in GAUGE_WINDOWS)
        soon: list[Expiring] = []
        final: list[tuple[Reservation, str]] = []
        unreadable: list[Unreadable] = []
        checked = unread = after = 0
        while page := await self.store.list_open_reservations(
                OPEN_STATUSES, after_id=after, limit=PAGE_SIZE):
            after = page[-1].id
            found = await scan(self.config, self.om, page, self.clock,
                               concurrency=self.concurrency, read_seconds=self.read_seconds)
            checked += found.checked
            unread += len(found.unreadable)
            unreadable.extend(found.unreadable[:KEPT_UNREADABLE - len(unreadable)])
            soon.extend(found.within(widest))
            final.extend(found.final)
        if checked and unread == checked:
            u = unreadable[0]
            raise RuntimeError(f"no order of {checked} could be read (eid "
                               f"{u.reservation.eid} rno {u.reservation.rno}: {u.reason})")
        soon.sort(key=lambda e: (e.seconds_left, e.reservation.eid, e.reservation.rno))
        result = Scan(open=tuple(soon), unreadable=tuple(unreadable), final=tuple(final),
                      checked=checked)
        for label, seconds in GAUGE_WINDOWS:
            self.metrics.expiring_authorizations(label, len(result.within(seconds)))
        if unread:
            u = unreadable[0]
            log.warn("expiring authorizations: {n} of {total} orders not read, counted "
                     "without them (eid {eid} rno {rno}: {why})", n=unread,
                     total=checked, eid=u.reservation.eid, rno=u.reservation.rno,
                     why=u.reason)
        for res, status in final:
            await self.store.set_reservation_status(res.id, status)
        self.last = result
        return result

    @staticmethod
    def _failed(f: Any) -> None:
        if not f.check(defer.CancelledError):
            log.warn("expiring authorizations not refreshed: {e}",
                     e=f"{f.type.__name__}: {f.getErrorMessage()}")
        return None


def _follow(d: defer.Deferred[T]) -> defer.Deferred[T]:
    """A Deferred firing with ``d``'s result, leaving ``d``'s chain untouched."""
    follower: defer.Deferred[T] = defer.Deferred()

    def relay(result: Any) -> Any:
        follower.callback(result)
        return result
    d.addBoth(relay)
    return follower
