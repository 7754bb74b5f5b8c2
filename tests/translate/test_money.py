"""Tests of gateway.translate.money: legacy goods → REST order lines, exact rounding, checks."""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import FaultCode, GoodsListError
from gateway.translate.money import (
    check_order_line,
    goods_to_order_line,
    goods_to_order_lines,
    inclusive_tax,
    lines_tax_total,
    lines_total,
    round_half_away,
)
from gateway.wire.values import Goods, GoodsFlag

INC = int(GoodsFlag.INC_VAT)
#: What PHP sends for 0.1 and 0.15 as <double>: the exact binary expansions.
PHP_0_1 = Decimal("0.1000000000000000055511151231257827021181583404541015625")
PHP_0_15 = Decimal("0.1499999999999999944488848768742172978818416595458984375")
AMOUNT_KEYS = ("quantity", "unit_price", "tax_rate", "total_amount", "total_discount_amount",
               "total_tax_amount")


def goods(price: int, vat: Decimal | str | int = 25, qty: int = 1, discount: Decimal | str | int = 0,
          flags: int = INC, artno: str = "A1", title: str = "Item") -> Goods:
    return Goods(artno=artno, title=title, price=price, vat=Decimal(vat), discount=Decimal(discount),
                 flags=flags, qty=qty)


def assert_json_ints(line: dict[str, Any]) -> None:
    """Every amount is a plain int (not bool, Decimal, float) and the line is JSON as-is."""
    for key in AMOUNT_KEYS:
        assert type(line[key]) is int, (key, line[key])
    for value in line.values():
        assert type(value) in (int, str), value
    assert json.loads(json.dumps(line)) == line


# --------------------------------------------------------------------------- round_half_away

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.5"), 1),
        (Decimal("-0.5"), -1),
        (Decimal("1.5"), 2),
        (Decimal("2.5"), 3),  # not banker's rounding
        (Decimal("-2.5"), -3),
        (Decimal("2.4999999999999999999999999999999999"), 2),  # beyond 28 digits, no pre-rounding
        (Decimal("-0.4999999999999999999999999999999"), 0),
        (Decimal("12345678901234567890123456789.5"), 12345678901234567890123456790),
        (Decimal("7"), 7),
        (Decimal("-0"), 0),
        (Fraction(-7, 2), -4),
        (3, 3),
    ],
)
def test_round_half_away_examples(value: Decimal, expected: int) -> None:
    """Halves round away from zero and long decimals are not pre-rounded to 28 digits."""
    result = round_half_away(value)
    assert result == expected
    assert type(result) is int


def test_round_half_away_refuses_floats() -> None:
    """A binary float has already lost the exact value the legacy client meant; refuse it."""
    with pytest.raises(TypeError):
        round_half_away(0.5)  # type: ignore[arg-type]


@given(st.decimals(allow_nan=False, allow_infinity=False, places=6,
                   min_value=Decimal("-1e12"), max_value=Decimal("1e12")))
def test_round_half_away_matches_decimal_half_up(value: Decimal) -> None:
    """Agrees with Decimal ROUND_HALF_UP (half away from zero) in a wide-enough context."""
    with localcontext() as ctx:
        ctx.prec = 100
        expected = int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
    assert round_half_away(value) == expected


# --------------------------------------------------------------------------- goods_to_order_line

EXAMPLES: list[tuple[str, Goods, dict[str, Any]]] = [
    (
        "inc-vat 9900 × 2 at 25 %",
        goods(9900, vat=25, qty=2),
        dict(type="physical", reference="A1", name="Item", quantity=2, unit_price=9900,
             tax_rate=2500, total_amount=19800, total_discount_amount=0, total_tax_amount=3960),
    ),
    (
        "excl-vat 1000 at 25 % becomes 1250",
        goods(1000, vat=25, flags=0),
        dict(type="physical", reference="A1", name="Item", quantity=1, unit_price=1250,
             tax_rate=2500, total_amount=1250, total_discount_amount=0, total_tax_amount=250),
    ),
    (
        "10 % discount: 3 × 9900 = 29700, discount 2970, total 26730, tax 26730 − 21384",
        goods(9900, vat=25, qty=3, discount=10),
        dict(type="physical", reference="A1", name="Item", quantity=3, unit_price=9900,
             tax_rate=2500, total_amount=26730, total_discount_amount=2970,
             total_tax_amount=5346),
    ),
    (
        "PHP doubles: vat 25, discount 0.1000…0555: 5 × 10000 × 0.001 = 50.0000…28 → 50",
        goods(10000, vat=Decimal("25"), qty=5, discount=PHP_0_1),
        dict(type="physical", reference="A1", name="Item", quantity=5, unit_price=10000,
             tax_rate=2500, total_amount=49950, total_discount_amount=50,
             total_tax_amount=9990),
    ),
    (
        "PHP 0.15 is 0.14999…: 1000 × 0.0014999… = 1.4999… → 1, not 2",
        goods(1000, vat=25, discount=PHP_0_15),
        dict(type="physical", reference="A1", name="Item", quantity=1, unit_price=1000,
             tax_rate=2500, total_amount=999, total_discount_amount=1, total_tax_amount=200),
    ),
    (
        "PHP 0.1 as VAT: tax_rate round(10.000…0555) = 10; 1000 excl → 1001",
        goods(1000, vat=PHP_0_1, flags=0),
        dict(type="physical", reference="A1", name="Item", quantity=1, unit_price=1001,
             tax_rate=10, total_amount=1001, total_discount_amount=0, total_tax_amount=1),
    ),
    (
        "vat 7.5 → 750 bp; 1000 excl → 1075; tax 1075 − 1000",
        goods(1000, vat=Decimal("7.5"), flags=0),
        dict(type="physical", reference="A1", name="Item", quantity=1, unit_price=1075,
             tax_rate=750, total_amount=1075, total_discount_amount=0, total_tax_amount=75),
    ),
    (
        "excl-vat 999 at 12 % = 1118.88 → 1119; tax 1119 − round(999.107) = 120",
        goods(999, vat=12, flags=0),
        dict(type="physical", reference="A1", name="Item", quantity=1, unit_price=1119,
             tax_rate=1200, total_amount=1119, total_discount_amount=0, total_tax_amount=120),
    ),
    (
        "excl-vat half rounds away: 10 × 1.25 = 12.5 → 13",
        goods(10, vat=25, flags=0),
        dict(type="physical", reference="A1", name="Item", quantity=1, unit_price=13,
             tax_rate=2500, total_amount=13, total_discount_amount=0, total_tax_amount=3),
    ),
    (
        "negative excl-vat half rounds away: −10 × 1.25 = −12.5 → −13; discount line",
        goods(-10, vat=25, flags=0),
        dict(type="discount", reference="A1", name="Item", quantity=1, unit_price=-13,
             tax_rate=2500, total_amount=-13, total_discount_amount=0, total_tax_amount=-3),
    ),
    (
        "discount row −5000 inc 25 %: tax −5000 − round(−4000) = −1000",
        goods(-5000, vat=25),
        dict(type="discount", reference="A1", name="Item", quantity=1, unit_price=-5000,
             tax_rate=2500, total_amount=-5000, total_discount_amount=0,
             total_tax_amount=-1000),
    ),
    (
        "shipment flag 8 → shipping_fee",
        goods(4900, vat=25, flags=INC | GoodsFlag.IS_SHIPMENT, artno="frakt", title="Frakt"),
        dict(type="shipping_fee", reference="frakt", name="Frakt", quantity=1, unit_price=4900,
             tax_rate=2500, total_amount=4900, total_discount_amount=0, total_tax_amount=980),
    ),
    (
        "handling flag 16 → surcharge",
        goods(2000, vat=25, flags=INC | GoodsFlag.IS_HANDLING),
        dict(type="surcharge", reference="A1", name="Item", quantity=1, unit_price=2000,
             tax_rate=2500, total_amount=2000, total_discount_amount=0, total_tax_amount=400),
    ),
    (
        "flags 8 and 16 together: shipment wins",
        goods(100, vat=0, flags=INC | GoodsFlag.IS_SHIPMENT | GoodsFlag.IS_HANDLING),
        dict(type="shipping_fee", reference="A1", name="Item", quantity=1, unit_price=100,
             tax_rate=0, total_amount=100, total_discount_amount=0, total_tax_amount=0),
    ),
    (
        "zero VAT: no tax",
        goods(12345, vat=0, qty=3),
        dict(type="physical", reference="A1", name="Item", quantity=3, unit_price=12345,
             tax_rate=0, total_amount=37035, total_discount_amount=0, total_tax_amount=0),
    ),
    (
        "6 % and a 100 % discount",
        goods(1060, vat=6, qty=2, discount=100),
        dict(type="physical", reference="A1", name="Item", quantity=2, unit_price=1060,
             tax_rate=600, total_amount=0, total_discount_amount=2120, total_tax_amount=0),
    ),
    (
        "PRINT_1000: qty 1500 of 1/1000 kg at 20 → quantity kept, unit '1/1000'",
        goods(20, vat=12, qty=1500, flags=INC | GoodsFlag.PRINT_1000),
        dict(type="physical", reference="A1", name="Item", quantity=1500, quantity_unit="1/1000",
             unit_price=20, tax_rate=1200, total_amount=30000, total_discount_amount=0,
             total_tax_amount=3214),
    ),
    (
        "PRINT_100",
        goods(100, vat=0, qty=250, flags=INC | GoodsFlag.PRINT_100),
        dict(type="physical", reference="A1", name="Item", quantity=250, quantity_unit="1/100",
             unit_price=100, tax_rate=0, total_amount=25000, total_discount_amount=0,
             total_tax_amount=0),
    ),
    (
        "PRINT_10 and PRINT_100 both set: the finest wins",
        goods(100, vat=0, qty=25, flags=INC | GoodsFlag.PRINT_10 | GoodsFlag.PRINT_100),
        dict(type="physical", reference="A1", name="Item", quantity=25, quantity_unit="1/100",
             unit_price=100, tax_rate=0, total_amount=2500, total_discount_amount=0,
             total_tax_amount=0),
    ),
    (
        "empty artno → reference is the title",
        goods(100, vat=0, artno="", title="Gift wrap"),
        dict(type="physical", reference="Gift wrap", name="Gift wrap", quantity=1,
             unit_price=100, tax_rate=0, total_amount=100, total_discount_amount=0,
             total_tax_amount=0),
    ),
    (
        "empty title → name is the artno",
        goods(100, vat=0, artno="SKU-9", title=""),
        dict(type="physical", reference="SKU-9", name="SKU-9", quantity=1, unit_price=100,
             tax_rate=0, total_amount=100, total_discount_amount=0, total_tax_amount=0),
    ),
    (
        "qty 0 is a valid (empty) line",
        goods(100, vat=25, qty=0),
        dict(type="physical", reference="A1", name="Item", quantity=0, unit_price=100,
             tax_rate=2500, total_amount=0, total_discount_amount=0, total_tax_amount=0),
    ),
]


@pytest.mark.parametrize(("label", "row", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_goods_to_order_line_examples(label: str, row: Goods, expected: dict[str, Any]) -> None:
    """Hand-computed lines, JSON-ready with int amounts only.

    The rules: docs/order-management.md#from-legacy-goods-to-order-lines.
    """
    line = goods_to_order_line(row)
    assert line == expected, label
    assert_json_ints(line)


ERRORS: list[tuple[str, Goods, str]] = [
    ("negative qty", goods(100, qty=-1), "qty -1 is negative"),
    ("artno too long", goods(100, artno="x" * 256), "artno is 256 characters long"),
    ("title too long", goods(100, title="t" * 256), "title is 256 characters long"),
    ("no artno, no title", goods(100, artno="", title=""), "artno and title are both empty"),
    ("discount above 100", goods(100, discount=Decimal("100.5")), "outside 0..100"),
    ("negative discount", goods(100, discount=-1), "outside 0..100"),
    ("negative vat", goods(100, vat=-1), "vat -1 is negative"),
    ("discount % on a negative price", goods(-1000, discount=10), "total_discount_amount -100"),
    ("unit price beyond limit", goods(200_000_001, vat=0), "unit_price 200000001 is beyond"),
    ("excl-vat unit price beyond limit", goods(160_000_001, vat=25, flags=0), "unit_price"),
    ("total beyond limit", goods(100_000_001, vat=0, qty=2), "total_amount 200000002 is beyond"),
]


@pytest.mark.parametrize(("label", "row", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_goods_to_order_line_refusals(label: str, row: Goods, message: str) -> None:
    """Rows that cannot be sent faithfully raise goods_list (3210) naming the row."""
    with pytest.raises(GoodsListError) as info:
        goods_to_order_line(row, 4)
    assert info.value.fault_code == FaultCode.GOODS_LIST
    assert info.value.public_message.startswith("goods_list[4] (reference "), label
    assert message in info.value.public_message, info.value.public_message


def test_long_names_are_refused_not_truncated() -> None:
    """255 characters pass unchanged; 256 is refused (truncation could merge two artnos)."""
    line = goods_to_order_line(goods(100, artno="a" * 255, title="n" * 255))
    assert line["reference"] == "a" * 255 and line["name"] == "n" * 255
    with pytest.raises(GoodsListError):
        goods_to_order_line(goods(100, artno="a" * 256))


def test_goods_to_order_lines_names_the_failing_row_and_sums() -> None:
    """The list converter reports the index of the bad row; sums are exact int totals."""
    rows = [goods(9900, qty=2), goods(1000, flags=0), goods(100, qty=-2, artno="BAD")]
    with pytest.raises(GoodsListError) as info:
        goods_to_order_lines(rows)
    assert info.value.public_message.startswith("goods_list[2] (reference 'BAD'): ")
    lines = goods_to_order_lines(rows[:2])
    assert lines_total(lines) == 19800 + 1250
    assert lines_tax_total(lines) == 3960 + 250
    assert lines_total([]) == 0 and lines_tax_total([]) == 0


# --------------------------------------------------------------------------- check_order_line

def valid_line(**changes: Any) -> dict[str, Any]:
    line = dict(type="physical", reference="R1", name="Item", quantity=2, unit_price=9900,
                tax_rate=2500, total_amount=19800, total_discount_amount=0,
                total_tax_amount=3960)
    line.update(changes)
    return line


CHECK_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("identity broken", valid_line(total_amount=19799, total_tax_amount=3960),
     "total_amount 19799 != quantity 2 × unit_price 9900 − total_discount_amount 0"),
    ("tax 2 off", valid_line(total_tax_amount=3962), "differs from 3960"),
    ("tax 2 under", valid_line(total_tax_amount=3958), "by more than 1"),
    ("negative quantity", valid_line(quantity=-2, total_amount=-19800, total_tax_amount=-3960),
     "quantity -2 is negative"),
    ("negative tax rate", valid_line(tax_rate=-1), "tax_rate -1 is negative"),
    ("name too long", valid_line(name="n" * 256), "name is 256 characters"),
    ("no name", valid_line(name=""), "name is missing"),
    ("reference too long", valid_line(reference="R" * 256), "reference must be"),
    ("amount beyond limit",
     valid_line(quantity=1, unit_price=200_000_001, total_amount=200_000_001,
                total_tax_amount=40_000_000), "unit_price 200000001 is beyond"),
    ("negative discount", valid_line(total_discount_amount=-1, total_amount=19801),
     "total_discount_amount -1 is negative"),
    ("float amount", valid_line(total_amount=19800.0), "total_amount must be an integer"),
    ("Decimal amount", valid_line(unit_price=Decimal(9900)), "unit_price must be an integer"),
    ("quantity_unit too long", valid_line(quantity_unit="kilogrammes"), "quantity_unit"),
]


@pytest.mark.parametrize(("label", "line", "message"), CHECK_ERRORS, ids=[e[0] for e in CHECK_ERRORS])
def test_check_order_line_refusals(label: str, line: dict[str, Any], message: str) -> None:
    """Every broken rule is refused locally with 3210 and a message naming the line."""
    with pytest.raises(GoodsListError) as info:
        check_order_line(line, 7)
    assert info.value.public_message.startswith("goods_list[7] (reference 'R"), label
    assert message in info.value.public_message, info.value.public_message


@pytest.mark.parametrize("tax", [3959, 3960, 3961])
def test_check_order_line_accepts_tax_within_one(tax: int) -> None:
    """Klarna's tolerance is ±1 minor unit around the inclusive formula; so is ours."""
    check_order_line(valid_line(total_tax_amount=tax), 0)


def test_check_order_line_accepts_negative_discount_lines_and_limits() -> None:
    """A discount-type line has negative amounts; magnitudes up to 200 000 000 are fine."""
    check_order_line(valid_line(type="discount", quantity=1, unit_price=-200_000_000,
                                total_amount=-200_000_000, total_tax_amount=-40_000_000), 0)


def test_inclusive_tax_examples() -> None:
    """The formula total − round(total × 10000 / (10000 + rate)) on hand-computed figures."""
    assert inclusive_tax(19800, 2500) == 3960
    assert inclusive_tax(899, 2500) == 180  # 899 − round(719.2)
    assert inclusive_tax(-5000, 2500) == -1000
    assert inclusive_tax(5, 2500) == 1  # 5 − round(4.0)
    assert inclusive_tax(2, 2500) == 0  # 2 − round(1.6)
    assert inclusive_tax(1000, 0) == 0
    assert inclusive_tax(0, 2500) == 0


# --------------------------------------------------------------------------- properties

def reference_line(row: Goods) -> dict[str, int]:
    """Independent implementation with wide-context Decimal and ROUND_HALF_UP."""
    with localcontext() as ctx:
        ctx.prec = 300

        def rnd(x: Decimal) -> int:
            return int(x.quantize(Decimal(1), rounding=ROUND_HALF_UP))

        tax_rate = rnd(row.vat * 100)
        unit = row.price if row.flags & INC else rnd(row.price * (1 + row.vat / 100))
        disc = rnd(row.qty * unit * row.discount / 100)
        total = row.qty * unit - disc
        tax = total - rnd(Decimal(total) * 10000 / (10000 + tax_rate))
    return dict(unit_price=unit, tax_rate=tax_rate, total_discount_amount=disc,
                total_amount=total, total_tax_amount=tax)


php_doubles = st.floats(min_value=0, max_value=100, allow_nan=False).map(Decimal)
vats = st.one_of(
    st.sampled_from([Decimal(v) for v in ("0", "6", "7.5", "12", "25", "21", "19", "8.5")]),
    st.sampled_from([Decimal(25.0), Decimal(0.1), Decimal(7.7), Decimal(12.3)]),
    st.floats(min_value=0, max_value=30, allow_nan=False).map(Decimal),
)
discounts = st.one_of(
    st.just(Decimal(0)), st.sampled_from([Decimal(10), PHP_0_1, PHP_0_15, Decimal(100)]),
    php_doubles, st.decimals(min_value=0, max_value=100, places=3),
)
flag_sets = st.sampled_from([0, INC, INC | 8, INC | 16, 8, 16, INC | 1, INC | 2, 4, INC | 4])


@st.composite
def goods_rows(draw: st.DrawFn) -> Goods:
    price = draw(st.integers(min_value=-150_000, max_value=150_000))
    discount = draw(discounts) if price >= 0 else Decimal(0)
    return Goods(artno=draw(st.text(max_size=20)), title=draw(st.text(min_size=1, max_size=20)),
                 price=price, vat=draw(vats), discount=discount, flags=draw(flag_sets),
                 qty=draw(st.integers(min_value=0, max_value=1000)))


@settings(max_examples=400, deadline=None)
@given(goods_rows())
def test_goods_to_order_line_matches_reference_and_checks(row: Goods) -> None:
    """Any plausible row converts to the reference figures, passes the check, and is JSON."""
    line = goods_to_order_line(row)
    assert {k: line[k] for k in reference_line(row)} == reference_line(row)
    assert line["total_tax_amount"] == inclusive_tax(line["total_amount"], line["tax_rate"])
    assert line["quantity"] == row.qty
    check_order_line(line, 0)
    assert_json_ints(line)


@given(st.integers(min_value=0, max_value=10000))
def test_percent_hundredths_of_decimals_and_of_php_double_expansions(h: int) -> None:
    """A whole hundredth, written exactly or as the exact expansion of its nearest double
    (what PHP prints), is that many hundredths."""
    from gateway.translate.money import percent_hundredths

    assert percent_hundredths(Decimal(h) / 100) == h
    php = Decimal(h / 100)  # Decimal(float) is the double's exact binary expansion
    assert percent_hundredths(php) == h
    assert percent_hundredths(Decimal(format(h / 100, ".128f").rstrip("0"))) == h


@pytest.mark.parametrize("value", [Decimal("12.345"), Decimal("0.001"), Decimal("NaN"),
                                   Decimal(PHP_0_1) + Decimal("1e-30"), 1.5, True, "25"])
def test_percent_hundredths_refuses_what_is_not_a_hundredth(value: Any) -> None:
    from gateway.translate.money import percent_hundredths

    assert percent_hundredths(value) is None
