"""``cancel_reservation`` (rno, eid, digest) → ``"ok"``: cancel what is left of the reservation.

A v2 merchant cancels "what is left of the reservation": before any capture that is a REST
``POST cancel``; after a partial capture it is ``POST release-remaining-authorization`` (REST
refuses cancel there). Cancelling an already cancelled order answers ``ok``, so a client
retrying after a lost answer does not get an error.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.model import MoneyKind, StatusEffect
from gateway.translate.plan import OrderContext, Plan, RestStep, Result
from gateway.translate.states import require_status
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import LegacyCall


@dataclass(frozen=True)
class CancelReservation(LegacyCall):
    rno: str

    method = "cancel_reservation"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:rno`` (p3, p2)."""
    return simple(params, 3, 2)


def decode(eid: int, version: str, params: Sequence[Any]) -> CancelReservation:
    p.digest(params[4])
    return CancelReservation(eid=eid, client_version=version,
                             rno=p.identifier(params[2], "rno"))


def plan(call: CancelReservation, ctx: OrderContext) -> Plan:
    status = ctx.status
    if status == "CANCELLED":
        return Plan(notes=("already cancelled: answered ok",))
    require_status(ctx.order, {"AUTHORIZED", "PART_CAPTURED"}, "cancel the reservation")
    if status == "AUTHORIZED":
        step = RestStep("POST", f"{ctx.base}/cancel", None, "cancel the uncaptured order",
                        StatusEffect(reservation_id=ctx.reservation.id, status="CANCELLED"))
        return Plan(steps=(step,))
    step = RestStep("POST", f"{ctx.base}/release-remaining-authorization", None,
                    "release the uncaptured rest of a part-captured order",
                    StatusEffect(reservation_id=ctx.reservation.id, status="CAPTURED"))
    return Plan(steps=(step,), notes=(
        "v2 cancel after a partial activation = REST release-remaining-authorization",))


def reply(call: CancelReservation, result: Result) -> Any:
    return "ok"


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "An AUTHORIZED order is cancelled (`POST cancel`); after a partial activation REST refuses "
    "`cancel`, so the uncaptured rest is released (`POST release-remaining-authorization`) and "
    "the order then reads CAPTURED.",
    "An already cancelled reservation answers `\"ok\"`; any other state (expired, fully captured) "
    "is 9103.",
)


SPEC = CallSpec(
    name="cancel_reservation", call_type=CancelReservation, eid_at=3, digest_at=4,
    arity=(5,), target=Target.RESERVATION, money=MoneyKind.NONE, digest=digest,
    decode=decode, plan=plan, reply=reply,
    summary="POST cancel (AUTHORIZED) / POST release-remaining-authorization "
            "(PART_CAPTURED); already cancelled → ok",
    differences=DIFFERENCES,
)
