"""Finding the reservation a call names when the claiming transaction did not: an invoice
number, the merchant's own order id, or a Klarna order id used as the rno (pass-through,
registered on first use)."""
from __future__ import annotations

import re
from typing import Any

from gateway.calls.spec import CallSpec, Ref, Target
from gateway.config import Merchant
from gateway.errors import BadOrderNoError, UnknownInvoiceError, UnknownReservationError
from gateway.model import Origin, Reservation
from gateway.om.client import OmClient, RestResponseError
from gateway.store.store import Store
from gateway.wire.values import LegacyCall

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Resolver:
    def __init__(self, store: Store, om: OmClient) -> None:
        self.store = store
        self.om = om

    async def resolve(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall,
                            deadline: float) -> Reservation:
        """The call named no registered reservation: an invoice number, the merchant's order
        id, a Klarna order id (pass-through), or a fault."""
        ref = spec.ref(call)
        if ref.target is Target.INVOICE:
            raise UnknownInvoiceError(f"invoice {ref.value} is unknown for eid {call.eid}")
        if ref.target is Target.MERCHANT_ORDER:
            found = await self.store.find_by_merchant_ref(call.eid, ref.value)
            if not found:
                raise BadOrderNoError(f"no reservation of eid {call.eid} carries the order "
                                      f"id {ref.value}")
            return found[0]
        if ref.target is Target.ANY_NUMBER:
            invoice = await self.store.get_invoice(call.eid, ref.value)
            if invoice is not None:
                return await self.store.get_reservation_by_id(invoice.reservation_id)
        return await self.pass_through(merchant, call, ref, deadline)

    async def pass_through(self, merchant: Merchant, call: LegacyCall, ref: Ref,
                            deadline: float) -> Reservation:
        """An order id used as the rno: accepted when the order exists for this merchant's
        credentials (per-merchant switch), and registered."""
        unknown = UnknownReservationError(f"reservation {ref.value} is unknown for eid "
                                          f"{call.eid}")
        if not (merchant.pass_through and _UUID.match(ref.value)):
            raise unknown
        known = await self.store.get_reservation_by_order(call.eid, ref.value)
        if known is not None:  # the order id of a registered reservation: an alias
            return known
        try:
            order = await self.om.get_order(merchant, ref.value, deadline=deadline)
        except RestResponseError as e:
            if e.status == 404:
                raise unknown from None
            raise
        res = await self.store.register_reservation(
            call.eid, ref.value, ref.value, Origin.PASS_THROUGH.value,
            status=order.get("status"))
        await self.store.record_order_facts(res.id, order)
        return res

