"""The call engine: decode → authenticate → journal → plan → execute → reply.

Data flows one way. The XML-RPC edge hands ``(method, params)`` to :meth:`CallEngine.dispatch`;
the engine finds the merchant, checks the digest, decodes the call, claims it in the journal
(coalescing identical calls), reads the order over REST, asks ``gateway.translate`` for a
plan, commits the plan's steps with their idempotency keys, sends them, records each
success with its mapping rows, and returns the legacy reply. Every failure leaves as a
:class:`~gateway.errors.GatewayError`.

Money safety lives here and in the store, never in one process's memory:
- a step's idempotency key is committed before the request leaves, and reused by any retry,
  restart or other process resuming the entry;
- when the retry budget (default 7.5 s, under the SDKs' ~9 s) runs out, the entry stays
  pending with its lease released and the client gets 9119; its own retry of the same call
  lands on the same entry and continues it instead of starting a second operation;
- one legacy call at a time per order (a lease on the reservation row), so per-invoice
  refund limits and partial-capture arithmetic see a consistent state.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import asdict, replace
from decimal import Decimal
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from gateway.config import Config, Merchant
from gateway.errors import (
    GatewayError, InvalidDigestError, MerchantMisconfiguredError, NotAllowedError,
    UnknownEstoreError, UnknownInvoiceError, UnknownReservationError,
    UpstreamUnavailableError, FaultCode, AmountError, GoodsListError,
)
from gateway.legacy.calls import (
    Activate, CancelReservation, CreditInvoice, CreditPart, DecodedCall, EmailInvoice,
    ExtendExpiryDate, SendInvoice, Update,
)
from gateway.legacy.decode import check_method, decode_call, extract_eid
from gateway.legacy.digest import verify_digest
from gateway.om.client import (
    DeadlineExceededError, OmClient, RestResponseError, RestTransportError, created_id,
)
from gateway.store.store import (
    BeginResult, ClaimContendedError, JournalEntry, LeaseLostError, Reservation, Step, Store,
)
from gateway.translate import plan_call
from gateway.translate.plan import OrderContext
from gateway.translate.replies import reply_for

log = Logger()

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_POLL = 0.05


class GaveUpError(GatewayError):
    """A journal entry was given up (recorded as failed, fault 9119): see ``give_up_seconds``.
    Unlike a plain 9119 it ends the entry, so the client's next call starts afresh."""

    fault_code = FaultCode.TIMEOUT


#: Klarna honours an idempotency key for 24 h; past 23 h the engine stops trusting it and
#: settles a journaled step from the order's own captures/refunds before re-sending.
KEY_TRUST_SECONDS = 23 * 3600.0


def call_fingerprint(call: DecodedCall) -> str:
    """Same eid, method and parameters → same fingerprint (the coalescing key)."""
    def default(o: Any) -> Any:
        if isinstance(o, Decimal):
            return str(o)
        raise TypeError(type(o).__name__)
    payload = json.dumps({"method": call.method, "call": asdict(call)}, sort_keys=True,
                         default=default, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _call_json(call: DecodedCall) -> dict[str, Any]:
    return json.loads(json.dumps({"method": call.method, **asdict(call)},
                                 default=lambda o: str(o)))


def rest_error_to_fault(e: RestResponseError, *, what: str) -> GatewayError:
    """Map a definitive REST refusal to the legacy fault table (translation.md §3)."""
    message = "; ".join(e.messages) or (e.error_code or f"HTTP {e.status}")
    cid = e.correlation_id
    if e.status == 401:
        return MerchantMisconfiguredError("Klarna refused the gateway's REST credentials "
                                          "for this eid", correlation_id=cid)
    if e.status == 404:
        if what == "invoice":
            return UnknownInvoiceError(f"Klarna does not know this invoice: {message}",
                                       correlation_id=cid)
        return UnknownReservationError(f"Klarna does not know this order: {message}",
                                       correlation_id=cid)
    if e.status == 403:
        if "amount" in message.lower() and e.error_code in ("CAPTURE_NOT_ALLOWED",
                                                            "REFUND_NOT_ALLOWED"):
            return AmountError(f"Klarna refused the amount: {message}", correlation_id=cid)
        return NotAllowedError(f"Klarna refused: {message}", correlation_id=cid)
    if e.status in (400, 422):
        return GoodsListError(f"Klarna refused the request: {message}", correlation_id=cid) \
            if "order_lines" in message else NotAllowedError(
                f"Klarna refused the request: {message}", correlation_id=cid)
    if e.status == 429 or e.status >= 500:
        return UpstreamUnavailableError("Klarna is unavailable, retry the same call",
                                        correlation_id=cid)
    return NotAllowedError(f"Klarna refused: {message}", correlation_id=cid)


class CallEngine:
    """Runs legacy calls. One per process; stateless apart from its collaborators."""

    def __init__(self, config: Config, store: Store, om: OmClient, reactor: Any) -> None:
        self.config = config
        self.store = store
        self.om = om
        self.reactor = reactor
        s = config.gateway
        self.budget = s.retry_budget_seconds
        self.lease_seconds = s.retry_budget_seconds + 2 * s.rest_timeout_seconds + 1.0
        self.coalesce_seconds = s.coalesce_window_seconds
        self.retry_window = s.retry_window_seconds
        self.give_up_seconds = s.give_up_seconds

    # -- the edge's entry point ---------------------------------------------------------

    async def dispatch(self, method: str, params: list[Any]) -> Any:
        """Authenticate and run one legacy call; returns the XML-RPC reply value."""
        check_method(method)
        eid = extract_eid(method, params)
        merchant = self.config.merchant(eid)
        if merchant is None:
            raise UnknownEstoreError(f"eid {eid} is not configured on this gateway")
        if not verify_digest(method, params, merchant.secret_bytes):
            raise InvalidDigestError("digest does not match")
        call = decode_call(method, params)
        return await self.run(merchant, call)

    async def run(self, merchant: Merchant, call: DecodedCall) -> Any:
        deadline = self.reactor.seconds() + self.budget
        fingerprint = call_fingerprint(call)
        token = uuid.uuid4().hex
        while True:
            try:
                begin = await self._begin(call, fingerprint, token)
            except ClaimContendedError:
                raise UpstreamUnavailableError("an identical call is starting elsewhere; "
                                               "retry the same call") from None
            if begin.action == "replay":
                return self._outcome(begin.entry)
            if begin.action == "run":
                return await self._run_claimed(merchant, call, begin, token, deadline)
            # An identical call is in flight: wait for its outcome (or for its lease to lapse).
            entry = begin.entry
            while entry.state == "pending" and entry.lease_until is not None \
                    and entry.lease_until > self.reactor.seconds():
                if self.reactor.seconds() >= deadline:
                    raise UpstreamUnavailableError(
                        "an identical call is still in progress; retry the same call")
                await _sleep(self.reactor, _POLL)
                entry = await self.store.get_entry(entry.id)
            if entry.state != "pending":
                return self._outcome(entry)

    async def _begin(self, call: DecodedCall, fingerprint: str, token: str) -> BeginResult:
        return await self.store.begin_call(
            eid=call.eid, method=call.method, fingerprint=fingerprint, call=_call_json(call),
            lease_token=token, lease_seconds=self.lease_seconds,
            coalesce_seconds=self.coalesce_seconds, rno=getattr(call, "rno", None),
            invno=getattr(call, "invno", None))

    def _outcome(self, entry: JournalEntry) -> Any:
        if entry.state == "done":
            return entry.reply
        if entry.state == "failed" and entry.fault_code is not None:
            err = GatewayError(_strip_symbol(entry.fault_string or ""),
                               code=FaultCode(entry.fault_code))
            raise err
        raise UpstreamUnavailableError("the call is still in progress; retry the same call")

    # -- one claimed journal entry ------------------------------------------------------

    async def _run_claimed(self, merchant: Merchant, call: DecodedCall, begin: BeginResult,
                           token: str, deadline: float) -> Any:
        entry = begin.entry
        reservation, locked = begin.reservation, begin.locked
        try:
            if reservation is None:
                reservation = await self._resolve_slow(merchant, call, deadline)
            if not locked:
                await self._lock_order(reservation, token, deadline)
                locked = True
                invoices, captures, refunds = await self.store.order_state(reservation,
                                                                           entry.id)
                begin = replace(begin, invoices=invoices, pending_captures=captures,
                                pending_refunds=refunds)
            return await self._execute(merchant, call, entry, reservation, begin,
                                       token, deadline)
        except LeaseLostError:
            # Another runner took this entry over while we were slow: it owns the outcome.
            if locked and reservation is not None:
                await self._quietly(self.store.release_order_lock(reservation.id, token))
            raise UpstreamUnavailableError("the call is being completed elsewhere; retry "
                                           "the same call") from None
        except (DeadlineExceededError, RestTransportError, UpstreamUnavailableError) as e:
            # Unknown outcome: keep the entry pending and resumable, free its lease so the
            # client's retry continues it at once.
            await self._quietly(self.store.release_lease(
                entry.id, token,
                release=(reservation.id, token) if locked and reservation else None,
                retry_window=self.retry_window))
            if isinstance(e, UpstreamUnavailableError):
                raise
            last = e.last if isinstance(e, DeadlineExceededError) else e
            cid = getattr(last, "correlation_id", None)
            raise UpstreamUnavailableError(
                "Klarna did not answer in time; retry the same call to continue it",
                correlation_id=cid, debug_context=str(last)) from None
        except RestResponseError as e:  # a 4xx from a read (settling, extend's re-read)
            fault = rest_error_to_fault(e, what=_what(call))
            await self._quietly(self.store.finish_call(
                entry.id, fault_code=int(fault.fault_code), fault_string=fault.fault_string,
                release=(reservation.id, token) if locked and reservation else None,
                token=token))
            raise fault from None
        except GatewayError as e:
            await self._quietly(self.store.finish_call(
                entry.id, fault_code=int(e.fault_code), fault_string=e.fault_string,
                release=(reservation.id, token) if locked and reservation else None,
                token=token))
            raise
        except Exception:
            # A bug: keep the entry pending (recoverable), free the leases, log, and answer
            # the generic internal fault at the edge.
            log.failure("journal entry {id} ({method}) crashed", id=entry.id,
                        method=call.method)
            await self._quietly(self.store.release_lease(
                entry.id, token,
                release=(reservation.id, token) if locked and reservation else None))
            raise

    async def _quietly(self, cleanup: Any) -> None:
        """Run a cleanup write; if the database fails it, log and go on, so the client still
        gets the real outcome (leases then lapse on their own)."""
        try:
            await cleanup
        except Exception:
            log.failure("cleanup write failed; leases will lapse on their own")

    async def _resolve_slow(self, merchant: Merchant, call: DecodedCall,
                            deadline: float) -> Reservation:
        """The call named no registered reservation/invoice: pass-through or a fault."""
        if isinstance(call, (CreditPart, CreditInvoice, EmailInvoice, SendInvoice)):
            raise UnknownInvoiceError(f"invoice {call.invno} is unknown for eid {call.eid}")
        rno = call.rno  # type: ignore[union-attr]
        if merchant.pass_through and _UUID.match(rno):
            known = await self.store.get_reservation_by_order(call.eid, rno)
            if known is not None:  # the order id of a registered reservation: an alias
                return known
            try:
                order = await self.om.get_order(merchant, rno, deadline=deadline)
            except RestResponseError as e:
                if e.status == 404:
                    raise UnknownReservationError(
                        f"reservation {rno} is unknown for eid {call.eid}") from None
                raise rest_error_to_fault(e, what="order") from None
            return await self.store.register_reservation(
                call.eid, rno, rno, "pass_through", status=order.get("status"))
        raise UnknownReservationError(f"reservation {rno} is unknown for eid {call.eid}")

    async def _lock_order(self, reservation: Reservation, token: str, deadline: float) -> None:
        while not await self.store.acquire_order_lock(reservation.id, token,
                                                      self.lease_seconds):
            if self.reactor.seconds() >= deadline:
                raise UpstreamUnavailableError(
                    "another call on this reservation is still in progress; retry")
            await _sleep(self.reactor, _POLL)

    async def _execute(self, merchant: Merchant, call: DecodedCall, entry: JournalEntry,
                       reservation: Reservation, begin: BeginResult, token: str,
                       deadline: float) -> Any:
        release = (reservation.id, token)
        if not entry.steps:
            # Money whose outcome is unknown (an earlier call answered 9119, or a crash)
            # must settle before new money moves on this order: otherwise limits computed
            # now could be exceeded when it completes. Recovery finishes it within seconds.
            if isinstance(call, Activate) and begin.pending_captures:
                raise UpstreamUnavailableError(
                    "an earlier activation of this reservation is still unfinished; retry")
            if isinstance(call, (CreditPart, CreditInvoice)) and begin.pending_refunds:
                raise UpstreamUnavailableError(
                    "an earlier credit on this reservation is still unfinished; retry")
            invoices = begin.invoices
            order = await self._read_order(merchant, reservation, deadline)
            if order.pop("_adopted", False):
                invoices = tuple(await self.store.invoices_for(reservation.id))
            invno = getattr(call, "invno", None)
            invoice = next((i for i in invoices if i.invno == invno), None)
            ctx = OrderContext(reservation=reservation, order=order, invoices=invoices,
                               invoice=invoice)
            try:
                plan = plan_call(call, ctx)
            except ValueError as e:  # Klarna's own lines break their arithmetic
                raise NotAllowedError("cannot split the order's lines: Klarna's order lines "
                                      "do not follow total = quantity x unit_price - discount",
                                      debug_context=str(e)) from None
            if not plan.steps:
                reply = plan.immediate_reply
                await self.store.finish_call(entry.id, reply=reply, notes=list(plan.notes),
                                             release=release, token=token)
                return reply
            entry = await self.store.plan_steps(
                entry, reservation.order_id, list(plan.steps), lease_token=token,
                lease_seconds=self.lease_seconds, order_lock=release,
                allocate_invno=plan.allocate_invno, notes=list(plan.notes))
        applied: list[str] = [s.purpose for s in entry.steps if s.state == "done"]
        planned = [s for s in entry.steps if s.state == "planned"]
        reply_first = call.method != "extend_expiry_date"  # extend's reply needs a GET after
        reply = reply_for(call.method, invno=entry_invno(entry, call), order=None) \
            if reply_first else None
        finished = False
        for i, step in enumerate(planned):
            # How long ago this step's key was committed (its first send followed at once).
            age = self.reactor.seconds() - (step.updated_at or entry.created_at)
            stale = age > KEY_TRUST_SECONDS
            last = i == len(planned) - 1
            finish = ({"reply": reply, "release": release, "token": token}
                      if last and reply_first else None)
            renew = None if last else (token, self.lease_seconds, release)
            money = (step.effect or {}).get("kind") in ("capture", "refund")
            if (stale or (money and age > self.give_up_seconds)) and \
                    await self._settle_from_rest(merchant, reservation, step, deadline,
                                                 finish=finish, renew=renew):
                applied.append(step.purpose)
                finished = finish is not None
                continue
            if money and age > self.give_up_seconds:
                # Nobody can be sending it (we hold the lease; earlier attempts ended long
                # ago) and the order shows no such capture/refund: it was never applied.
                raise GaveUpError(f"gave up after {int(age // 60)} minutes: Klarna never "
                                  f"applied '{step.purpose}'; send the call again")
            if stale and not money:
                raise GaveUpError(f"gave up after {int(age // 3600)} hours: the outcome of "
                                  f"'{step.purpose}' is unknown; check the order")
            try:
                await self._send_step(merchant, step, deadline, finish=finish, renew=renew)
                finished = finish is not None
            except RestResponseError as e:
                if e.retryable:
                    raise DeadlineExceededError(RestTransportError(str(e))) from e
                if e.status == 403 and await self._settle_from_rest(
                        merchant, reservation, step, deadline, finish=finish, renew=renew):
                    applied.append(step.purpose)
                    finished = finish is not None
                    continue
                fault = rest_error_to_fault(e, what=_what(call))
                if applied or len(planned) > 1:
                    not_applied = "; ".join(s.purpose for s in planned[i:])
                    fault.public_message = (f"{fault.public_message} (applied: "
                                            f"{'; '.join(applied) or 'nothing'}; "
                                            f"not applied: {not_applied})")
                raise fault from None
            applied.append(step.purpose)
        if not reply_first:
            after = await self.om.get_order(merchant, reservation.order_id, deadline=deadline)
            reply = reply_for(call.method, invno=None, order=after)
        if not finished:
            await self.store.finish_call(entry.id, reply=reply, release=release, token=token)
        return reply

    async def _settle_from_rest(self, merchant: Merchant, reservation: Reservation,
                                step: Step, deadline: float,
                                finish: dict[str, Any] | None = None,
                                renew: Any = None) -> bool:
        """Decide from the order itself whether a journaled step already took effect.

        Used when the step's idempotency key may have expired at Klarna (entry older than
        :data:`KEY_TRUST_SECONDS`) and when a status change is refused: a capture or refund
        the store has no row for, with exactly the journaled amount, is this step's; a
        cancel/release whose target status the order already has is done.
        """
        order = await self.om.get_order(merchant, reservation.order_id, deadline=deadline)
        effect = step.effect or {}
        kind, body = effect.get("kind"), step.body or {}
        if kind == "status":
            if order.get("status") == effect.get("status"):
                await self._complete(step, 204, {}, finish, renew)
                return True
            return False
        if kind == "capture":
            known = {i.capture_id for i in await self.store.invoices_for(reservation.id)}
            for cap in order.get("captures") or []:
                if cap["capture_id"] not in known and _same_money(cap, body, "captured_amount"):
                    await self._complete(step, 201, {"capture_id": cap["capture_id"]},
                                         finish, renew)
                    return True
        if kind == "refund":
            known_refunds = await self.store.known_refund_ids(reservation.order_id)
            for ref in order.get("refunds") or []:
                if ref["refund_id"] not in known_refunds and \
                        _same_money(ref, body, "refunded_amount"):
                    await self._complete(step, 201, {"refund_id": ref["refund_id"]},
                                         finish, renew)
                    return True
        return False

    async def _complete(self, step: Step, status: int, result: dict[str, Any],
                        finish: dict[str, Any] | None, renew: Any) -> None:
        """Record a step's success; stop if our lease is gone (another runner owns it)."""
        owned = await self.store.complete_step(step.journal_id, step.step, status, result,
                                               finish=finish, renew=renew)
        if not owned and renew is not None:
            raise LeaseLostError(f"journal {step.journal_id}")

    async def _send_step(self, merchant: Merchant, step: Step, deadline: float,
                         finish: dict[str, Any] | None = None, renew: Any = None) -> None:
        resp = await self.om.request(merchant, step.http_method, step.path, step.body,
                                     idempotency_key=step.idempotency_key, deadline=deadline)
        result: dict[str, Any] = {}
        kind = (step.effect or {}).get("kind")
        if kind == "capture":
            result["capture_id"] = created_id(resp, "capture")
        elif kind == "refund":
            result["refund_id"] = created_id(resp, "refund")
        await self._complete(step, resp.status, result, finish, renew)

    async def _read_order(self, merchant: Merchant, reservation: Reservation,
                          deadline: float) -> dict[str, Any]:
        """GET the order; adopt captures/refunds made outside the gateway before acting."""
        try:
            order = await self.om.get_order(merchant, reservation.order_id, deadline=deadline)
        except RestResponseError as e:
            if e.retryable:
                raise DeadlineExceededError(RestTransportError(str(e))) from e
            raise rest_error_to_fault(e, what="order") from None
        captures = list(order.get("captures") or [])
        refunds = list(order.get("refunds") or [])
        if captures or refunds:
            invnos, refund_ids = await self.store.adopt(reservation, captures, refunds)
            if invnos or refund_ids:
                order["_adopted"] = True
                log.info("adopted captures {invnos} and refunds {refunds} made outside the "
                         "gateway on order {order_id}", invnos=invnos, refunds=refund_ids,
                         order_id=reservation.order_id)
        if order.get("status") != reservation.status:
            await self.store.set_reservation_status(reservation.id, str(order.get("status")))
        return order

    # -- recovery -----------------------------------------------------------------------

    async def resume(self, entry: JournalEntry) -> str:
        """Finish an unfinished journal entry left by a crash or an exhausted budget.

        Returns a one-word outcome for reports: done, failed, pending or skipped.
        """
        merchant = self.config.merchant(entry.eid)
        if merchant is None:
            return "skipped"
        token = uuid.uuid4().hex
        fresh = await self.store.take_over(entry.id, token, self.lease_seconds)
        if fresh is None:
            return "skipped"
        entry = fresh  # decide from the entry as it is now, not as the sweep listed it
        if not entry.steps:
            await self.store.finish_call(
                entry.id, fault_code=int(FaultCode.TIMEOUT),
                fault_string="timeout: the call ended before any request was sent",
                token=token)
            return "failed"
        call = call_from_json(entry.call)
        deadline = self.reactor.seconds() + self.budget
        try:
            begin = await self.store.resolve(BeginResult("run", entry), call.eid,
                                             getattr(call, "rno", None),
                                             getattr(call, "invno", None), token,
                                             self.lease_seconds)
            await self._run_claimed(merchant, call, begin, token, deadline)
        except UpstreamUnavailableError:
            return "pending"
        except GatewayError:
            return "failed"
        return "done"


def _what(call: DecodedCall) -> str:
    """Which legacy id a REST 404 refers to (9109 for reservations, 8101 for invoices)."""
    if isinstance(call, (CreditPart, CreditInvoice, EmailInvoice, SendInvoice)):
        return "invoice"
    return "order"


def _line_key(lines: Any) -> list[tuple[Any, ...]]:
    return sorted((str(ln.get("reference")), int(ln.get("quantity") or 0),
                   int(ln.get("total_amount") or 0)) for ln in lines or [])


def _same_money(found: dict[str, Any], body: dict[str, Any], amount_key: str) -> bool:
    """Is a capture/refund we have no row for the one a journaled step sent? Same amount,
    same lines and same reference/description — never just the amount, or a portal
    capture of equal value would be booked as ours."""
    if int(found.get(amount_key, -1)) != int(body[amount_key]):
        return False
    if body.get("order_lines") and _line_key(found.get("order_lines")) != \
            _line_key(body.get("order_lines")):
        return False
    return all(found.get(k) == body[k] for k in ("reference", "description") if k in body)


def entry_invno(entry: JournalEntry, call: DecodedCall) -> str | None:
    if isinstance(call, Activate):
        for step in entry.steps:
            if step.effect and step.effect.get("kind") == "capture":
                return str(step.effect["invno"])
        return None
    return getattr(call, "invno", None)


_CALL_TYPES: dict[str, type] = {
    "activate": Activate, "cancel_reservation": CancelReservation, "update": Update,
    "credit_part": CreditPart, "credit_invoice": CreditInvoice,
    "extend_expiry_date": ExtendExpiryDate, "email_invoice": EmailInvoice,
    "send_invoice": SendInvoice,
}


def call_from_json(data: dict[str, Any]) -> DecodedCall:
    """Rebuild a decoded call from its journal JSON (recovery needs only ids and method)."""
    from gateway.legacy.calls import Address, ArtNo, Goods, ShipmentInfo

    data = dict(data)
    cls = _CALL_TYPES[data.pop("method")]
    if "artnos" in data:
        data["artnos"] = tuple(ArtNo(**a) for a in data["artnos"])
    if "goods" in data:
        data["goods"] = tuple(Goods(**{**g, "vat": Decimal(g["vat"]),
                                       "discount": Decimal(g["discount"])})
                              for g in data["goods"])
    for key in ("dlv_addr", "bill_addr"):
        if data.get(key) is not None:
            data[key] = Address(**data[key])
    if "shipment_info" in data:
        data["shipment_info"] = ShipmentInfo(**data["shipment_info"])
    return cls(**data)  # type: ignore[no-any-return]


def _strip_symbol(fault_string: str) -> str:
    head, sep, tail = fault_string.partition(": ")
    return tail if sep and " " not in head else fault_string


def _sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
