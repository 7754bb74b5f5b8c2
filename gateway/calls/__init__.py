"""Every legacy call the gateway serves, one module each, registered in one place.

``REGISTRY`` is what the edge (authentication and decoding), the engine (plan and reply),
``explain`` and the generated docs/translation.md read. To add a call: write ``gateway/calls/<name>.py`` declaring
its ``SPEC`` (see :class:`~gateway.calls.spec.CallSpec`) and list it below; the registry
checks the declaration when this package is imported. Pure: no Twisted, no store.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.calls import (
    activate,
    activate_reservation,
    cancel_reservation,
    check_order_status,
    change_reservation,
    credit_invoice,
    credit_part,
    email_invoice,
    extend_expiry_date,
    invoice_address,
    invoice_amount,
    invoice_part_amount,
    return_amount,
    send_invoice,
    update,
    update_orderno,
)
from gateway.calls import recurring_order as recurring_call
from gateway.calls.not_offered import NOT_OFFERED
from gateway.calls.registry import CallRegistry
from gateway.calls.spec import CallSpec, Ref, Target
from gateway.wire.digest import DigestParts, verify
from gateway.wire.values import LegacyCall

__all__ = ["REGISTRY", "CallSpec", "Ref", "Target", "decode_call", "digest_parts",
           "verify_digest"]

REGISTRY = CallRegistry(
    served=(
        activate.SPEC,
        cancel_reservation.SPEC,
        update.SPEC,
        credit_part.SPEC,
        credit_invoice.SPEC,
        extend_expiry_date.SPEC,
        email_invoice.SPEC,
        send_invoice.SPEC,
        check_order_status.SPEC,
        activate_reservation.SPEC,
        change_reservation.SPEC,
        return_amount.SPEC,
        update_orderno.SPEC,
        invoice_amount.SPEC,
        invoice_part_amount.SPEC,
        invoice_address.SPEC,
    ),
    not_offered=NOT_OFFERED,
    internal=(recurring_call.SPEC,),
)


# -- conveniences for tests, explain and the console (the edge uses REGISTRY directly) --


def digest_parts(method: str, params: Sequence[Any]) -> DigestParts:
    """The parts the SDKs hash for a served call (``KeyError`` for any other method)."""
    return REGISTRY.spec(method).digest(params)


def verify_digest(method: str, params: Sequence[Any], secret: bytes) -> bool:
    """Whether a served call's digest matches ``secret`` in any SDK dialect and hash."""
    spec = REGISTRY.spec(method)
    if len(params) <= spec.digest_at:
        return False
    return verify(spec.digest(params), params[spec.digest_at], secret)


def decode_call(method: str, params: Sequence[Any]) -> LegacyCall:
    """Envelope, arity and typed decode of a served call (no authentication)."""
    return REGISTRY.spec(method).decode_params(params)
