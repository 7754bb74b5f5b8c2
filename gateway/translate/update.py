"""``update`` → up to three PATCHes: authorization, customer-details, merchant-references.

v2 applied an update atomically; REST needs separate calls with different rules. So:
everything is validated before anything is sent; only what actually changes is sent
(an empty value, or one equal to the order's current value, means "leave unchanged");
the call most likely to be refused (authorization) goes first; and the engine names what
was and was not applied if a later step is refused.

Billing: the current API changes only the shipping address. SDKs send ``bill_addr`` as a
copy of ``dlv_addr`` when only one address was set, so a ``bill_addr`` that is empty, equal
to ``dlv_addr``, or equal to the current billing address is not a billing change. A real
billing change goes in the same PATCH; if Klarna refuses it, nothing of the address change
is applied (9103).
"""
from __future__ import annotations

from typing import Any

from gateway.errors import AmountError
from gateway.legacy.calls import Update
from gateway.translate.address import legacy_address_to_rest, rest_address_equal
from gateway.translate.money import goods_to_order_lines, lines_total
from gateway.translate.plan import OrderContext, Plan, RestStep
from gateway.translate.states import require_status

_LINE_KEYS = ("reference", "name", "quantity", "unit_price", "tax_rate", "total_amount",
              "total_discount_amount", "total_tax_amount", "type")


def _same_lines(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    def key(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [tuple(ln.get(k) for k in _LINE_KEYS) for ln in lines]
    return key(a) == key(b)


def plan(call: Update, ctx: OrderContext) -> Plan:
    order = ctx.order
    base = f"/ordermanagement/v1/orders/{ctx.order_id}"
    steps: list[RestStep] = []
    notes: list[str] = []
    if ctx.status == "CANCELLED":
        require_status(order, set(), "update the reservation")

    # 1. Validate and convert everything first.
    new_lines = goods_to_order_lines(call.goods) if call.goods else []
    shipping = (legacy_address_to_rest(call.dlv_addr, field="dlv_addr")
                if call.dlv_addr is not None and not call.dlv_addr.is_empty() else None)
    billing = None
    if call.bill_addr is not None and not call.bill_addr.is_empty():
        if call.dlv_addr is not None and call.bill_addr == call.dlv_addr:
            notes.append("bill_addr equals dlv_addr (SDK copy): not a billing change")
        else:
            candidate = legacy_address_to_rest(call.bill_addr, field="bill_addr")
            if rest_address_equal(candidate, dict(order.get("billing_address") or {})):
                notes.append("bill_addr equals the current billing address: not a billing change")
            else:
                billing = candidate

    # 2. Authorization (most likely to be refused) first.
    if new_lines:
        amount = lines_total(new_lines)
        if _same_lines(new_lines, list(order.get("order_lines") or [])) \
                and amount == int(order.get("order_amount", -1)):
            notes.append("goods list equals the order's lines: authorization unchanged")
        else:
            require_status(order, {"AUTHORIZED", "PART_CAPTURED"}, "change the goods list")
            captured = int(order.get("captured_amount", 0))
            if amount < captured:
                raise AmountError(f"the new goods list amounts to {amount}, less than the "
                                  f"{captured} already activated")
            steps.append(RestStep("PATCH", f"{base}/authorization",
                                  {"order_amount": amount, "order_lines": new_lines},
                                  f"replace the order lines (order_amount {amount})"))

    # 3. Addresses in one PATCH.
    details: dict[str, Any] = {}
    if shipping is not None and not rest_address_equal(
            shipping, dict(order.get("shipping_address") or {})):
        details["shipping_address"] = shipping
    if billing is not None:
        details["billing_address"] = billing
        notes.append("billing address change sent; the current API usually refuses it")
    if details:
        steps.append(RestStep("PATCH", f"{base}/customer-details", details,
                              "update " + " and ".join(k.replace("_", " ") for k in details)))

    # 4. Merchant references: only fields that change.
    refs: dict[str, str] = {}
    if call.orderid1 and call.orderid1 != order.get("merchant_reference1"):
        refs["merchant_reference1"] = call.orderid1
    if call.orderid2 and call.orderid2 != order.get("merchant_reference2"):
        refs["merchant_reference2"] = call.orderid2
    if refs:
        steps.append(RestStep("PATCH", f"{base}/merchant-references", refs,
                              "set " + ", ".join(refs)))
    if not steps:
        return Plan(immediate_reply="ok", notes=tuple(notes + ["nothing changes: no request sent"]))
    return Plan(steps=tuple(steps), notes=tuple(notes))
