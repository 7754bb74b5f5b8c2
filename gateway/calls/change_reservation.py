"""``change_reservation`` (rno, amount, eid, digest [, flags]) → ``"ok"``: a new reserved amount.

v2 meaning: the reservation is what is still reserved (activations took their part off it).
NEW_AMOUNT (0, the default) makes the uncaptured rest ``amount``; ADD_AMOUNT (1) adds
``amount`` (possibly negative) to it. So the order's new ``order_amount`` (the target) is
``captured_amount + amount`` or ``order_amount + amount``.

REST:
- target = the current ``order_amount`` → ``"ok"``, no request;
- target = ``captured_amount`` (> 0): nothing is to stay reserved →
  ``POST release-remaining-authorization``;
- otherwise ``PATCH /authorization`` with ``order_amount`` = target and ``order_lines`` = the
  current lines plus one adjustment line (``discount`` for a decrease, ``surcharge`` for an
  increase, reference ``change_reservation``, replacing an earlier adjustment line) so the
  lines add up to the target. Klarna refuses many increases (403 → 9103).
- target below what is captured, above 200 000 000, or 0 with nothing captured → 2102.
The digest is ``eid:rno:amount`` (P2 drops an amount of 0).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.errors import AmountError, InvalidParamsError
from gateway.model import MoneyKind, StatusEffect
from gateway.translate.money import MAX_AMOUNT, check_order_line, inclusive_tax, lines_total
from gateway.translate.plan import OrderContext, Plan, RestStep, Result, qty_by_reference
from gateway.translate.states import require_fraud_accepted, require_status
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import LegacyCall

NEW_AMOUNT: Final = 0
ADD_AMOUNT: Final = 1
#: The reference of the adjustment line this call adds (and later replaces).
ADJUSTMENT: Final = "change_reservation"


@dataclass(frozen=True)
class ChangeReservation(LegacyCall):
    rno: str
    amount: int = 0
    flags: int = NEW_AMOUNT

    method = "change_reservation"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:rno:amount`` (p4, p2, p3), filtered per SDK dialect."""
    return simple(params, 4, 2, 3)


def decode(eid: int, version: str, params: Sequence[Any]) -> ChangeReservation:
    p.digest(params[5])
    flags = p.flags(params[6], "flags") if len(params) > 6 else NEW_AMOUNT
    if flags not in (NEW_AMOUNT, ADD_AMOUNT):
        raise InvalidParamsError(f"flags must be 0 (NEW_AMOUNT) or 1 (ADD_AMOUNT), got {flags}")
    return ChangeReservation(eid=eid, client_version=version,
                             rno=p.identifier(params[2], "rno"),
                             amount=p.integer(params[3], "amount"), flags=flags)


def target_amount(call: ChangeReservation, order: Mapping[str, Any]) -> int:
    """The order_amount the call asks for (module docstring)."""
    if call.flags == ADD_AMOUNT:
        return int(order.get("order_amount", 0)) + call.amount
    return int(order.get("captured_amount", 0)) + call.amount


def plan(call: ChangeReservation, ctx: OrderContext) -> Plan:
    order = ctx.order
    require_status(order, {"AUTHORIZED", "PART_CAPTURED"}, "change the reservation")
    require_fraud_accepted(order, "change the reservation")
    current = int(order.get("order_amount", 0))
    captured = int(order.get("captured_amount", 0))
    target = target_amount(call, order)
    if target == current:
        return Plan(notes=(f"the order amount already is {target}: no request sent",))
    if target < captured:
        raise AmountError(f"the new amount {target} is below the {captured} already activated")
    if target > MAX_AMOUNT:
        raise AmountError(f"the new amount {target} is beyond the limit of {MAX_AMOUNT}")
    if target == captured:
        if captured == 0:
            raise AmountError("a reservation cannot be changed to 0 (cancel_reservation "
                              "cancels it)")
        step = RestStep("POST", f"{ctx.base}/release-remaining-authorization", None,
                        "release the uncaptured rest (the reservation changed to nothing)",
                        StatusEffect(reservation_id=ctx.reservation.id, status="CAPTURED"))
        return Plan(steps=(step,), notes=(
            "v2 reservation changed to what is already activated = REST "
            "release-remaining-authorization",))
    body, notes = authorization_body(order, target)
    what = "lower" if target < current else "raise"
    notes.append(f"{what} the authorization from {current} to {target}"
                 + ("" if target < current else "; Klarna may refuse an increase (9103)"))
    step = RestStep("PATCH", f"{ctx.base}/authorization", body,
                    f"{what} order_amount to {target}")
    return Plan(steps=(step,), notes=tuple(notes))


def authorization_body(order: Mapping[str, Any], target: int
                       ) -> tuple[dict[str, Any], list[str]]:
    """``order_amount`` = target, and the lines adjusted by one line to add up to it."""
    current_lines = [dict(line) for line in order.get("order_lines") or []]
    if not current_lines:
        return {"order_amount": target}, ["the order has no lines: order_amount only"]
    notes: list[str] = []
    captured = qty_by_reference(list(order.get("captures") or []))
    if captured.get(ADJUSTMENT):
        notes.append("an earlier adjustment line was activated: it stays, another is added")
        kept = current_lines
    else:
        kept = [line for line in current_lines if line.get("reference") != ADJUSTMENT]
    delta = target - lines_total(kept)
    if delta:
        rate, rate_note = _adjustment_rate(kept)
        notes += rate_note
        kept.append(adjustment_line(delta, rate))
    return {"order_amount": target, "order_lines": kept}, notes


def _adjustment_rate(lines: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """The goods' tax rate when they share one; else 0, noted (no single rate is right)."""
    rates = {int(line.get("tax_rate") or 0) for line in lines
             if line.get("reference") != ADJUSTMENT}
    if len(rates) == 1:
        return rates.pop(), []
    return 0, ["the order's lines have several tax rates: the adjustment line carries no tax"]


def adjustment_line(delta: int, tax_rate: int) -> dict[str, Any]:
    """One line of ``delta`` (negative: a discount, positive: a surcharge)."""
    line = {
        "type": "discount" if delta < 0 else "surcharge", "reference": ADJUSTMENT,
        "name": "Reservation change", "quantity": 1, "unit_price": delta,
        "tax_rate": tax_rate, "total_amount": delta, "total_discount_amount": 0,
        "total_tax_amount": inclusive_tax(delta, tax_rate),
    }
    check_order_line(line, 0)
    return line


def reply(call: ChangeReservation, result: Result) -> Any:
    return "ok"


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "v2's reservation amount is what is still uncaptured: `NEW_AMOUNT` (0) makes the new "
    "`order_amount` captured + amount, `ADD_AMOUNT` (1) order_amount + amount.",
    "The change is one `PATCH authorization`: `order_amount` = the target and the order's lines "
    "plus one adjustment line (`discount` for less, `surcharge` for more, reference "
    "`change_reservation`, replacing an earlier one not yet activated) with the goods' tax rate "
    "when they share one, else none.",
    "A target equal to what is captured releases the rest (`POST "
    "release-remaining-authorization`); an unchanged amount sends nothing.",
    "A target below what is captured, above 200 000 000, or 0 with nothing captured is 2102; "
    "Klarna refuses many increases (9103).",
)


SPEC = CallSpec(
    name="change_reservation", call_type=ChangeReservation, eid_at=4, digest_at=5,
    arity=(6, 7), target=Target.RESERVATION, money=MoneyKind.NONE, digest=digest,
    decode=decode, plan=plan, reply=reply,
    summary="PATCH authorization (order_amount = target, lines + one adjustment line) / "
            "POST release-remaining-authorization (target = captured); unchanged → \"ok\"",
    differences=DIFFERENCES,
)
