"""``invoice_address`` (eid, invno, digest) → ``[fname, lname, street, zip, city, country]``.

No REST mutation. The address an invoice was sent to is the billing address its capture
carries in the order (``captures[].billing_address``, Klarna copies it at capture time);
an order read without it falls back to the order's ``billing_address``. Both SDKs unpack
exactly six elements and read an empty first one as a company (``["", company, ...]``);
the country must be Klarna's integer code (the PY SDK knows no other form), from
``gateway/data/klarna-country-codes.csv`` read backwards. No address, or a country with no
Klarna code, is 8999: the invoice exists, but nothing the SDKs can read can be answered.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.errors import InvoiceDataError
from gateway.model import MoneyKind
from gateway.translate.address import rest_address_to_legacy_row
from gateway.translate.plan import OrderContext, Plan, Result
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import LegacyCall


@dataclass(frozen=True)
class InvoiceAddress(LegacyCall):
    invno: str

    method = "invoice_address"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:invno`` (p2, p3)."""
    return simple(params, 2, 3)


def decode(eid: int, version: str, params: Sequence[Any]) -> InvoiceAddress:
    p.digest(params[4])
    return InvoiceAddress(eid=eid, client_version=version,
                          invno=p.identifier(params[3], "invno"))


def _billing_address(ctx: OrderContext) -> tuple[Mapping[str, Any] | None, str]:
    """The capture's billing address, else the order's, and where it came from."""
    assert ctx.invoice is not None
    for capture in ctx.order.get("captures") or []:
        if capture.get("capture_id") == ctx.invoice.capture_id and \
                capture.get("billing_address"):
            return capture["billing_address"], "the capture's billing address"
    order_address = ctx.order.get("billing_address")
    return (order_address or None), "the order's billing address (the capture has none)"


def plan(call: InvoiceAddress, ctx: OrderContext) -> Plan:
    invoice = ctx.invoice
    assert invoice is not None
    address, source = _billing_address(ctx)
    if address is None:
        raise InvoiceDataError(f"invoice {invoice.invno}: Klarna has no billing address for "
                               "it (neither on the capture nor on the order)")
    row = rest_address_to_legacy_row(address)
    if row is None:
        raise InvoiceDataError(f"invoice {invoice.invno}: the billing address's country "
                               f"{address.get('country')!r} has no Klarna country code")
    notes = [f"answered from {source}; street_address2 (care of), email and phone have no "
             "place in the legacy 6-element address"]
    if row[0] == "":
        notes.append("organization_name set: answered as a company ([\"\", company, ...])")
    return Plan(answer=row, notes=tuple(notes))


def reply(call: InvoiceAddress, result: Result) -> Any:
    """Exactly six elements, the country an ``<int>``."""
    row = list(result.answer)
    assert len(row) == 6 and isinstance(row[5], int)
    return row


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "The capture's `billing_address` (Klarna copies it when capturing), else the order's; "
    "`street_address2` (care of), e-mail and phone have no place in the six elements.",
    "An organization is answered as a company, `[\"\", company, …]`, and the country as Klarna's "
    "integer code; no address, or a country with no Klarna code, is 8999.",
)


SPEC = CallSpec(
    name="invoice_address", call_type=InvoiceAddress, eid_at=2, digest_at=4, arity=(5,),
    target=Target.INVOICE, money=MoneyKind.NONE, digest=digest, decode=decode,
    plan=plan, reply=reply, read_only=True,
    summary="GET order only: the capture's billing_address (else the order's) → "
            "[fname, lname, street, zip, city, country<int>]",
    differences=DIFFERENCES,
)
