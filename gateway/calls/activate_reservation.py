"""``activate_reservation`` (28 parameters, eid p17, digest p18) → ``["ok", invno]``: the older
activation path (PHP SDKs 2.0–2.2 activate only with it; PY, P2 and P4 have it).

REST: ``GET order``, ``POST /orders/{id}/captures`` of the goods list's lines, then, unless
``flags`` has RSRV_PRESERVE_RESERVATION (16), ``POST release-remaining-authorization`` when
anything is left uncaptured (v2 ended the reservation with its activation; PRESERVE kept the
rest reserved, which is what REST does anyway).

The capture: each goods row names an order line by ``reference`` = artno (the title when the
artno is empty) and a quantity (rows of quantity 0 are skipped). The amounts are the
order's authorised lines', split exactly (:mod:`gateway.translate.split`), never the goods
list's prices: the goods rows are converted only to be checked (3210 naming the row) and to
note a price that differs. ``orderid1`` → capture ``reference``, ``ocr`` → ``description``,
``shipinfo`` (p23) → ``shipping_info``, as ``activate`` does.

v2 re-sent the customer and the purchase with the activation: pno, gender, addresses, client
IP, currency/country/language, pno encoding, pclass, comment and the travel/income/bank/extra
info are not sent to REST (the order holds its customer and purchase); the plan's notes say
so and name a currency, country or shipping address that differs from the order's. The pno
is checked and hashed but not kept (it is a personal identity number).

Digest: ``eid:pno:(goods.artno:qty)*``, a concatenation no SDK filters (an empty artno
stays an empty part).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.activation import (
    Activation, add_capture_extras, flag_notes, remaining_to_activate, reply,
)
from gateway.calls.spec import CallSpec, Target
from gateway.errors import AmountError, GoodsListError, InvalidParamsError
from gateway.model import CaptureEffect, MoneyKind, StatusEffect
from gateway.translate.address import (
    klarna_country_to_alpha2, legacy_address_to_rest, rest_address_equal,
)
from gateway.translate.money import goods_to_order_lines, lines_total
from gateway.translate.plan import OrderContext, Plan, RestStep, qty_by_reference
from gateway.translate.split import plan_partial_capture
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, param
from gateway.wire.values import Address, ArtNo, Goods, ReservationFlag

#: Klarna's currency codes (docs/legacy-protocol.md#constants).
CURRENCIES: Final = {0: "SEK", 1: "NOK", 2: "EUR", 3: "DKK"}
#: The free-form info structs p24–p27: accepted, never sent.
_INFO_PARAMS: Final = ((24, "travelinfo"), (25, "incomeinfo"), (26, "bankinfo"),
                       (27, "extrainfo"))


@dataclass(frozen=True)
class ActivateReservation(Activation):
    goods: tuple[Goods, ...] = ()
    gender: int | None = None
    shipping: Address | None = None
    billing: Address | None = None
    client_ip: str = ""
    currency: int | None = None
    country: int | None = None
    language: int | None = None
    pno_encoding: int | None = None
    pclass: int = -1
    comment: str = ""
    #: The names of the non-empty info structs (p24–p27), for the notes.
    other_info: tuple[str, ...] = ()

    method = "activate_reservation"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid`` (p17), ``pno`` (p4), then ``goods.artno``, ``qty`` of every goods row."""
    parts = [param(params, 17), param(params, 4)]
    rows = param(params, 21)
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict):
            goods = row.get("goods")
            goods = goods if isinstance(goods, dict) else {}
            parts += [goods.get("artno", ""), row.get("qty")]
    return DigestParts(parts, filtered=False)


def _optional_int(value: Any, name: str) -> int | None:
    return None if value in (None, "") else p.integer(value, name)


def decode(eid: int, version: str, params: Sequence[Any]) -> ActivateReservation:
    p.digest(params[18])
    p.text(params[4], "pno")  # hashed by the digest, checked here, never kept
    goods = p.goods_list(params[21], "goods_list")
    if not goods:
        raise GoodsListError("goods_list is empty: it names what to activate")
    shipinfo = p.struct(params[23], "shipinfo")
    other = tuple(name for i, name in _INFO_PARAMS if p.struct(params[i], name))
    return ActivateReservation(
        eid=eid, client_version=version, rno=p.identifier(params[2], "rno"), goods=goods,
        ocr=p.text(params[3], "ocr"), gender=_optional_int(params[5], "gender"),
        reference=p.text(params[6], "reference"),
        reference_code=p.text(params[7], "reference_code"),
        orderid1=p.text(params[8], "orderid1"), orderid2=p.text(params[9], "orderid2"),
        shipping=p.address(params[10], "shipping"), billing=p.address(params[11], "billing"),
        client_ip=p.text(params[12], "client_ip"), flags=p.flags(params[13], "flags"),
        currency=_optional_int(params[14], "currency"),
        country=_optional_int(params[15], "country"),
        language=_optional_int(params[16], "language"),
        pno_encoding=_optional_int(params[19], "pno_encoding"),
        pclass=p.integer(params[20], "pclass"), comment=p.text(params[22], "comment"),
        shipment_info=p.shipment_info(shipinfo, "shipinfo"), other_info=other,
    )


def plan(call: ActivateReservation, ctx: OrderContext) -> Plan:
    order = ctx.order
    remaining = remaining_to_activate(order, "activate the reservation")
    body, notes = _capture_body(call, order, remaining)
    capture = RestStep(
        "POST", f"{ctx.base}/captures", body,
        purpose=f"capture the goods list ({body['captured_amount']} minor units)",
        effect=CaptureEffect(reservation_id=ctx.reservation.id, order_id=ctx.order_id,
                             status_after=("CAPTURED" if body["captured_amount"] == remaining
                                           else "PART_CAPTURED")))
    steps = [capture]
    left = remaining - body["captured_amount"]
    if call.flags & ReservationFlag.PRESERVE_RESERVATION:
        notes.append("PRESERVE_RESERVATION: the uncaptured rest stays authorized")
    elif left > 0:
        steps.append(RestStep(
            "POST", f"{ctx.base}/release-remaining-authorization", None,
            f"release the uncaptured rest ({left} minor units)",
            StatusEffect(reservation_id=ctx.reservation.id, status="CAPTURED")))
        notes.append("v2 ended the reservation with activate_reservation (no "
                     "PRESERVE_RESERVATION): the uncaptured rest is released")
    notes += flag_notes(call.flags & ~ReservationFlag.PRESERVE_RESERVATION)
    notes += not_sent_notes(call, order)
    return Plan(steps=tuple(steps), notes=tuple(notes))


def _capture_body(call: ActivateReservation, order: Mapping[str, Any], remaining: int
                  ) -> tuple[dict[str, Any], list[str]]:
    """The capture of the goods rows' quantities at the order's own amounts."""
    converted = goods_to_order_lines(call.goods)  # validation: 3210 naming the row
    artnos = tuple(ArtNo(line["reference"], line["quantity"]) for line in converted
                   if line["quantity"] > 0)
    if not artnos:
        raise AmountError("every goods_list row has qty 0: nothing to activate")
    order_lines = list(order.get("order_lines") or [])
    lines = plan_partial_capture(order_lines,
                                 qty_by_reference(list(order.get("captures") or [])), artnos)
    amount = lines_total(lines)
    if amount <= 0:
        raise AmountError("the goods list adds up to nothing to capture")
    if amount > remaining:
        raise AmountError(f"the goods list amounts to {amount}, only {remaining} remains "
                          "authorized")
    body: dict[str, Any] = {"captured_amount": amount, "order_lines": lines}
    add_capture_extras(body, call, shipment_field="shipinfo")
    return body, _price_notes(converted, order_lines)


def _price_notes(converted: list[dict[str, Any]], order_lines: list[dict[str, Any]]
                 ) -> list[str]:
    """Name goods rows whose unit price is not the order line's (the order's is captured)."""
    notes = []
    for line in converted:
        match = next((o for o in order_lines if o.get("reference") == line["reference"]),
                     None)
        if match is not None and match.get("unit_price") != line["unit_price"]:
            notes.append(f"goods_list price of {line['reference']!r} ({line['unit_price']}) "
                         f"differs from the order line's ({match.get('unit_price')}): the "
                         "order's amounts were captured")
    return notes


def not_sent_notes(call: ActivateReservation, order: Mapping[str, Any]) -> list[str]:
    """What v2 received with the activation and REST does not take, and what differs."""
    notes = ["not sent to REST (the order already holds its customer and purchase; v2 "
             "re-checked them at activation): pno, gender, addresses, client IP, currency, "
             "country, language, pno_encoding, pclass, comment, reference, reference_code, "
             "orderid2" + "".join(f", {name}" for name in call.other_info)]
    currency = CURRENCIES.get(call.currency) if call.currency is not None else None
    if currency and currency != str(order.get("purchase_currency", currency)).upper():
        notes.append(f"currency {currency} differs from the order's "
                     f"{order.get('purchase_currency')}: the order's stands")
    if call.country is not None:
        country = _alpha2(call.country)
        if country and country != str(order.get("purchase_country", country)).upper():
            notes.append(f"country {country} differs from the order's "
                         f"{order.get('purchase_country')}: the order's stands")
    if call.shipping is not None and not call.shipping.is_empty():
        try:
            given = legacy_address_to_rest(call.shipping, field="shipping")
        except InvalidParamsError:  # only a note: an address that is not sent
            given = {}
        if not rest_address_equal(given, dict(order.get("shipping_address") or {})):
            notes.append("the shipping address differs from the order's and is not changed "
                         "(update's dlv_addr changes it)")
    if call.pclass != -1:
        notes.append(f"pclass {call.pclass} (part payment) has no REST counterpart: the "
                     "order's payment method stands")
    return notes


def _alpha2(code: int) -> str | None:
    try:
        return klarna_country_to_alpha2(code)
    except InvalidParamsError:  # an unknown code only means no note
        return None


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "The goods rows name what to capture: each row's artno (its title when the artno is empty) "
    "and qty name order lines as `activate`'s artnos do (rows of qty 0 are skipped); the amounts "
    "are the order's own, never the goods list's prices (a differing price is noted).",
    "Without `RSRV_PRESERVE_RESERVATION` (16) the uncaptured rest is then released (`POST "
    "release-remaining-authorization`), as v2 ended the reservation; should Klarna refuse the "
    "release after the capture succeeded, the fault names the capture as applied, and the "
    "invoice exists.",
    "`orderid1` becomes the capture's `reference`, `ocr` its `description` and `shipinfo` its "
    "`shipping_info` (mapped as for `activate`); the other flags as for `activate`.",
    "Not sent (the order already holds its customer and purchase; v2 re-checked them): pno, "
    "gender, addresses, client IP, currency, country, language, pno encoding, pclass, comment, "
    "`reference`, `reference_code`, `orderid2` and the travel, income, bank and extra info; a "
    "currency, country or shipping address that differs from the order's is noted. The pno is "
    "checked and never stored.",
    "An empty goods list is 3210; rows of only qty 0, or worth more than remains, 2102; fraud "
    "review PENDING or REJECTED/STOPPED 9103.",
)


SPEC = CallSpec(
    name="activate_reservation", call_type=ActivateReservation, eid_at=17, digest_at=18,
    arity=(28,), target=Target.RESERVATION, money=MoneyKind.CAPTURE, digest=digest,
    decode=decode, plan=plan, reply=reply, free_text=("shipment_info",),
    line_keys=("goods",),
    summary="GET order, POST captures (the goods rows' quantities at the order's amounts), "
            "then POST release-remaining-authorization unless PRESERVE_RESERVATION "
            "→ [\"ok\", invno]",
    differences=DIFFERENCES,
)
