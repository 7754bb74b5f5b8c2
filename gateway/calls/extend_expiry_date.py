"""``extend_expiry_date`` (rno, eid, digest) → ``"YYYYMMDDTHHMMSS"``: extend the authorization.

REST: ``POST extend-authorization-time`` answers 204 with no date, so the engine reads the
order again and the reply is its ``expires_at`` in Europe/Stockholm wall time,
``YYYYMMDDTHHMMSS`` as a ``<string>`` (what the SDKs parse).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.model import MoneyKind
from gateway.translate.expiry import legacy_expiry
from gateway.translate.plan import OrderContext, Plan, RestStep, Result
from gateway.translate.states import require_status
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import LegacyCall


@dataclass(frozen=True)
class ExtendExpiryDate(LegacyCall):
    rno: str

    method = "extend_expiry_date"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:rno`` (p3, p2)."""
    return simple(params, 3, 2)


def decode(eid: int, version: str, params: Sequence[Any]) -> ExtendExpiryDate:
    p.digest(params[4])
    return ExtendExpiryDate(eid=eid, client_version=version,
                            rno=p.identifier(params[2], "rno"))


def plan(call: ExtendExpiryDate, ctx: OrderContext) -> Plan:
    require_status(ctx.order, {"AUTHORIZED", "PART_CAPTURED"}, "extend the expiry date")
    step = RestStep("POST", f"{ctx.base}/extend-authorization-time", None,
                    "extend the authorization time")
    return Plan(steps=(step,), notes=(
        "REST extends to the call day + the merchant's period, capped at creation + 180 days",))


def reply(call: ExtendExpiryDate, result: Result) -> Any:
    assert result.order is not None
    return legacy_expiry(str(result.order["expires_at"]))


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "REST extends to the call day + the merchant's period (28 days), capped at creation + 180 "
    "days.",
    "REST answers no date: the gateway reads the order again and answers its `expires_at` in "
    "Europe/Stockholm wall time, `YYYYMMDDTHHMMSS` as a string.",
    "A cancelled, expired or fully captured order is 9103, and so is an extension Klarna "
    "refuses.",
)


SPEC = CallSpec(
    name="extend_expiry_date", call_type=ExtendExpiryDate, eid_at=3, digest_at=4,
    arity=(5,), target=Target.RESERVATION, money=MoneyKind.NONE, digest=digest,
    decode=decode, plan=plan, reply=reply, reply_reads_order=True,
    summary="POST extend-authorization-time, then expires_at in Europe/Stockholm "
            "→ \"YYYYMMDDTHHMMSS\"",
    differences=DIFFERENCES,
)
