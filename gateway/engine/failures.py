"""What a failure does to a call's journal entry, on either side of its intent.

Before the intent nothing was sent: the call is journaled as refused (``failed``, never
bound) and its fault raised. After it, :func:`gateway.engine.faults.disposition` decides:
the entry ends with the fault, or stays resumable (its outcome is unknown: the client is
told 9119 and its retry continues it with the same keys), or belongs to another runner
now (this one answers 9119 and writes nothing more).
"""
from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from gateway.engine.claim import Held, Ticket
from gateway.engine.faults import Disposition, disposition
from gateway.errors import FaultCode
from gateway.calls.spec import CallSpec
from gateway.store import journal
from gateway.store.journal import LeaseLostError, OrderView
from gateway.store.store import Store

log = Logger()


class Failures:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def refused(self, t: Ticket, order: OrderView | None, e: Exception) -> Exception:
        """Before the intent: journal the call as refused; the exception to raise (a bug is
        logged and raised as it is)."""
        fault = disposition(e, t.spec.target).fault
        if fault is None:
            log.failure("legacy call {method} crashed before sending anything",
                        method=t.call.method, eid=t.call.eid)
        rno = order.reservation.rno if order else t.rno
        code = int(fault.fault_code) if fault else int(FaultCode.INTERNAL_ERROR)
        text = fault.fault_string if fault else "internal_error: internal error"
        jid = await self.quietly(self.store.record_answer(journal.Answered(
            t.call.eid, t.call.method, t.fingerprint, t.call_json, rno, t.invno,
            order.reservation.order_id if order else None, fault_code=code,
            fault_string=text)))
        if fault is None:
            return e
        fault.context = {"journal_id": jid, "invno": t.invno, "rno": rno}
        return fault

    async def failed(self, spec: CallSpec[Any], held: Held, e: Exception) -> Exception:
        """After the intent: end the entry with the fault, or leave it resumable; the
        exception to raise."""
        failure = disposition(e, spec.target)
        rid = held.reservation_id
        if failure.fault is not None:
            failure.fault.context = {"journal_id": held.entry_id, "invno": held.invno,
                                     "rno": held.rno}
        if failure.disposition is Disposition.FINISH:
            assert failure.fault is not None
            recorded = await self.quietly(self.store.fail(
                held.entry_id, held.token, rid, int(failure.fault.fault_code),
                failure.fault.fault_string, client=held.client))
            if recorded is False:  # another runner took the entry over: its outcome rules
                return disposition(LeaseLostError(str(held.entry_id)), spec.target).fault \
                    or failure.fault
        else:  # RESUMABLE, LOST (a no-op on an entry another runner holds), or a bug
            if failure.disposition is Disposition.BUG:
                log.failure("journal entry {journal_id} crashed", journal_id=held.entry_id,
                            eid=held.eid, invno=held.invno, rno=held.rno)
            await self.quietly(self.store.release(held.entry_id, held.token, rid))
        return failure.fault if failure.fault is not None else e

    @staticmethod
    async def quietly(write: Any) -> Any:
        """Run a bookkeeping write; if the database fails it, log and go on, so the client
        still gets the real outcome (leases then lapse on their own)."""
        try:
            return await write
        except Exception:  # noqa: BLE001
            log.failure("journal write failed; leases will lapse on their own")
            return None
