"""Authenticate and decode a legacy call, once, at the edge.

Order of checks (docs/legacy-protocol.md#order-of-checks), the same for every method:

1. the method name: unknown to the legacy API → -32601;
2. the envelope and the eid at the method's eid position → -32602;
3. the boundary every edge shares (:func:`gateway.boundary.admit`): the eid → merchant
   (unknown → 9113, whatever the method), a client outside the merchant's
   ``allowed_networks`` → 1999, then the digest, in any SDK dialect and hash → 9114 (a
   missing digest → -32602);
4. a real legacy call the gateway does not offer → 9103, naming why;
5. arity and the typed decode → -32602 / 9107 / 3210, naming the parameter.

The engine receives an :class:`AuthenticatedCall` and never looks at raw parameters.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.boundary import BoundaryError, Refused, admit
from gateway.config import Merchant
from gateway.errors import (
    GatewayError, InvalidDigestError, InvalidParamsError, MerchantMisconfiguredError,
    MethodNotFoundError, NotAllowedError, UnknownEstoreError,
)
from gateway.wire import params as p
from gateway.wire.digest import redact, verify
from gateway.wire.values import LegacyCall

if TYPE_CHECKING:
    from gateway.calls.registry import CallRegistry
    from gateway.calls.spec import CallSpec, NotOffered


#: The boundary's refusals as legacy faults.
_FAULTS: dict[Refused, Callable[[str], GatewayError]] = {
    Refused.UNKNOWN_MERCHANT: UnknownEstoreError,
    Refused.NETWORK: MerchantMisconfiguredError,
    Refused.CREDENTIAL: InvalidDigestError,
}


@dataclass(frozen=True)
class AuthenticatedCall:
    """A call whose merchant and digest were checked, decoded into its dataclass."""

    merchant: Merchant
    spec: CallSpec[Any]
    call: LegacyCall


class InvoiceCallNotOffered(NotAllowedError):
    """A call on a passive invoice (there are none in REST): the answer depends on whether
    the invoice exists, which the dispatcher looks up (v2: active → its fault, else 8101)."""

    def __init__(self, message: str, *, eid: int, invno: str, known_fault: int) -> None:
        super().__init__(message)
        self.eid = eid
        self.invno = invno
        self.known_fault = known_fault


def _not_offered(eid: int, method: str, params: Sequence[Any], entry: NotOffered
                 ) -> NotAllowedError:
    message = f"{method} is not offered by this gateway: {entry.reason}"
    if entry.invno_at is None or entry.known_invoice_fault is None \
            or len(params) <= entry.invno_at:
        return NotAllowedError(message)
    try:
        invno = p.identifier(params[entry.invno_at], "invno")
    except InvalidParamsError:
        return NotAllowedError(message)
    return InvoiceCallNotOffered(message, eid=eid, invno=invno,
                                 known_fault=entry.known_invoice_fault)


class Authenticator:
    """Checks eid and digest and decodes, with the registry's declarations.

    Args:
        merchant: ``eid -> Merchant | None`` (the configuration's lookup).
        registry: the served calls and the known-but-unoffered ones.
    """

    def __init__(self, merchant: Callable[[int], Merchant | None],
                 registry: CallRegistry) -> None:
        self._merchant = merchant
        self._registry = registry

    def authenticate(self, method: str, params: Sequence[Any], client: str | None = None
                     ) -> AuthenticatedCall:
        """``client``: the peer's IP address (``None``: a UNIX socket, a local client), checked
        against the merchant's ``allowed_networks`` before anything else about the call."""
        lookup = self._registry.lookup(method)
        if lookup is None:
            raise MethodNotFoundError(f"unknown method {redact(method[:64])}")
        eid = p.eid_at(params, lookup.eid_at)
        rule = lookup.spec.digest if lookup.spec is not None else (
            lookup.not_offered.digest if lookup.not_offered is not None else None)

        def authentic(merchant: Merchant) -> bool:
            if lookup.digest_at is None:
                return True
            if len(params) <= lookup.digest_at:
                raise InvalidParamsError(f"digest (parameter {lookup.digest_at}) is missing")
            return rule is None or verify(rule(params), params[lookup.digest_at],
                                          merchant.secret_bytes)
        try:
            merchant = admit("xmlrpc", eid, client, self._merchant, authentic)
        except BoundaryError as e:
            raise _FAULTS[e.reason](str(e)) from None
        if lookup.spec is None:
            assert lookup.not_offered is not None
            raise _not_offered(eid, method, params, lookup.not_offered)
        return AuthenticatedCall(merchant, lookup.spec, lookup.spec.decode_params(params, eid))

    def eid_of(self, method: str, params: Sequence[Any]) -> int | None:
        """The call's eid for logs, if it can be read; never raises."""
        lookup = self._registry.lookup(method)
        if lookup is None:
            return None
        try:
            return p.eid_at(params, lookup.eid_at)
        except InvalidParamsError:
            return None
