"""``activate`` (eid, digest, rno, activateInfo) → ``["ok", invno]``: capture, all or by artno.

REST: ``GET order``, then ``POST /orders/{id}/captures``. Full activation captures exactly
``remaining_authorized_amount`` (never a recomputed sum: rounding drift is how captures get
refused). Partial activation captures the listed quantities of the lines whose
``reference`` is the artno, split so that a line captured in several parts sums exactly to
the line (``gateway.translate.split``). The invno is issued when the plan is journaled.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.activation import (
    Activation, add_capture_extras, flag_notes, remaining_to_activate, reply,
)
from gateway.calls.spec import CallSpec, Target
from gateway.errors import AmountError
from gateway.model import CaptureEffect, MoneyKind
from gateway.translate.money import lines_total
from gateway.translate.plan import OrderContext, Plan, RestStep, qty_by_reference
from gateway.translate.split import plan_partial_capture, remaining_lines
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, artno_pairs, param, protocol_prefix
from gateway.wire.values import ArtNo


@dataclass(frozen=True)
class Activate(Activation):
    artnos: tuple[ArtNo, ...] = ()
    cust_no: str = ""
    bclass: int | None = None

    method = "activate"


#: activateInfo keys hashed when present as keys, in this order (docs/legacy-protocol.md#activate).
_OPTIONAL_KEYS: Final = (
    "bclass", "cust_no", "flags", "ocr", "orderid1", "orderid2", "reference", "reference_code",
)


def digest(params: Sequence[Any]) -> DigestParts:
    """``4:1:<version>:eid:rno``, each present optional key, ``delay_adjust``, artno:qty…"""
    parts = protocol_prefix(params)
    info = param(params, 5)
    if not isinstance(info, dict):
        info = {}
    parts.extend(info[key] for key in _OPTIONAL_KEYS if key in info)
    shipment = info.get("shipment_info")
    parts.append(shipment.get("delay_adjust") if isinstance(shipment, dict) else None)
    parts.extend(artno_pairs(info.get("artnos")))
    return DigestParts(parts)


def decode(eid: int, version: str, params: Sequence[Any]) -> Activate:
    p.digest(params[3])
    rno = p.identifier(params[4], "rno")
    name = "activateInfo"
    info = p.struct(params[5], name)
    shipment = p.struct(info.get("shipment_info", {}), f"{name}.shipment_info")
    bclass = info.get("bclass")
    return Activate(
        eid=eid,
        client_version=version,
        rno=rno,
        artnos=p.artnos(info.get("artnos", []), f"{name}.artnos"),
        ocr=p.text(info.get("ocr", ""), f"{name}.ocr"),
        flags=p.flags(info.get("flags", 0), f"{name}.flags"),
        orderid1=p.text(info.get("orderid1", ""), f"{name}.orderid1"),
        orderid2=p.text(info.get("orderid2", ""), f"{name}.orderid2"),
        reference=p.text(info.get("reference", ""), f"{name}.reference"),
        reference_code=p.text(info.get("reference_code", ""), f"{name}.reference_code"),
        cust_no=p.text(info.get("cust_no", ""), f"{name}.cust_no"),
        bclass=None if bclass in (None, "") else p.integer(bclass, f"{name}.bclass"),
        shipment_info=p.shipment_info(shipment, f"{name}.shipment_info"),
    )


def plan(call: Activate, ctx: OrderContext) -> Plan:
    order = ctx.order
    remaining = remaining_to_activate(order, "activate")
    body, notes = _capture_body(call, order, remaining)
    add_capture_extras(body, call)
    notes += flag_notes(call.flags)
    step = RestStep(
        "POST", f"{ctx.base}/captures", body,
        purpose=("capture " + ("listed articles" if call.artnos else "everything uncaptured")
                 + f" ({body['captured_amount']} minor units)"),
        effect=CaptureEffect(reservation_id=ctx.reservation.id, order_id=ctx.order_id,
                             status_after=("CAPTURED" if body["captured_amount"] == remaining
                                           else "PART_CAPTURED")),
    )
    return Plan(steps=(step,), notes=tuple(notes))


def _capture_body(call: Activate, order: Any, remaining: int
                  ) -> tuple[dict[str, Any], list[str]]:
    """The capture's amount and lines: the listed articles, or everything uncaptured."""
    order_lines = list(order.get("order_lines") or [])
    captured_qty = qty_by_reference(list(order.get("captures") or []))
    if call.artnos:
        lines = plan_partial_capture(order_lines, captured_qty, call.artnos)
        amount = lines_total(lines)
        if amount <= 0:
            raise AmountError("the listed articles add up to nothing to capture")
        if amount > remaining:
            raise AmountError(f"the listed articles amount to {amount}, "
                              f"only {remaining} remains authorized")
        return {"captured_amount": amount, "order_lines": lines}, []
    body: dict[str, Any] = {"captured_amount": remaining}
    try:
        rest = remaining_lines(order_lines, captured_qty)
    except ValueError:  # Klarna's own lines break their arithmetic: send none
        rest = []
    if rest and lines_total(rest) == remaining:
        body["order_lines"] = rest
        return body, []
    return body, ["full activation captured remaining_authorized_amount without order lines: "
                  "the uncaptured lines do not add up to it"]


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "A partial activation names order lines by artno: each artno fills the lines whose "
    "`reference` equals it, in order, never with more units than remain uncaptured (9107); an "
    "artno on no line is 9108; the amounts are the order's own, split exactly "
    "(docs/order-management.md#partial-captures-and-refunds).",
    "A full activation (no artnos) captures exactly `remaining_authorized_amount` as Klarna "
    "reports it, and sends the uncaptured lines only when they add up to it (otherwise none, "
    "with a note).",
    "`shipment_info` becomes the capture's `shipping_info`: `shipping_company` as is, "
    "`tracking_no` → `tracking_number`, `return_tracking_no` → `return_tracking_number`, "
    "`shipping_product` → `shipping_method` only when it names one of REST's methods; "
    "`delay_adjust` is not sent.",
    "`orderid1` becomes the capture's `reference` and `ocr` its `description`; `orderid2`, "
    "`reference`, `reference_code`, `cust_no` and `bclass` are not sent.",
    "Flags: `RSRV_SEND_BY_EMAIL`/`RSRV_SEND_BY_MAIL` need no extra call (a capture notifies the "
    "customer), `TEST_MODE` is only recorded in the journal (REST has no per-capture test mode), "
    "`RSRV_PRESERVE_RESERVATION` is REST's default (the rest stays authorized).",
    "Nothing left to capture, or listed articles worth more than remains, is 2102; fraud review "
    "PENDING (retry later) or REJECTED/STOPPED is 9103.",
    "The reply is always `[\"ok\", invno]`: the gateway never answers `\"no_risk\"`. The invoice "
    "number is issued when the capture is journaled, before it is sent, so a retry of the call "
    "answers the same number.",
)


SPEC = CallSpec(
    name="activate", call_type=Activate, eid_at=2, digest_at=3, arity=(6,),
    target=Target.RESERVATION, money=MoneyKind.CAPTURE, digest=digest, decode=decode,
    plan=plan, reply=reply, free_text=("shipment_info",), line_keys=("artnos",),
    summary="GET order, POST captures (remaining_authorized_amount, or the listed artnos' "
            "quantities split exactly) → [\"ok\", invno]",
    differences=DIFFERENCES,
)
