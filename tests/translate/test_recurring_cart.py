"""KCO v2 recurring cart → Customer Token order lines: exact integer totals."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from gateway.recurring.cart import CartError, customer_token_order, order_line
from gateway.translate.money import check_order_line, inclusive_tax


def item(qty: int, unit: int, discount: int = 0, tax: int = 2500, **extra: Any) -> dict[str, Any]:
    return {"reference": "R", "name": "N", "quantity": qty, "unit_price": unit,
            "discount_rate": discount, "tax_rate": tax, **extra}


def test_the_official_example() -> None:
    """2 × 123.00 at 10 % discount + shipping 49.00: 27040 with 5408 tax."""
    order = customer_token_order({"purchase_currency": "sek", "cart": {"items": [
        item(2, 12300, 1000), item(1, 4900, type="shipping_fee")]},
        "merchant_reference": {"orderid1": "ON4711"},
        "billing_address": {"given_name": "A", "street_name": "Gatan", "street_number": "1",
                            "country": "se", "care_of": "B"}})
    assert (order["order_amount"], order["order_tax_amount"]) == (27040, 5408)
    assert order["purchase_currency"] == "SEK" and order["auto_capture"] is False
    assert order["merchant_reference1"] == "ON4711"
    assert order["shipping_address"] == {"given_name": "A", "street_address": "Gatan 1",
                                         "street_address2": "B", "country": "SE"}
    assert order["order_lines"][0]["total_discount_amount"] == 2460


@pytest.mark.parametrize(("qty", "unit", "rate", "discount", "total", "tax"), [
    (1, 1005, 5000, 503, 502, 100),   # 502.5 rounds half away from zero
    (3, 333, 3333, 333, 666, 133),
    (1, -1000, 0, 0, -1000, -200),    # a coupon line
])
def test_rounding(qty: int, unit: int, rate: int, discount: int, total: int, tax: int) -> None:
    line = order_line(item(qty, unit, rate), 0)
    assert (line["total_discount_amount"], line["total_amount"], line["total_tax_amount"]) == (
        discount, total, tax)


@pytest.mark.parametrize(("body", "field"), [
    ({"purchase_currency": "SEK", "cart": {"items": []}}, "cart.items"),
    ({"purchase_currency": "SEK", "cart": {"items": [item("2", 100)]}}, "cart.items[0].quantity"),
    ({"purchase_currency": "SEK", "cart": {"items": [item(1, 100, 20000)]}}, "discount_rate"),
    ({"purchase_currency": "SEKK", "cart": {"items": [item(1, 100)]}}, "purchase_currency"),
    ({"purchase_currency": "SEK", "cart": {"items": [item(1, 100, type="bogus")]}}, "type"),
    ({"purchase_currency": "SEK", "cart": {"items": [item(1, -100, 1000)]}}, "discount_rate"),
])
def test_refusals_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(CartError, match=field.replace("[", r"\[").replace("]", r"\]")):
        customer_token_order(body)


@given(st.integers(0, 500), st.integers(0, 2_000_000), st.integers(0, 10000),
       st.sampled_from([0, 600, 1200, 2500]))
def test_every_line_is_one_klarna_accepts(qty: int, unit: int, rate: int, tax: int) -> None:
    """Whatever the v2 cart says, the line's arithmetic holds exactly (or it is refused)."""
    try:
        line = order_line(item(qty, unit, rate, tax), 0)
    except CartError:
        assert qty * unit > 200_000_000
        return
    check_order_line(line, 0)
    assert line["total_amount"] == qty * unit - line["total_discount_amount"]
    assert line["total_tax_amount"] == inclusive_tax(line["total_amount"], tax)
