"""A KCO v2 recurring order body → the Customer Token API's ``customer_token_order``.

Pure and exact: v2's cart items carry ``unit_price`` (VAT included), ``discount_rate`` and
``tax_rate`` in hundredths of a percent; the current API wants totals per line. They are
computed in integer minor units, rounded once, half away from zero, and checked like every
other line the gateway sends (docs/order-management.md#from-legacy-goods-to-order-lines).
A body that cannot be translated raises :class:`CartError` naming the field (answered 400, as
v2 did for a bad format).
"""
from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from gateway.errors import GoodsListError
from gateway.translate.money import check_order_line, inclusive_tax, round_half_away

#: v2 address keys copied as they are (the current API's names are the same).
_ADDRESS_KEYS = ("given_name", "family_name", "title", "organization_name", "postal_code",
                 "city", "region", "email", "phone")
_LINE_TYPES = ("physical", "discount", "shipping_fee", "sales_tax", "digital", "gift_card",
               "store_credit", "surcharge")


class CartError(ValueError):
    """The v2 body is malformed; the message names the field."""


def _int(value: Any, where: str, *, minimum: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # PHP/JS clients may encode 12300 as 12300.0
    if not isinstance(value, int) or isinstance(value, bool):
        raise CartError(f"{where} must be an integer")
    if minimum is not None and value < minimum:
        raise CartError(f"{where} must be at least {minimum}")
    return value


def _text(value: Any, where: str, *, required: bool = False, limit: int = 255) -> str:
    if value is None or value == "":
        if required:
            raise CartError(f"{where} is required")
        return ""
    if not isinstance(value, str):
        raise CartError(f"{where} must be a string")
    if len(value) > limit:
        raise CartError(f"{where} is longer than {limit} characters")
    return value


def order_line(item: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One v2 cart item as a current order line, totals exact."""
    where = f"cart.items[{index}]"
    if not isinstance(item, Mapping):
        raise CartError(f"{where} must be an object")
    quantity = _int(item.get("quantity"), f"{where}.quantity", minimum=0)
    unit_price = _int(item.get("unit_price"), f"{where}.unit_price")
    tax_rate = _int(item.get("tax_rate", 0), f"{where}.tax_rate", minimum=0)
    discount_rate = _int(item.get("discount_rate", 0), f"{where}.discount_rate", minimum=0)
    if discount_rate > 10000:
        raise CartError(f"{where}.discount_rate must be at most 10000 (100 %)")
    kind = _text(item.get("type"), f"{where}.type") or (
        "discount" if unit_price < 0 else "physical")
    if kind not in _LINE_TYPES:
        raise CartError(f"{where}.type {kind!r} is not a line type")
    if discount_rate and unit_price < 0:
        raise CartError(f"{where}: a discount_rate on a negative price")
    discount = round_half_away(Fraction(quantity * unit_price * discount_rate, 10000))
    total = quantity * unit_price - discount
    line: dict[str, Any] = {
        "type": kind, "reference": _text(item.get("reference"), f"{where}.reference"),
        "name": _text(item.get("name"), f"{where}.name", required=True),
        "quantity": quantity, "unit_price": unit_price, "tax_rate": tax_rate,
        "total_amount": total, "total_discount_amount": discount,
        "total_tax_amount": inclusive_tax(total, tax_rate)}
    if item.get("merchant_item_data"):
        line["merchant_data"] = _text(item["merchant_item_data"], f"{where}.merchant_item_data",
                                      limit=6000)
    if item.get("image_uri"):
        line["image_url"] = _text(item["image_uri"], f"{where}.image_uri", limit=1024)
    try:
        check_order_line(line, index)
    except GoodsListError as e:
        raise CartError(str(e.public_message).replace("goods_list", "cart.items")) from None
    return line


def address(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise CartError(f"{where} must be an object")
    out = {k: _text(raw.get(k), f"{where}.{k}") for k in _ADDRESS_KEYS if raw.get(k)}
    street = _text(raw.get("street_address"), f"{where}.street_address") or " ".join(
        _text(raw.get(k), f"{where}.{k}") for k in ("street_name", "street_number",
                                                    "house_extension") if raw.get(k))
    if street:
        out["street_address"] = street
    if raw.get("care_of"):
        out["street_address2"] = _text(raw["care_of"], f"{where}.care_of")
    if raw.get("country"):
        out["country"] = _text(raw["country"], f"{where}.country").upper()
    return out


def customer_token_order(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request the Customer Token API takes, from the v2 recurring order body."""
    cart = body.get("cart")
    items = cart.get("items") if isinstance(cart, Mapping) else None
    if not isinstance(items, list) or not items:
        raise CartError("cart.items must be a non-empty array")
    lines = [order_line(item, i) for i, item in enumerate(items)]
    amount = sum(ln["total_amount"] for ln in lines)
    if amount < 1:
        raise CartError("the cart adds up to less than 1 minor unit")
    currency = _text(body.get("purchase_currency"), "purchase_currency", required=True)
    if len(currency) != 3 or not currency.isalpha():
        raise CartError("purchase_currency must be an ISO 4217 code")
    order: dict[str, Any] = {
        "purchase_currency": currency.upper(), "order_amount": amount,
        "order_tax_amount": sum(ln["total_tax_amount"] for ln in lines),
        "order_lines": lines, "auto_capture": False}
    refs = body.get("merchant_reference")
    if refs is not None:
        if not isinstance(refs, Mapping):
            raise CartError("merchant_reference must be an object")
        for v2_key, key in (("orderid1", "merchant_reference1"),
                            ("orderid2", "merchant_reference2")):
            if refs.get(v2_key):
                order[key] = _text(refs[v2_key], f"merchant_reference.{v2_key}")
    shipping = body.get("shipping_address") or body.get("billing_address")
    if shipping:
        order["shipping_address"] = address(shipping, "shipping_address")
    return order
