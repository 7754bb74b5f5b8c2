"""The shape of a legacy call's declaration: one :class:`CallSpec` per served call.

Each module in ``gateway.calls`` declares everything about one legacy call in one place:
its name and parameter positions, the digest parts the SDKs hash, the typed decode, the
pure plan (decoded call + order state → REST steps + v2/REST notes), the reply (built from
a :class:`~gateway.translate.plan.Result`, the same way for every call) and what kind of
money it moves. The registry (``gateway.calls.registry``) checks every declaration when it
is imported, in the spirit of cadwyn's ``VersionBundle``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from gateway.model import MoneyKind
from gateway.translate.plan import OrderContext, Plan, Result
from gateway.wire import params as p
from gateway.wire.digest import DigestParts
from gateway.wire.values import LegacyCall

C = TypeVar("C", bound=LegacyCall)


class Target(str, Enum):
    """Which legacy number a call names, so the engine knows what to resolve and which fault
    an unknown number gets (9109 for reservations, 8101 for invoices)."""

    RESERVATION = "reservation"
    INVOICE = "invoice"
    #: The call itself says what it names (``CallSpec.locate``): check_order_status.
    LOOKUP = "lookup"
    #: Located by ``locate``: an rno or an invno, whichever exists.
    ANY_NUMBER = "any_number"
    #: Located by ``locate``: the merchant's own order id (merchant_reference1/2).
    MERCHANT_ORDER = "merchant_order"
    #: The call names no order: it creates one (a recurring purchase).
    NONE = "none"


@dataclass(frozen=True)
class Ref:
    """The number a decoded call names: an rno or an invno."""

    target: Target
    value: str


@dataclass(frozen=True)
class CallSpec(Generic[C]):
    """Everything the gateway knows about one served legacy call.

    Attributes:
        name: the XML-RPC method name.
        call_type: the frozen dataclass ``decode`` returns (its ``method`` equals ``name``).
        eid_at / digest_at: positions (from p0) of the eid and the digest.
        arity: the parameter counts the SDKs send (optional trailing parameters included).
        target: what the call names (an rno or an invno).
        money: capture, refund or none (the engine's money guards read this).
        digest: ``params -> DigestParts`` as the SDKs build it.
        decode: ``(eid, client_version, params) -> call`` (raises the -32602/9107/3210 faults).
        plan: ``(call, ctx) -> Plan``, pure.
        reply: ``(call, result) -> XML-RPC value`` in exactly the shape the SDKs parse.
        summary: one line: what the call becomes in REST, and its reply (``explain``
            prints it; ``docs/translation.md`` renders it).
        differences: where v2 and REST differ for every call of this method, one sentence
            each, true whatever the order's state (the per-order notes of a plan say what
            applied to one call). ``explain`` prints them after the plan and
            ``docs/translation.md`` is generated from them (``python -m gateway.tools.docs``).
        locate: with ``target`` LOOKUP, how the call names its order.
        reply_reads_order: the reply needs the order as it is after the steps (the engine
            reads it again before building the reply; extend_expiry_date's new date).
        free_text: the call's fields whose free text goes to REST (names, addresses,
            article titles and references, shipping info, descriptions), which the
            merchant's ``text_repair`` checks for mojibake (``gateway.calls.text_repair``).
        line_keys: the call's artno lists that name lines the order already has; their
            text is repaired only to name the line Klarna holds (same module).
        read_only: the call only reads (``invoice_amount``, ``invoice_address`` ...): its
            answer is worked out from the order as it is now, every time. The engine never
            replays an earlier identical call's reply for it (coalescing protects mutations
            from a client's retry; for a read it would answer an amount from before a
            credit made in between).
    """

    name: str
    call_type: type[C]
    eid_at: int
    digest_at: int
    arity: tuple[int, ...]
    target: Target
    money: MoneyKind
    digest: Callable[[Sequence[Any]], DigestParts]
    decode: Callable[[int, str, Sequence[Any]], C]
    plan: Callable[[C, OrderContext], Plan]
    reply: Callable[[C, Result], Any]
    summary: str
    reply_reads_order: bool = False
    #: For ``Target.LOOKUP``: what the decoded call names (an ANY_NUMBER or MERCHANT_ORDER
    #: :class:`Ref`).
    locate: Callable[[C], Ref] | None = None
    read_only: bool = False
    free_text: tuple[str, ...] = ()
    line_keys: tuple[str, ...] = ()
    differences: tuple[str, ...] = ()

    def decode_params(self, params: Sequence[Any], eid: int | None = None) -> C:
        """Arity and typed decode of this call's raw parameters: the one decode path the
        edge (after authentication, with the eid it read), the replay and the tests share.
        The eid is read from its position unless given."""
        if eid is None:
            eid = p.eid_at(params, self.eid_at)
        p.arity(self.name, params, self.arity)
        return self.decode(eid, params[1], params)

    def ref(self, call: LegacyCall) -> Ref:
        """The number this call names."""
        if self.locate is not None:
            return self.locate(call)  # type: ignore[arg-type]
        if self.target is Target.NONE:
            return Ref(Target.NONE, "")
        field = "rno" if self.target is Target.RESERVATION else "invno"
        return Ref(self.target, str(getattr(call, field)))


@dataclass(frozen=True)
class NotOffered:
    """A real legacy call the gateway does not serve (→ 9103 after eid and digest checks).

    ``digest`` may be ``None`` where the SDKs' digest rule is not known exactly; the eid is
    then still checked (an unknown eid is 9113 whatever the method).
    """

    name: str
    eid_at: int
    reason: str
    digest_at: int | None = None
    digest: Callable[[Sequence[Any]], DigestParts] | None = None
    #: Calls on passive invoices: where their invno is, and the fault v2 gave for an invoice
    #: that exists but is active (every invoice the gateway knows is one capture: active).
    invno_at: int | None = None
    known_invoice_fault: int | None = None
