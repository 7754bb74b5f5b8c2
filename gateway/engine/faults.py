"""Every failure inside the engine becomes a legacy fault here, and nowhere else.

Two questions are answered for any exception raised while running a call: which fault the
client sees (:func:`rest_error_to_fault`, docs/legacy-protocol.md#rest-refusals-as-faults),
and what happens to the journal entry (:func:`disposition`): finished with that fault, or
left pending and resumable (its outcome is unknown: the client is told 9119 and its retry
continues it).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from gateway.calls.spec import Target
from gateway.errors import (
    AmountError,
    FaultCode,
    GatewayError,
    GoodsListError,
    MerchantMisconfiguredError,
    NotAllowedError,
    UnknownInvoiceError,
    UnknownReservationError,
    UpstreamUnavailableError,
)
from gateway.model import CaptureEffect, Step
from gateway.om.client import (
    DeadlineExceededError,
    RestResponseError,
    RestTransportError,
)
from gateway.store.journal import LeaseLostError


class GaveUpError(GatewayError):
    """A journal entry was given up (recorded as failed, fault 9119): see ``give_up_seconds``.
    Unlike a plain 9119 it ends the entry, so the client's next call starts afresh."""

    fault_code = FaultCode.TIMEOUT


class Disposition(str, Enum):
    """What becomes of the journal entry after an exception."""

    FINISH = "finish"  # a definitive answer: record the fault, end the entry
    RESUMABLE = "resumable"  # outcome unknown: keep it pending, free its lease, answer 9119
    LOST = "lost"  # another runner took the entry over: it owns the outcome
    BUG = "bug"  # not ours to interpret: keep it pending for recovery, answer -32603


@dataclass(frozen=True)
class Failure:
    disposition: Disposition
    fault: GatewayError | None


def disposition(e: BaseException, target: Target) -> Failure:
    """Classify an exception raised while running a claimed call (pure)."""
    if isinstance(e, LeaseLostError):
        return Failure(Disposition.LOST, UpstreamUnavailableError(
            "the call is being completed elsewhere; retry the same call"))
    if isinstance(e, (DeadlineExceededError, RestTransportError)):
        last = e.last if isinstance(e, DeadlineExceededError) else e
        return Failure(Disposition.RESUMABLE, UpstreamUnavailableError(
            "Klarna did not answer in time; retry the same call to continue it",
            correlation_id=getattr(last, "correlation_id", None), debug_context=str(last)))
    if isinstance(e, UpstreamUnavailableError):
        return Failure(Disposition.RESUMABLE, e)
    if isinstance(e, RestResponseError):
        return Failure(Disposition.FINISH, rest_error_to_fault(e, target))
    if isinstance(e, GatewayError):
        return Failure(Disposition.FINISH, e)
    return Failure(Disposition.BUG, None)


def rest_error_to_fault(e: RestResponseError, target: Target) -> GatewayError:
    """Map a definitive REST refusal to the legacy fault table
    (docs/legacy-protocol.md#rest-refusals-as-faults), keeping Klarna's ``error_code`` on the
    fault for edges that speak REST."""
    fault = _fault_for(e, target)
    fault.rest_error_code = e.error_code
    return fault


def _fault_for(e: RestResponseError, target: Target) -> GatewayError:
    message = "; ".join(e.messages) or (e.error_code or f"HTTP {e.status}")
    cid = e.correlation_id
    if e.status == 401:
        return MerchantMisconfiguredError("Klarna refused the gateway's REST credentials "
                                          "for this eid", correlation_id=cid)
    if e.status == 404:
        if target is Target.INVOICE:
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
        if "order_lines" in message:
            return GoodsListError(f"Klarna refused the request: {message}", correlation_id=cid)
        return NotAllowedError(f"Klarna refused the request: {message}", correlation_id=cid)
    if e.status == 429 or e.status >= 500:
        return UpstreamUnavailableError("Klarna is unavailable, retry the same call",
                                        correlation_id=cid)
    return NotAllowedError(f"Klarna refused: {message}", correlation_id=cid)


def refusal(e: RestResponseError, target: Target, applied: Sequence[str],
            not_applied: Sequence[str]) -> GatewayError:
    """A step refused by Klarna; when the call has several steps, the fault names what was
    and was not applied (v2 applied an update atomically, REST cannot)."""
    fault = rest_error_to_fault(e, target)
    if applied or len(not_applied) > 1:
        fault.public_message = (f"{fault.public_message} (applied: "
                                f"{'; '.join(applied) or 'nothing'}; "
                                f"not applied: {'; '.join(not_applied)})")
    return fault


def replayed_fault(fault_code: int, fault_string: str) -> GatewayError:
    """The recorded fault of a finished twin, raised again for the caller."""
    head, sep, tail = fault_string.partition(": ")
    message = tail if sep and " " not in head else fault_string
    return GatewayError(message, code=FaultCode(fault_code))


def step_applied(step: Step) -> str:
    """What an applied step did, for a fault naming it: a capture with its invno (the ERP
    needs the number of an invoice that exists even though the call failed)."""
    if isinstance(step.effect, CaptureEffect) and step.effect.invno:
        return f"{step.purpose} as invoice {step.effect.invno}"
    return step.purpose
