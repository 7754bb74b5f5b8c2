"""Behaviour profiles: where v2 refused what REST allows, one declared rule each.

A merchant's ``profile`` (configuration) is ``default`` or ``v2-strict``. The default keeps
the gateway's REST-friendly behaviour (documented in the README); ``v2-strict`` refuses,
with v2's fault codes, what v2 refused where Order Management is laxer. Every rule is one
declaration here (as cadwyn declares one API difference per object), checked before the
call is planned, rendered as a row of the README's "Where v2 and REST differ" table (a
test compares the two) and exercised by its own test.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from gateway.errors import (
    BadArtnoListError, InvoiceNotActiveError, NotAllowedError,
)
from gateway.legacy.values import LegacyCall
from gateway.translate.expiry import parse_rest_timestamp
from gateway.translate.plan import OrderContext


class Profile(str, Enum):
    DEFAULT = "default"
    V2_STRICT = "v2-strict"


#: v2's order-management rule: an order can be activated 30 minutes after it was placed.
ACTIVATION_DELAY_SECONDS: Final = 30 * 60


@dataclass(frozen=True)
class Rule:
    """One difference between v2 and REST that the v2-strict profile restores.

    ``check(call, ctx)`` raises v2's fault when the call would have been refused by v2;
    ``v2`` and ``rest`` are the README's columns (what v2 did, what the default does).
    """

    id: str
    calls: frozenset[str]
    v2: str
    rest: str
    check: Callable[[Any, OrderContext], None]


def _captured(ctx: OrderContext) -> int:
    return int(ctx.order.get("captured_amount", 0) or 0)


def _no_change_after_activation(call: Any, ctx: OrderContext) -> None:
    if _captured(ctx) > 0:
        raise NotAllowedError(f"cannot {call.method}: the reservation is already activated "
                              "(v2 allows changes only before activation; refund instead)")


def _activation_delay(call: Any, ctx: OrderContext) -> None:
    """On Klarna's clock (the Date of the order's GET), which wrote ``created_at``: a
    gateway host whose clock is off, or a seeded sandbox frozen at its epoch, must not
    shift the rule."""
    created = ctx.order.get("created_at")
    now = ctx.klarna_now
    if not created or now is None:
        return
    ready = parse_rest_timestamp(str(created)).timestamp() + ACTIVATION_DELAY_SECONDS
    if now < ready:
        wait = int(ready - now + 59) // 60
        raise NotAllowedError(f"cannot activate yet: an order can be activated 30 minutes "
                              f"after it was placed (retry in {wait} min)")


def _cancel_twice(call: Any, ctx: OrderContext) -> None:
    if ctx.status == "CANCELLED":
        raise NotAllowedError("cannot cancel the reservation: it is already cancelled")


def _unknown_artno_is_bad_list(call: Any, ctx: OrderContext) -> None:
    invoice = ctx.invoice
    if invoice is None:
        return
    refs = {str(ln.get("reference")) for ln in invoice.lines}
    unknown = [a.artno for a in getattr(call, "artnos", ()) if a.artno not in refs]
    if unknown:
        raise BadArtnoListError(f"artno {unknown[0]} is not on invoice {invoice.invno}")


def _fully_credited(call: Any, ctx: OrderContext) -> None:
    invoice = ctx.invoice
    if invoice is not None and invoice.refundable <= 0:
        raise InvoiceNotActiveError(f"invoice {invoice.invno} is fully credited and no "
                                    "longer active")


STRICT_RULES: Final[tuple[Rule, ...]] = (
    Rule("update-after-activation", frozenset({"update", "change_reservation"}),
         "9103: a reservation can be changed only before it is activated",
         "changes the authorization, addresses and references of a part-captured order",
         _no_change_after_activation),
    Rule("activation-delay", frozenset({"activate", "activate_reservation"}),
         "9103: an order can be activated 30 minutes after it was placed",
         "captures at once", _activation_delay),
    Rule("cancel-cancelled", frozenset({"cancel_reservation"}),
         "9103: the reservation is already cancelled",
         "answers \"ok\" (a client retrying after a lost answer gets no error)",
         _cancel_twice),
    Rule("credit-unknown-artno", frozenset({"credit_part", "invoice_part_amount"}),
         "9107 bad_artnolist: an artno not on the invoice",
         "9108 unknown_artno", _unknown_artno_is_bad_list),
    Rule("fully-credited-invoice",
         frozenset({"credit_part", "credit_invoice", "return_amount", "email_invoice",
                    "send_invoice"}),
         "8103 invoice_not_active: a fully credited invoice is no longer active",
         "2102 for a credit (nothing left); sends the invoice again", _fully_credited),
)


def rules_for(profile: str) -> tuple[Rule, ...]:
    return STRICT_RULES if profile == Profile.V2_STRICT.value else ()


def check(profile: str, call: LegacyCall, ctx: OrderContext) -> None:
    """Raise v2's fault if the merchant's profile refuses this call in this state."""
    for rule in rules_for(profile):
        if call.method in rule.calls:
            rule.check(call, ctx)


def readme_rows() -> list[str]:
    """The README's "Where v2 and REST differ" table rows (a test keeps them equal)."""
    return [f"| `{r.id}` | {', '.join(f'`{c}`' for c in sorted(r.calls))} | {r.v2} | {r.rest} |"
            for r in STRICT_RULES]
