"""``return_amount`` (eid, invno, amount, vat, digest [, flags [, description]]) → invno:
a goodwill refund of an amount on one invoice.

REST: ``POST /orders/{id}/refunds`` with one order line. v2 "gave a discount on the
invoice"; REST has no such thing, so it is a refund of that amount, booked on the invoice
named (per-invoice bookkeeping, like credit_part). The gross amount is
``G = amount`` with INC_VAT (32, the SDKs' default) or
``G = round(amount × (100 + vat) / 100)`` (half away from zero, exact) without it; the line
is ``{type physical, reference "return_amount", name description or "Discount", quantity 1,
unit_price G, tax_rate vat × 100, total_tax_amount = the inclusive tax of G}``.
``description`` also goes to the refund's ``description``. Refused with 2102 when the amount
is not positive or G is more than is left to refund on that invoice.

``vat`` must be a whole hundredth of a percent (a REST ``tax_rate`` is an integer); the
exact binary expansion PHP prints for such a value counts as it (see
:func:`gateway.translate.money.percent_hundredths`). p7/p8 are optional: PHP before 2.3.0
sent neither (flags default 32, description ``''``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

from gateway.calls.credit_part import refund_step
from gateway.calls.spec import CallSpec, Target
from gateway.errors import AmountError, InvalidParamsError
from gateway.model import MoneyKind
from gateway.translate.money import (
    MAX_TEXT, check_order_line, inclusive_tax, percent_hundredths, round_half_away,
)
from gateway.translate.plan import OrderContext, Plan, Result
from gateway.translate.states import REFUNDABLE, require_status
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import GoodsFlag, LegacyCall

#: The line's reference: what the ledger's refunded quantities count it under.
REFERENCE: Final = "return_amount"
#: v2's invoice text when no description is given.
DEFAULT_NAME: Final = "Discount"


@dataclass(frozen=True)
class ReturnAmount(LegacyCall):
    invno: str
    amount: int = 0
    vat: Decimal = Decimal(0)
    #: ``vat`` as a REST ``tax_rate`` (hundredths of a percent), checked when decoded.
    tax_rate: int = 0
    flags: int = int(GoodsFlag.INC_VAT)
    description: str = ""

    method = "return_amount"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:invno`` (p2, p3)."""
    return simple(params, 2, 3)


def decode(eid: int, version: str, params: Sequence[Any]) -> ReturnAmount:
    p.digest(params[6])
    vat = p.decimal(params[5], "vat")
    tax_rate = percent_hundredths(vat)
    if tax_rate is None or not 0 <= tax_rate <= 10000:
        raise InvalidParamsError(f"vat {vat} must be a percentage from 0 to 100 in whole "
                                 "hundredths (REST tax_rate is an integer)")
    flags = p.flags(params[7], "flags") if len(params) > 7 else int(GoodsFlag.INC_VAT)
    if flags not in (0, GoodsFlag.INC_VAT):
        raise InvalidParamsError(f"flags must be 32 (INC_VAT) or 0, got {flags}")
    description = p.text(params[8], "description") if len(params) > 8 else ""
    if len(description) > MAX_TEXT:
        raise InvalidParamsError(f"description: {len(description)} characters, at most "
                                 f"{MAX_TEXT} allowed")
    return ReturnAmount(eid=eid, client_version=version,
                        invno=p.identifier(params[3], "invno"),
                        amount=p.integer(params[4], "amount"), vat=vat, tax_rate=tax_rate,
                        flags=flags, description=description)


def gross(call: ReturnAmount) -> int:
    """The amount including VAT, in minor units."""
    if call.flags & GoodsFlag.INC_VAT:
        return call.amount
    return round_half_away(Fraction(call.amount * (10000 + call.tax_rate), 10000))


def refund_line(call: ReturnAmount, amount: int) -> dict[str, Any]:
    line: dict[str, Any] = {
        "type": "physical", "reference": REFERENCE,
        "name": call.description.strip() or DEFAULT_NAME, "quantity": 1,
        "unit_price": amount, "tax_rate": call.tax_rate, "total_amount": amount,
        "total_discount_amount": 0, "total_tax_amount": inclusive_tax(amount, call.tax_rate),
    }
    check_order_line(line, 0)
    return line


def plan(call: ReturnAmount, ctx: OrderContext) -> Plan:
    invoice = ctx.invoice
    assert invoice is not None
    require_status(ctx.order, REFUNDABLE, "return an amount on the invoice")
    if call.amount <= 0:
        raise AmountError(f"amount {call.amount} must be greater than 0")
    amount = gross(call)
    if amount > invoice.refundable:
        raise AmountError(f"the return amounts to {amount} including VAT, only "
                          f"{invoice.refundable} is left to refund on invoice "
                          f"{invoice.invno}")
    body: dict[str, Any] = {"refunded_amount": amount,
                            "order_lines": [refund_line(call, amount)]}
    if call.description.strip():
        body["description"] = call.description.strip()
    notes = ["v2 gave a discount on the invoice; REST refunds the amount (one line, "
             f"reference {REFERENCE!r}), booked on invoice {invoice.invno}; Klarna allocates "
             "a refund to captures itself"]
    if not call.flags & GoodsFlag.INC_VAT:
        notes.append(f"amount {call.amount} excluding {call.vat} % VAT = {amount} including")
    return Plan(steps=(refund_step(ctx, body, "", "an amount"),), notes=tuple(notes))


def reply(call: ReturnAmount, result: Result) -> Any:
    assert result.invno is not None
    return str(result.invno)


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "v2 gave a discount on the invoice; REST has none, so it is a refund of the amount, booked "
    "on the invoice named (Klarna allocates refunds to captures itself).",
    "One `physical` line, reference `return_amount`, named by the description (or \"Discount\"), "
    "`tax_rate` = vat × 100; the description is also the refund's `description`.",
    "The refund is the amount with `INC_VAT` (32, the default), else amount × (100 + vat) / 100, "
    "rounded half away from zero.",
    "`vat` must be a whole hundredth of a percent (PHP's exact double expansion of one counts as "
    "it), else -32602; an amount not above 0, or above what is left to refund on the invoice, is "
    "2102.",
)


SPEC = CallSpec(
    name="return_amount", call_type=ReturnAmount, eid_at=2, digest_at=6, arity=(7, 8, 9),
    target=Target.INVOICE, money=MoneyKind.REFUND, digest=digest, decode=decode,
    plan=plan, reply=reply, free_text=("description",),
    summary="POST refunds of that amount (one line; + VAT unless INC_VAT), booked on that "
            "invoice → invno",
    differences=DIFFERENCES,
)
