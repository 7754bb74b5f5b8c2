"""A runner's hold on one journal entry, and, once taken, on the order it touches.

Why an object: the entry lease and the order lease are released, renewed and checked
together on every path (finish, 9119, lease lost, crash). The :attr:`Claim.fence` it hands
the store is what every fenced write checks, so no path can forget the order lease.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.calls.spec import CallSpec
from gateway.errors import UpstreamUnavailableError
from gateway.model import Invoice, JournalEntry, MoneyKind, Reservation
from gateway.store.journal import Begin, Fence


@dataclass
class Claim:
    entry: JournalEntry
    token: str
    reservation: Reservation | None = None
    invoice: Invoice | None = None
    invoices: tuple[Invoice, ...] = ()
    locked: bool = False
    #: Money other unfinished entries journaled on this order (new money must wait).
    unresolved: dict[MoneyKind, int] = field(default_factory=dict)
    #: A client is waiting for this call's reply (False when recovery finishes it).
    client: bool = False

    @classmethod
    def from_begin(cls, begin: Begin, token: str, *, client: bool = False) -> Claim:
        return cls(entry=begin.entry, token=token, reservation=begin.reservation,
                   invoice=begin.invoice, invoices=begin.invoices, locked=begin.locked,
                   unresolved=dict(begin.unresolved or {}), client=client)

    @property
    def fence(self) -> Fence:
        """The leases held right now: the entry's, plus the order's once locked."""
        rid = self.reservation.id if self.locked and self.reservation is not None else None
        return Fence(self.entry.id, self.token, rid)

    def locked_with(self, invoices: tuple[Invoice, ...],
                    unresolved: dict[MoneyKind, int]) -> None:
        self.locked = True
        self.invoices = invoices
        self.unresolved = dict(unresolved)

    def guard_unresolved_money(self, spec: CallSpec[Any]) -> None:
        """Money whose outcome is unknown (an earlier call answered 9119, or a crash) must
        settle before new money moves on this order: otherwise limits computed now could be
        exceeded when it completes. Recovery finishes it within seconds."""
        if spec.money is MoneyKind.CAPTURE and self.unresolved.get(MoneyKind.CAPTURE):
            raise UpstreamUnavailableError(
                "an earlier activation of this reservation is still unfinished; retry")
        if spec.money is MoneyKind.REFUND and self.unresolved.get(MoneyKind.REFUND):
            raise UpstreamUnavailableError(
                "an earlier credit on this reservation is still unfinished; retry")

    def guard_unresolved_change(self, spec: CallSpec[Any]) -> None:
        """A change of the order (authorization, status, addresses, references) must not be
        sent while an earlier change on it is unfinished: recovery would send the earlier
        one afterwards, and the order would end as the older call left it (a raise of the
        authorization the ERP has since lowered is captured by the next full activation)."""
        if spec.money is MoneyKind.NONE and self.unresolved.get(MoneyKind.NONE):
            raise UpstreamUnavailableError(
                "an earlier change of this reservation is still unfinished; retry")
