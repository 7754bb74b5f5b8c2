"""Tests of gateway.translate.split: parts of order lines that always sum exactly to the line."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.errors import BadArtnoListError, FaultCode, UnknownArtnoError
from gateway.translate.money import check_order_line, goods_to_order_line, inclusive_tax
from gateway.translate.split import (
    capture_amount,
    done_per_line,
    part_of_line,
    plan_partial_capture,
    plan_partial_refund,
    quantities_by_ref,
    remaining_lines,
)
from gateway.wire.values import ArtNo, Goods, GoodsFlag

INC = int(GoodsFlag.INC_VAT)
PHP_0_1 = Decimal("0.1000000000000000055511151231257827021181583404541015625")
SUMMED = ("quantity", "total_amount", "total_discount_amount", "total_tax_amount")


def line(ref: str = "A", qty: int = 3, unit: int = 1000, discount: int = 0, rate: int = 2500,
         tax: int | None = None, **extra: Any) -> dict[str, Any]:
    total = qty * unit - discount
    result = dict(type="physical", reference=ref, name=f"Item {ref}", quantity=qty,
                  unit_price=unit, tax_rate=rate, total_amount=total,
                  total_discount_amount=discount,
                  total_tax_amount=inclusive_tax(total, rate) if tax is None else tax)
    result.update(extra)
    return result


def figures(part: dict[str, Any]) -> tuple[int, int, int, int]:
    return (part["quantity"], part["total_discount_amount"], part["total_amount"],
            part["total_tax_amount"])


def assert_valid_part(part: dict[str, Any]) -> None:
    """Line identity, ±1 tax rule and JSON-with-int-amounts for one part."""
    assert part["total_amount"] == part["quantity"] * part["unit_price"] - part["total_discount_amount"]
    assert abs(part["total_tax_amount"] - inclusive_tax(part["total_amount"], part["tax_rate"])) <= 1
    for key in ("quantity", "unit_price", "tax_rate") + SUMMED:
        assert type(part[key]) is int
    assert json.loads(json.dumps(part)) == part


# --------------------------------------------------------------------------- part_of_line

def test_even_split_by_hand() -> None:
    """3 × 1000 with 10 % discount (300), tax 540 at 25 %: thirds are 900/100/180 each."""
    whole = line(qty=3, unit=1000, discount=300)
    assert whole["total_tax_amount"] == 540
    parts = [part_of_line(whole, done, 1) for done in range(3)]
    assert [figures(p) for p in parts] == [(1, 100, 900, 180)] * 3


def test_uneven_split_by_hand() -> None:
    """3 × 999, discount 300, total 2697, tax 539 (2697 − round(2157.6)).

    d = 539 − 2697 × 0.2 = −0.4, shift −0.2. X(1) = round(179.8 − 0.2) = 180,
    X(2) = round(359.6 − 0.2) = 359. Parts' tax: 180, 179, 180 (each within ±1 of 180).
    """
    whole = line(qty=3, unit=999, discount=300)
    assert (whole["total_amount"], whole["total_tax_amount"]) == (2697, 539)
    parts = [part_of_line(whole, done, 1) for done in range(3)]
    assert [figures(p) for p in parts] == [(1, 100, 899, 180), (1, 100, 899, 179),
                                           (1, 100, 899, 180)]
    two_then_one = [part_of_line(whole, 0, 2), part_of_line(whole, 2, 1)]
    assert [figures(p) for p in two_then_one] == [(2, 200, 1798, 359), (1, 100, 899, 180)]


def test_small_discount_is_spread_cumulatively() -> None:
    """A discount of 1 over 3 units: D(1)=round(1/3)=0, D(2)=round(2/3)=1 → 0, 1, 0."""
    whole = line(qty=3, unit=10, discount=1, rate=0)
    parts = [part_of_line(whole, done, 1) for done in range(3)]
    assert [p["total_discount_amount"] for p in parts] == [0, 1, 0]
    assert [p["total_amount"] for p in parts] == [10, 9, 10]


def test_part_copies_descriptive_fields_and_keeps_unit_price() -> None:
    """reference/name/type/quantity_unit are copied; unit_price and tax_rate stay."""
    whole = line(qty=1500, unit=20, rate=1200, quantity_unit="1/1000", type="shipping_fee",
                 merchant_data="not copied")
    part = part_of_line(whole, 0, 500)
    assert part["reference"] == "A" and part["name"] == "Item A"
    assert part["type"] == "shipping_fee" and part["quantity_unit"] == "1/1000"
    assert part["unit_price"] == 20 and part["tax_rate"] == 1200 and part["quantity"] == 500
    assert "merchant_data" not in part
    assert_valid_part(part)


def test_whole_line_part_is_the_line() -> None:
    """Taking every unit at once returns the line's own amounts unchanged."""
    whole = line(qty=7, unit=1234, discount=864, tax=1556)
    assert figures(part_of_line(whole, 0, 7)) == figures(whole)


@pytest.mark.parametrize(
    ("done", "qty", "message"),
    [(0, 0, "quantity 0 is not positive"), (0, -1, "quantity -1 is not positive"),
     (1, 3, "3 requested, 2 remain"), (3, 1, "1 requested, 0 remain"),
     (0, 4, "4 requested, 3 remain")],
)
def test_part_of_line_refusals(done: int, qty: int, message: str) -> None:
    """qty ≤ 0 or more than remains of the line → bad_artnolist (9107) with the figures."""
    with pytest.raises(BadArtnoListError) as info:
        part_of_line(line(qty=3), done, qty)
    assert info.value.fault_code == FaultCode.BAD_ARTNOLIST
    assert message in info.value.public_message


def test_part_of_line_refuses_a_line_breaking_its_identity() -> None:
    """Upstream data whose own arithmetic is wrong cannot be split exactly: ValueError."""
    broken = line(qty=2, unit=100)
    broken["total_amount"] = 199
    with pytest.raises(ValueError):
        part_of_line(broken, 0, 1)


def test_negative_discount_line_split() -> None:
    """A discount-type line (−5000 × 3 at 25 %) splits into negative parts summing exactly."""
    whole = line(qty=3, unit=-5000, type="discount")
    parts = [part_of_line(whole, 0, 2), part_of_line(whole, 2, 1)]
    assert [figures(p) for p in parts] == [(2, 0, -10000, -2000), (1, 0, -5000, -1000)]


# --------------------------------------------------------------------------- planners

def order() -> list[dict[str, Any]]:
    return [line("A", qty=2, unit=1000), line("B", qty=5, unit=999, discount=500),
            line("A", qty=3, unit=1000), line("ship", qty=1, unit=4900, type="shipping_fee")]


def test_plan_partial_capture_fills_lines_sharing_a_reference_in_order() -> None:
    """3 A already captured = first A line full + 1 of the second; 2 more come from the second."""
    plan = plan_partial_capture(order(), {"A": 3}, [ArtNo("A", 1), ArtNo("A", 1)])
    assert len(plan) == 1
    assert plan[0]["reference"] == "A" and plan[0]["quantity"] == 2
    assert capture_amount(plan) == 2000


def test_plan_partial_capture_spans_lines_and_keeps_order_line_order() -> None:
    """Repeated artnos sum; parts come in order-line order; amount is their exact sum."""
    plan = plan_partial_capture(order(), {}, [ArtNo("ship", 1), ArtNo("A", 3), ArtNo("B", 2)])
    assert [(p["reference"], p["quantity"]) for p in plan] == [("A", 2), ("B", 2), ("A", 1),
                                                                ("ship", 1)]
    assert capture_amount(plan) == 2000 + (1998 - 200) + 1000 + 4900
    for part in plan:
        assert_valid_part(part)


def test_plan_partial_capture_too_many() -> None:
    """More than remains uncaptured of a reference → 9107 'artno X: 5 requested, 2 remain'."""
    with pytest.raises(BadArtnoListError) as info:
        plan_partial_capture(order(), {"A": 3}, [ArtNo("A", 4), ArtNo("A", 1)])
    assert info.value.public_message == "artno 'A': 5 requested, 2 remain"


def test_plan_partial_capture_unknown_artno() -> None:
    """An artno no order line has → 9108 naming it."""
    with pytest.raises(UnknownArtnoError) as info:
        plan_partial_capture(order(), {}, [ArtNo("A", 1), ArtNo("Z9", 1)])
    assert info.value.fault_code == FaultCode.UNKNOWN_ARTNO
    assert "'Z9'" in info.value.public_message and "order" in info.value.public_message


@pytest.mark.parametrize(
    "artnos", [[ArtNo("A", 0)], [ArtNo("A", -2)], [ArtNo("", 1)], []],
    ids=["zero", "negative", "empty artno", "empty list"],
)
def test_plan_partial_capture_malformed_artnos(artnos: list[ArtNo]) -> None:
    """Non-positive quantities, empty artnos and an empty list are bad_artnolist (9107)."""
    with pytest.raises(BadArtnoListError):
        plan_partial_capture(order(), {}, artnos)


def test_plan_partial_refund_is_per_invoice() -> None:
    """Refund against one invoice's captured lines minus what was refunded on it."""
    invoice = plan_partial_capture(order(), {}, [ArtNo("B", 3)])
    refund = plan_partial_refund(invoice, {"B": 1}, [ArtNo("B", 2)])
    assert [(p["reference"], p["quantity"]) for p in refund] == [("B", 2)]
    with pytest.raises(BadArtnoListError) as info:
        plan_partial_refund(invoice, {"B": 2}, [ArtNo("B", 2)])
    assert info.value.public_message == "artno 'B': 2 requested, 1 remain"
    with pytest.raises(UnknownArtnoError) as unknown:
        plan_partial_refund(invoice, {}, [ArtNo("A", 1)])
    assert "invoice" in unknown.value.public_message


def test_refunds_of_an_invoice_sum_to_the_invoice() -> None:
    """Refunding a captured part unit by unit, then the rest, gives back exactly the capture."""
    invoice = plan_partial_capture(order(), {}, [ArtNo("B", 3), ArtNo("A", 4)])
    refunded: list[dict[str, Any]] = []
    refunded += plan_partial_refund(invoice, quantities_by_ref(refunded), [ArtNo("B", 1)])
    refunded += plan_partial_refund(invoice, quantities_by_ref(refunded), [ArtNo("A", 3)])
    rest = remaining_lines(invoice, quantities_by_ref(refunded))
    everything = refunded + rest
    for key in SUMMED:
        assert sum(p[key] for p in everything) == sum(p[key] for p in invoice)
    assert remaining_lines(invoice, quantities_by_ref(everything)) == []


def test_remaining_lines_complements_partial_captures() -> None:
    """Capturing some units and then 'everything still uncaptured' sums to the whole order."""
    lines = order()
    first = plan_partial_capture(lines, {}, [ArtNo("A", 3), ArtNo("B", 1)])
    rest = remaining_lines(lines, quantities_by_ref(first))
    assert [(p["reference"], p["quantity"]) for p in rest] == [("B", 4), ("A", 2), ("ship", 1)]
    assert capture_amount(first) + capture_amount(rest) == capture_amount(lines)
    assert remaining_lines(lines, {}) == [part_of_line(x, 0, x["quantity"]) for x in lines]


def test_remaining_lines_skips_zero_quantity_lines() -> None:
    """Lines with quantity 0 have nothing to capture and are omitted."""
    assert remaining_lines([line(qty=0)], {}) == []


def test_done_per_line_caps_excess() -> None:
    """Bookkeeping above what the lines hold is capped, never negative remaining."""
    assert done_per_line(order(), {"A": 99, "B": 2}) == [2, 2, 3, 0]


# --------------------------------------------------------------------------- properties

vats = st.one_of(
    st.sampled_from([Decimal(v) for v in ("0", "6", "7.5", "12", "25")]),
    st.sampled_from([Decimal(25.0), Decimal(0.1), Decimal(7.7)]),
    st.floats(min_value=0, max_value=30, allow_nan=False).map(Decimal),
)
discounts = st.one_of(
    st.just(Decimal(0)), st.sampled_from([Decimal(10), PHP_0_1, Decimal(100), Decimal("33.3")]),
    st.floats(min_value=0, max_value=100, allow_nan=False).map(Decimal),
)


@st.composite
def gateway_lines(draw: st.DrawFn) -> dict[str, Any]:
    """Order lines as the gateway builds them from legacy goods (incl. negative prices)."""
    price = draw(st.integers(min_value=-150_000, max_value=150_000))
    flags = draw(st.sampled_from([0, INC, INC | 8, 16]))
    discount = draw(discounts) if price >= 0 else Decimal(0)
    row = Goods(artno="X", title="x", price=price, vat=draw(vats), discount=discount,
                flags=flags, qty=draw(st.integers(min_value=1, max_value=1000)))
    return goods_to_order_line(row)


@st.composite
def foreign_lines(draw: st.DrawFn) -> dict[str, Any]:
    """Lines created elsewhere (merchant checkout): any discount ≥ 0, tax ±1 off the formula."""
    qty = draw(st.integers(min_value=1, max_value=1000))
    unit = draw(st.integers(min_value=-200_000, max_value=200_000))
    discount = 0 if unit < 0 else draw(st.integers(min_value=0, max_value=qty * unit))
    rate = draw(st.sampled_from([0, 600, 750, 1000, 1200, 2000, 2500, 2550, 10000]))
    total = qty * unit - discount
    tax = inclusive_tax(total, rate) + draw(st.sampled_from([-1, 0, 1]))
    return line("X", qty=qty, unit=unit, discount=discount, rate=rate, tax=tax)


any_line = st.one_of(gateway_lines(), foreign_lines())


@settings(max_examples=500, deadline=None)
@given(any_line, st.data())
def test_any_sequence_of_parts_sums_exactly_to_the_line(whole: dict[str, Any], data: st.DataObject) -> None:
    """Captured in any sequence of parts (then the rest), a line is reproduced to the unit.

    Every part satisfies the line identity and the ±1 tax rule; discounts stay ≥ 0 and
    totals keep the line's sign.
    """
    qty = whole["quantity"]
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=qty), max_size=8))
    parts: list[dict[str, Any]] = []
    done = 0
    for cut in cuts:
        if done + cut > qty:
            break
        parts.append(part_of_line(whole, done, cut))
        done += cut
    parts += remaining_lines([whole], {"X": done})
    for key in SUMMED:
        assert sum(p[key] for p in parts) == whole[key], key
    for part in parts:
        assert_valid_part(part)
        assert part["total_discount_amount"] >= 0
        if whole["total_amount"] >= 0:
            assert part["total_amount"] >= 0
        else:
            assert part["total_amount"] <= 0
        check_order_line(part, 0)


@settings(max_examples=500, deadline=None)
@given(any_line, st.data())
def test_every_unit_range_is_a_valid_part(whole: dict[str, Any], data: st.DataObject) -> None:
    """For any units a+1..b (not only sequences from 0), the part obeys identity and ±1 tax."""
    qty = whole["quantity"]
    start = data.draw(st.integers(min_value=0, max_value=qty - 1))
    size = data.draw(st.integers(min_value=1, max_value=qty - start))
    assert_valid_part(part_of_line(whole, start, size))


@settings(max_examples=200, deadline=None)
@given(st.lists(any_line, min_size=1, max_size=4), st.data())
def test_partial_captures_then_refunds_per_invoice(lines: list[dict[str, Any]], data: st.DataObject) -> None:
    """Plans over several lines sharing a reference: captures then the rest equal the order;
    refunds of one invoice then its rest equal that invoice."""
    refs = data.draw(st.lists(st.sampled_from(["A", "B"]), min_size=len(lines), max_size=len(lines)))
    lines = [dict(x, reference=r) for x, r in zip(lines, refs)]
    available = quantities_by_ref(lines)
    captured: list[dict[str, Any]] = []
    invoices: list[list[dict[str, Any]]] = []
    for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
        left = {r: available[r] - quantities_by_ref(captured).get(r, 0) for r in available}
        choices = [r for r, n in left.items() if n > 0]
        if not choices:
            break
        ref = data.draw(st.sampled_from(choices))
        n = data.draw(st.integers(min_value=1, max_value=left[ref]))
        invoice = plan_partial_capture(lines, quantities_by_ref(captured), [ArtNo(ref, n)])
        assert sum(p["quantity"] for p in invoice) == n
        captured += invoice
        invoices.append(invoice)
    rest = remaining_lines(lines, quantities_by_ref(captured))
    if rest:
        invoices.append(rest)
    all_parts = [p for inv in invoices for p in inv]
    for key in SUMMED:
        assert sum(p[key] for p in all_parts) == sum(x[key] for x in lines), key

    invoice = data.draw(st.sampled_from(invoices)) if invoices else []
    assume(invoice)
    refunded: list[dict[str, Any]] = []
    invoice_qty = quantities_by_ref(invoice)
    ref = data.draw(st.sampled_from(sorted(invoice_qty)))
    n = data.draw(st.integers(min_value=1, max_value=invoice_qty[ref]))
    refunded += plan_partial_refund(invoice, {}, [ArtNo(ref, n)])
    refunded += remaining_lines(invoice, quantities_by_ref(refunded))
    for key in SUMMED:
        assert sum(p[key] for p in refunded) == sum(p[key] for p in invoice), key
    for part in all_parts + refunded:
        assert_valid_part(part)
