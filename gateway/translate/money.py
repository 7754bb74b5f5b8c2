"""Legacy goods rows → Order Management REST order lines, with exact integer money.

Why this module exists: the most reported Klarna REST error is ``BAD_VALUE`` on
``total_tax_amount`` (docs/order-management.md#order-lines), and legacy clients send
percentages as PHP ``<double>`` expansions such as
``0.1000000000000000055511151231257827021181583404541015625``
(docs/legacy-protocol.md#value-types). So every figure here is computed with exact rational
arithmetic (:class:`fractions.Fraction` built from :class:`~decimal.Decimal`, never a binary
float), rounded once, half away from zero, exactly as
docs/order-management.md#from-legacy-goods-to-order-lines prescribes, and every produced line
is checked locally so a bad goods list is refused with a fault naming the row instead of
Klarna's opaque refusal.

Everything is pure: no I/O, no clock, no global state. Amounts in the returned dicts are
plain ``int`` (JSON-serialisable as-is).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Any

from gateway.errors import GoodsListError
from gateway.wire.values import Goods, GoodsFlag

#: REST limit on ``unit_price``, ``total_amount``, ``total_discount_amount`` and
#: ``total_tax_amount`` (docs/order-management.md#field-limits: 200 000 000).
MAX_AMOUNT = 200_000_000
#: REST limit on ``reference`` and ``name``.
MAX_TEXT = 255
#: REST limit on ``quantity_unit``.
MAX_QUANTITY_UNIT = 10

#: ``quantity_unit`` for the PRINT_* goods flags. The legacy ``qty`` then counts thousandths,
#: hundredths or tenths of a unit and ``price`` is per counted fraction (the SDKs' own sum is
#: ``price × … × qty``), so the quantity and unit price are kept as they are and only the
#: unit says how to read them: ``qty`` 1500 with ``"1/1000"`` prints as 1.5 units. When a
#: client sets more than one PRINT flag, the finest one wins (checked in this order).
PRINT_UNITS: tuple[tuple[GoodsFlag, str], ...] = (
    (GoodsFlag.PRINT_1000, "1/1000"),
    (GoodsFlag.PRINT_100, "1/100"),
    (GoodsFlag.PRINT_10, "1/10"),
)

Rational = Decimal | Fraction | int


def _fraction(x: Rational) -> Fraction:
    """Exact rational value of ``x``. Floats are refused: they already lost the exact value."""
    if isinstance(x, bool) or isinstance(x, float):
        raise TypeError(f"exact money arithmetic needs Decimal, Fraction or int, not {type(x).__name__}")
    if isinstance(x, Decimal) and not x.is_finite():
        raise ValueError(f"not a finite number: {x}")
    return Fraction(x)


def round_half_away(x: Rational) -> int:
    """Round ``x`` to the nearest integer, halves away from zero, with no intermediate rounding.

    Why: docs/order-management.md#from-legacy-goods-to-order-lines fixes one rounding rule
    (PHP ``round``, i.e. ``ROUND_HALF_UP`` on the magnitude) and requires exact decimal
    arithmetic. Python's ``round`` rounds halves to even and ``Decimal`` arithmetic rounds to
    the context precision (28 digits, fewer than a PHP double's expansion), so the value is
    taken as an exact :class:`~fractions.Fraction`.
    """
    f = _fraction(x)
    magnitude = abs(f)
    q, r = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * r >= magnitude.denominator:
        q += 1
    return -q if f < 0 else q


def percent_hundredths(percent: Decimal | int) -> int | None:
    """``percent × 100`` as an integer (a REST ``tax_rate``), or ``None`` when ``percent``
    is not a whole hundredth of a percent.

    Why not just round: a call that states one VAT rate (``return_amount``'s ``vat``) must
    not be silently moved to another; 12.345 % is refused rather than sent as 12.35 %. But
    PHP prints a double's exact binary expansion (15.6 arrives as
    ``15.5999999999999996447286321199499070644378662109375``), so a value that is exactly
    the double nearest to a whole hundredth counts as that hundredth: it is what the
    merchant wrote.
    """
    if isinstance(percent, bool) or not isinstance(percent, (Decimal, int)):
        return None
    if isinstance(percent, Decimal) and not percent.is_finite():
        return None
    scaled = Fraction(percent) * 100
    if scaled.denominator == 1:
        return int(scaled)
    nearest = round_half_away(scaled)
    # int / int division is correctly rounded: the double a client held for nearest/100.
    if Fraction(nearest / 100) == Fraction(percent):
        return nearest
    return None


def inclusive_tax(total_amount: int, tax_rate: int) -> int:
    """Klarna's tax of a tax-inclusive amount: ``total − round(total × 10000 / (10000 + rate))``.

    Why: Klarna validates ``total_tax_amount`` against exactly this formula with a tolerance of
    ±1 minor unit (docs/order-management.md#order-lines); computing it the same way makes our
    lines exact.
    """
    return total_amount - round_half_away(Fraction(total_amount * 10000, 10000 + tax_rate))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(line: Mapping[str, Any], index: int) -> str:
    """``goods_list[2] (reference 'ABC')`` — the prefix of every goods-list fault message."""
    ref = line.get("reference")
    shown = ref if isinstance(ref, str) else ""
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"goods_list[{index}] (reference {shown!r})"


def _goods_error(index: int, ref: str, message: str) -> GoodsListError:
    return GoodsListError(f"{_describe({'reference': ref}, index)}: {message}")


def _line_type(goods: Goods) -> str:
    """REST ``type``: shipment and handling flags first, then the sign of the price."""
    if goods.flags & GoodsFlag.IS_SHIPMENT:
        return "shipping_fee"
    if goods.flags & GoodsFlag.IS_HANDLING:
        return "surcharge"
    if goods.price < 0:
        return "discount"
    return "physical"


def _quantity_unit(flags: int) -> str | None:
    for flag, unit in PRINT_UNITS:
        if flags & flag:
            return unit
    return None


def goods_to_order_line(goods: Goods, index: int = 0) -> dict[str, Any]:
    """Convert one legacy goods row into a REST order line, exactly per
    docs/order-management.md#from-legacy-goods-to-order-lines.

    Why the formulas are fixed: the legacy SDKs computed the reservation total from the same
    figures, and Klarna checks the REST line arithmetic; any other rounding would make the
    gateway's totals drift by a minor unit from what the merchant's ERP expects (same section).
    ``index`` is the row's position in the goods list, used only in fault messages.

    Refuses (``GoodsListError``, code 3210, naming the row) what cannot be sent faithfully:
    negative ``qty``, negative VAT, a discount outside 0..100 %, both ``artno`` and ``title``
    empty, ``reference``/``name`` over 255 characters (never truncated: truncation could
    merge two article numbers), and anything :func:`check_order_line` rejects.

    The result carries ``type``, ``reference``, ``name``, ``quantity``, (``quantity_unit``),
    ``unit_price``, ``tax_rate``, ``total_amount``, ``total_discount_amount`` and
    ``total_tax_amount``; all amounts are ``int``.
    """
    reference, name, vat, discount = _checked_goods(goods, index)
    tax_rate = round_half_away(vat * 100)
    if goods.flags & GoodsFlag.INC_VAT:
        unit_price = goods.price
    else:
        unit_price = round_half_away(goods.price * (1 + vat / 100))
    total_discount_amount = round_half_away(goods.qty * unit_price * discount / 100)
    total_amount = goods.qty * unit_price - total_discount_amount
    line: dict[str, Any] = {
        "type": _line_type(goods),
        "reference": reference,
        "name": name,
        "quantity": goods.qty,
    }
    unit = _quantity_unit(goods.flags)
    if unit is not None:
        line["quantity_unit"] = unit
    line.update(
        unit_price=unit_price,
        tax_rate=tax_rate,
        total_amount=total_amount,
        total_discount_amount=total_discount_amount,
        total_tax_amount=inclusive_tax(total_amount, tax_rate),
    )
    check_order_line(line, index)
    return line


def _checked_goods(goods: Goods, index: int) -> tuple[str, str, Fraction, Fraction]:
    """The row's reference, name, VAT and discount, or the 3210 fault naming the row."""
    artno = goods.artno if isinstance(goods.artno, str) else str(goods.artno)
    title = goods.title if isinstance(goods.title, str) else str(goods.title)
    reference = artno or title
    name = title or artno
    if not reference:
        raise _goods_error(index, reference, "artno and title are both empty")
    if len(reference) > MAX_TEXT:
        raise _goods_error(index, reference, f"artno is {len(reference)} characters long, "
                                             f"at most {MAX_TEXT} allowed")
    if len(name) > MAX_TEXT:
        raise _goods_error(index, reference, f"title is {len(name)} characters long, "
                                             f"at most {MAX_TEXT} allowed")
    if not _is_int(goods.qty):
        raise _goods_error(index, reference, "qty must be an integer")
    if goods.qty < 0:
        raise _goods_error(index, reference, f"qty {goods.qty} is negative")
    if not _is_int(goods.price):
        raise _goods_error(index, reference, "price must be an integer in minor units")
    if not _is_int(goods.flags) or goods.flags < 0:
        raise _goods_error(index, reference, f"flags {goods.flags!r} is not a goods flag mask")
    try:
        vat = _fraction(goods.vat)
        discount = _fraction(goods.discount)
    except (TypeError, ValueError):
        raise _goods_error(index, reference, "vat and discount must be numbers") from None
    if vat < 0:
        raise _goods_error(index, reference, f"vat {goods.vat} is negative")
    if not 0 <= discount <= 100:
        raise _goods_error(index, reference, f"discount {goods.discount} is outside 0..100 %")
    return reference, name, vat, discount


def check_order_line(line: Mapping[str, Any], index: int) -> None:
    """Refuse a REST order line Klarna would refuse, with a fault naming the line.

    Why: Klarna's own refusal (``BAD_VALUE`` on ``order_lines[2].total_tax_amount``) says
    nothing a legacy merchant can act on; docs/order-management.md#order-lines requires a local
    check of every line before sending. Checked: integer amounts; ``total_amount = quantity ×
    unit_price − total_discount_amount`` exactly; ``total_tax_amount`` within ±1 of the
    inclusive formula; ``quantity ≥ 0``; ``tax_rate ≥ 0``; ``0 ≤ total_discount_amount`` (REST
    minimum) and every amount's magnitude ``≤ 200 000 000``; ``reference``/``name`` ≤ 255
    characters and ``name`` present; ``quantity_unit`` ≤ 10.

    Raises ``GoodsListError("goods_list[index] (reference X): ...")``.
    """
    where = _describe(line, index)

    def fail(message: str) -> GoodsListError:
        return GoodsListError(f"{where}: {message}")

    for key in ("quantity", "unit_price", "tax_rate", "total_amount",
                "total_discount_amount", "total_tax_amount"):
        if not _is_int(line.get(key)):
            raise fail(f"{key} must be an integer, got {line.get(key)!r}")
    quantity: int = line["quantity"]
    unit_price: int = line["unit_price"]
    tax_rate: int = line["tax_rate"]
    total: int = line["total_amount"]
    discount: int = line["total_discount_amount"]
    tax: int = line["total_tax_amount"]

    name = line.get("name")
    if not isinstance(name, str) or not name:
        raise fail("name is missing")
    if len(name) > MAX_TEXT:
        raise fail(f"name is {len(name)} characters long, at most {MAX_TEXT} allowed")
    reference = line.get("reference")
    if reference is not None and (not isinstance(reference, str) or len(reference) > MAX_TEXT):
        raise fail(f"reference must be a string of at most {MAX_TEXT} characters")
    unit = line.get("quantity_unit")
    if unit is not None and (not isinstance(unit, str) or len(unit) > MAX_QUANTITY_UNIT):
        raise fail(f"quantity_unit must be a string of at most {MAX_QUANTITY_UNIT} characters")
    if quantity < 0:
        raise fail(f"quantity {quantity} is negative")
    if tax_rate < 0:
        raise fail(f"tax_rate {tax_rate} is negative")
    for key, value in (("unit_price", unit_price), ("total_amount", total),
                       ("total_discount_amount", discount), ("total_tax_amount", tax)):
        if abs(value) > MAX_AMOUNT:
            raise fail(f"{key} {value} is beyond the limit of {MAX_AMOUNT}")
    if discount < 0:
        raise fail(f"total_discount_amount {discount} is negative (a discount percentage on "
                   "a negative price cannot be expressed as a REST order line)")
    if total != quantity * unit_price - discount:
        raise fail(f"total_amount {total} != quantity {quantity} × unit_price {unit_price} "
                   f"− total_discount_amount {discount}")
    expected = inclusive_tax(total, tax_rate)
    if abs(tax - expected) > 1:
        raise fail(f"total_tax_amount {tax} differs from {expected} (total_amount {total} at "
                   f"tax_rate {tax_rate}) by more than 1")


def goods_to_order_lines(goods: Sequence[Goods]) -> list[dict[str, Any]]:
    """Convert and check a whole goods list; the first bad row raises ``GoodsListError``.

    Why a list-level function: callers need the lines *and* the guarantee that every one is
    valid before the first REST request goes out (``update`` and ``credit_part`` must not send
    half a goods list). Whether the lines' sum (:func:`lines_total`) suits the operation —
    not below the captured amount, not above what is refundable — is the caller's check,
    since only it knows the order.
    """
    return [goods_to_order_line(row, index) for index, row in enumerate(goods)]


def lines_total(lines: Iterable[Mapping[str, Any]]) -> int:
    """Sum of ``total_amount``: the ``order_amount``/``captured_amount``/``refunded_amount``.

    Why: every REST body carrying lines must carry their exact sum
    (docs/order-management.md#order-lines: one minor unit of drift fails the capture).
    """
    return sum(int(line["total_amount"]) for line in lines)


def lines_tax_total(lines: Iterable[Mapping[str, Any]]) -> int:
    """Sum of ``total_tax_amount`` (``order_tax_amount`` where a body needs it)."""
    return sum(int(line.get("total_tax_amount", 0)) for line in lines)
