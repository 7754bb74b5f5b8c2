"""An arriving call (:class:`Ticket`), and a runner's hold on its journal entry (:class:`Held`).

The ticket is everything that identifies the call, worked out once: its fingerprint, its
JSON as the journal stores it (one encoding of the decoded call serves both), the number it
names and its deadline. A runner holds an entry from its intent (or a takeover) to its
outcome: the entry's lease token, which is also the order's lease token, fences every
write that lets it go on.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from twisted.internet import task

from gateway.calls.spec import CallSpec, Ref, Target
from gateway.errors import UpstreamUnavailableError
from gateway.model import MoneyKind, Reservation, Step
from gateway.store.journal import CallQuery
from gateway.wire.values import LegacyCall


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):
        return str(o)
    raise TypeError(type(o).__name__)


@dataclass(frozen=True)
class Ticket:
    """One arriving call."""

    spec: CallSpec[Any]
    call: LegacyCall
    ref: Ref
    fingerprint: str
    call_json: str
    deadline: float
    #: How long after its reply was handed over an identical call still counts as its
    #: retry (0 for reads: a read is never bound to an earlier one).
    window: float

    @classmethod
    def of(cls, spec: CallSpec[Any], call: LegacyCall, deadline: float,
           retry_window: float) -> Ticket:
        fields = asdict(call)
        # Same eid, method and parameters: same fingerprint (unchanged since journal v1, so
        # an entry bound before an upgrade still binds its client's retry).
        fingerprint = hashlib.sha256(json.dumps(
            {"call": fields, "method": call.method}, sort_keys=True, default=_default,
            separators=(",", ":")).encode("utf-8")).hexdigest()
        call_json = json.dumps({**fields, "method": call.method}, sort_keys=True,
                               default=str, separators=(",", ":"))
        return cls(spec, call, spec.ref(call), fingerprint, call_json, deadline,
                   0.0 if spec.read_only else retry_window)

    @property
    def rno(self) -> str | None:
        """The number to look up as a reservation number."""
        return self.ref.value if self.ref.target in (Target.RESERVATION,
                                                     Target.ANY_NUMBER) else None

    @property
    def invno(self) -> str | None:
        return self.ref.value if self.ref.target is Target.INVOICE else None

    def query(self, reservation: Reservation | None = None) -> CallQuery:
        """What to read for this call (about ``reservation`` once it has been resolved)."""
        if reservation is not None and self.invno is None:
            return CallQuery(self.call.eid, self.fingerprint, rno=reservation.rno,
                             bind=not self.spec.read_only)
        return CallQuery(self.call.eid, self.fingerprint, rno=self.rno, invno=self.invno,
                         bind=not self.spec.read_only)


@dataclass
class Held:
    """A journal entry a runner holds (its lease ``token``), with its journaled steps."""

    entry_id: int
    token: str
    steps: tuple[Step, ...]
    eid: int
    reservation: Reservation | None
    invno: str | None = None
    rno: str | None = None
    #: A client waits for this call's reply (False when recovery finishes it).
    client: bool = True

    @property
    def reservation_id(self) -> int | None:
        return None if self.reservation is None else self.reservation.id


#: How often a call waiting for its identical twin (or for the order's lease) looks again.
POLL_SECONDS = 0.05


def new_token() -> str:
    """A lease or delivery token: 128 random bits."""
    return secrets.token_hex(16)


async def pause(clock: Any, deadline: float, why: str) -> None:
    """Wait a little before looking again, within the call's budget (else 9119, ``why``)."""
    if clock.seconds() >= deadline:
        raise UpstreamUnavailableError(why)
    await task.deferLater(clock, POLL_SECONDS, lambda: None)


def guard_unresolved_money(spec: CallSpec[Any], unresolved: dict[MoneyKind, int]) -> None:
    """Money whose outcome is unknown (an earlier call answered 9119, or a crash) must
    settle before new money moves on this order: otherwise limits computed now could be
    exceeded when it completes. Recovery finishes it within seconds."""
    if spec.money is MoneyKind.CAPTURE and unresolved.get(MoneyKind.CAPTURE):
        raise UpstreamUnavailableError(
            "an earlier activation of this reservation is still unfinished; retry")
    if spec.money is MoneyKind.REFUND and unresolved.get(MoneyKind.REFUND):
        raise UpstreamUnavailableError(
            "an earlier credit on this reservation is still unfinished; retry")


def guard_unresolved_change(spec: CallSpec[Any], unresolved: dict[MoneyKind, int]) -> None:
    """A change of the order (authorization, status, addresses, references) must not be
    sent while an earlier change on it is unfinished: recovery would send the earlier one
    afterwards, and the order would end as the older call left it (a raise of the
    authorization the ERP has since lowered is captured by the next full activation)."""
    if spec.money is MoneyKind.NONE and unresolved.get(MoneyKind.NONE):
        raise UpstreamUnavailableError(
            "an earlier change of this reservation is still unfinished; retry")
