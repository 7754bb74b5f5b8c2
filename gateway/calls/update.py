"""``update`` (eid, digest, rno, {goods_list, dlv_addr, bill_addr, orderid1, orderid2}) → ``"ok"``.

REST: up to three PATCHes: authorization, customer-details, merchant-references. v2 applied
an update atomically; REST needs separate calls with different rules. So: everything is
validated before anything is sent; only what actually changes is sent (an empty value, or
one equal to the order's current value, means "leave unchanged"); the call most likely to be
refused (authorization) goes first; and the engine names what was and was not applied if a
later step is refused.

Billing: the current API changes only the shipping address. SDKs send ``bill_addr`` as a
copy of ``dlv_addr`` when only one address was set, so a ``bill_addr`` that is empty, equal
to ``dlv_addr``, or equal to the current billing address is not a billing change. A real
billing change goes in the same PATCH; if Klarna refuses it, nothing of the address change
is applied (9103).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.errors import AmountError
from gateway.model import MoneyKind, ReferencesEffect
from gateway.translate.address import legacy_address_to_rest, rest_address_equal
from gateway.translate.money import goods_to_order_lines, lines_total
from gateway.translate.plan import OrderContext, Plan, RestStep, Result
from gateway.translate.states import require_status
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, param, php_str, protocol_prefix
from gateway.wire.values import Address, Goods, LegacyCall


@dataclass(frozen=True)
class Update(LegacyCall):
    rno: str
    goods: tuple[Goods, ...] = ()
    dlv_addr: Address | None = None
    bill_addr: Address | None = None
    orderid1: str = ""
    orderid2: str = ""

    method = "update"


_ADDRESS_KEYS: Final = ("careof", "street", "zip", "city", "country", "fname", "lname")
_LINE_KEYS: Final = ("reference", "name", "quantity", "unit_price", "tax_rate", "total_amount",
                     "total_discount_amount", "total_tax_amount", "type")


def digest(params: Sequence[Any]) -> DigestParts:
    """``4:1:<version>:eid:rno``, address parts, artno-or-title:qty…, set orderids."""
    parts = protocol_prefix(params)
    info = param(params, 5)
    if not isinstance(info, dict):
        info = {}
    for key in ("dlv_addr", "bill_addr"):
        address = info.get(key)
        if isinstance(address, dict):
            parts.extend(address.get(f) for f in _ADDRESS_KEYS if php_str(address.get(f)))
    goods_list = info.get("goods_list")
    if isinstance(goods_list, list):
        for row in goods_list:
            if not isinstance(row, dict):
                continue
            goods = row.get("goods")
            goods = goods if isinstance(goods, dict) else {}
            artno = goods.get("artno")
            parts.append(artno if php_str(artno) else goods.get("title"))
            parts.append(row.get("qty"))
    for key in ("orderid1", "orderid2"):
        if php_str(info.get(key)):
            parts.append(info[key])
    return DigestParts(parts)


def decode(eid: int, version: str, params: Sequence[Any]) -> Update:
    p.digest(params[3])
    rno = p.identifier(params[4], "rno")
    name = "updateInfo"
    info = p.struct(params[5], name)
    return Update(
        eid=eid,
        client_version=version,
        rno=rno,
        goods=p.goods_list(info.get("goods_list", []), f"{name}.goods_list"),
        dlv_addr=p.address(info.get("dlv_addr", []), f"{name}.dlv_addr"),
        bill_addr=p.address(info.get("bill_addr", []), f"{name}.bill_addr"),
        orderid1=p.text(info.get("orderid1", ""), f"{name}.orderid1"),
        orderid2=p.text(info.get("orderid2", ""), f"{name}.orderid2"),
    )


def plan(call: Update, ctx: OrderContext) -> Plan:
    if ctx.status == "CANCELLED":
        require_status(ctx.order, set(), "update the reservation")
    notes: list[str] = []
    # Everything is validated and converted before any step is planned.
    new_lines = goods_to_order_lines(call.goods) if call.goods else []
    shipping = (legacy_address_to_rest(call.dlv_addr, field="dlv_addr")
                if call.dlv_addr is not None and not call.dlv_addr.is_empty() else None)
    billing = _billing_change(call, ctx, notes)
    steps = [s for s in (_authorization_step(new_lines, ctx, notes),
                         _customer_details_step(shipping, billing, ctx, notes),
                         _references_step(call, ctx)) if s is not None]
    if not steps:
        notes.append("nothing changes: no request sent")
    return Plan(steps=tuple(steps), notes=tuple(notes))


def _billing_change(call: Update, ctx: OrderContext, notes: list[str]) -> dict[str, Any] | None:
    """The new billing address, or None when ``bill_addr`` is not really a change."""
    if call.bill_addr is None or call.bill_addr.is_empty():
        return None
    if call.dlv_addr is not None and call.bill_addr == call.dlv_addr:
        notes.append("bill_addr equals dlv_addr (SDK copy): not a billing change")
        return None
    candidate = legacy_address_to_rest(call.bill_addr, field="bill_addr")
    if rest_address_equal(candidate, dict(ctx.order.get("billing_address") or {})):
        notes.append("bill_addr equals the current billing address: not a billing change")
        return None
    return candidate


def _same_lines(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def key(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [tuple(ln.get(k) for k in _LINE_KEYS) for ln in lines]
    return key(a) == key(b)


def _authorization_step(new_lines: list[dict[str, Any]], ctx: OrderContext,
                        notes: list[str]) -> RestStep | None:
    """Replace the order lines (first: the step most likely to be refused)."""
    if not new_lines:
        return None
    order = ctx.order
    amount = lines_total(new_lines)
    if _same_lines(new_lines, list(order.get("order_lines") or [])) \
            and amount == int(order.get("order_amount", -1)):
        notes.append("goods list equals the order's lines: authorization unchanged")
        return None
    require_status(order, {"AUTHORIZED", "PART_CAPTURED"}, "change the goods list")
    captured = int(order.get("captured_amount", 0))
    if amount < captured:
        raise AmountError(f"the new goods list amounts to {amount}, less than the "
                          f"{captured} already activated")
    return RestStep("PATCH", f"{ctx.base}/authorization",
                    {"order_amount": amount, "order_lines": new_lines},
                    f"replace the order lines (order_amount {amount})")


def _customer_details_step(shipping: dict[str, Any] | None, billing: dict[str, Any] | None,
                           ctx: OrderContext, notes: list[str]) -> RestStep | None:
    """Both addresses in one PATCH, so a refused billing change applies nothing."""
    details: dict[str, Any] = {}
    if shipping is not None and not rest_address_equal(
            shipping, dict(ctx.order.get("shipping_address") or {})):
        details["shipping_address"] = shipping
    if billing is not None:
        details["billing_address"] = billing
        notes.append("billing address change sent; the current API usually refuses it")
    if not details:
        return None
    return RestStep("PATCH", f"{ctx.base}/customer-details", details,
                    "update " + " and ".join(k.replace("_", " ") for k in details))


def _references_step(call: Update, ctx: OrderContext) -> RestStep | None:
    """Merchant references: only the fields that change."""
    refs: dict[str, str] = {}
    if call.orderid1 and call.orderid1 != ctx.order.get("merchant_reference1"):
        refs["merchant_reference1"] = call.orderid1
    if call.orderid2 and call.orderid2 != ctx.order.get("merchant_reference2"):
        refs["merchant_reference2"] = call.orderid2
    if not refs:
        return None
    return RestStep("PATCH", f"{ctx.base}/merchant-references", refs, "set " + ", ".join(refs),
                    ReferencesEffect(reservation_id=ctx.reservation.id, **refs))


def reply(call: Update, result: Result) -> Any:
    return "ok"


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "v2 applied an update at once; REST needs up to three requests, each sent only when its part "
    "changes (an empty value, or one equal to the order's, leaves a field as it is): `PATCH "
    "authorization` (goods list), `PATCH customer-details` (addresses), `PATCH "
    "merchant-references` (`orderid1`, `orderid2`).",
    "Everything is checked before the first request; the authorization change, the one most "
    "likely to be refused, goes first; a refusal names what was and was not applied.",
    "A goods list replaces the order lines "
    "(docs/order-management.md#from-legacy-goods-to-order-lines) with `order_amount` = the "
    "lines' sum; a sum below what is already captured is 2102.",
    "`dlv_addr` and `bill_addr` become REST addresses field by field "
    "(docs/order-management.md#field-limits): `fname` → `given_name`, `lname` → `family_name`, "
    "`company` → `organization_name`, `street` + `house_number` + `house_extension` → "
    "`street_address`, `careof` → `street_address2`, `zip` → `postal_code`, `cellno` (else "
    "`telno`) → `phone`, the country code → ISO alpha-2.",
    "Billing address changes are refused by the current API: a real one goes in the same `PATCH "
    "customer-details` as the shipping address, so a refusal applies neither (9103); a "
    "`bill_addr` that is empty, equals `dlv_addr` (the SDKs' copy) or equals the current billing "
    "address is not a change and is not sent.",
    "A cancelled reservation is 9103.",
)


SPEC = CallSpec(
    name="update", call_type=Update, eid_at=2, digest_at=3, arity=(6,),
    target=Target.RESERVATION, money=MoneyKind.NONE, digest=digest, decode=decode,
    plan=plan, reply=reply, free_text=("goods", "dlv_addr", "bill_addr"),
    summary="PATCH authorization, PATCH customer-details, PATCH merchant-references, "
            "only what changes → \"ok\"",
    differences=DIFFERENCES,
)
