"""Pure translation of legacy calls into REST plans, and of REST results into replies.

No I/O, no Twisted, no clock: this package is what migration teams read and what a dry run
prints. ``plan_call`` is the one entry point the engine uses.
"""
from __future__ import annotations

from gateway.legacy.calls import (
    Activate, CancelReservation, CreditInvoice, CreditPart, DecodedCall, EmailInvoice,
    ExtendExpiryDate, SendInvoice, Update,
)
from gateway.translate.plan import OrderContext, Plan


def plan_call(call: DecodedCall, ctx: OrderContext) -> Plan:
    """The REST plan for a decoded legacy call against the order's current state."""
    from gateway.translate import (activate, cancel_reservation, credit, extend_expiry_date,
                                   invoice_sendout, update)

    if isinstance(call, Activate):
        return activate.plan(call, ctx)
    if isinstance(call, CancelReservation):
        return cancel_reservation.plan(call, ctx)
    if isinstance(call, Update):
        return update.plan(call, ctx)
    if isinstance(call, CreditPart):
        return credit.plan_credit_part(call, ctx)
    if isinstance(call, CreditInvoice):
        return credit.plan_credit_invoice(call, ctx)
    if isinstance(call, ExtendExpiryDate):
        return extend_expiry_date.plan(call, ctx)
    if isinstance(call, (EmailInvoice, SendInvoice)):
        return invoice_sendout.plan(call, ctx)
    raise TypeError(f"no translator for {type(call).__name__}")
