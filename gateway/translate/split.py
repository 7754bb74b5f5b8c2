"""Splitting order lines into parts (partial captures and refunds) that sum exactly to the line.

Why: a legacy ``activate`` with ``artnos`` captures *some units* of an order line, and
``credit_part`` refunds some units of an invoice's captured line. Klarna wants every part to be
a valid order line, and the parts of one line must add up to the line to the minor unit —
otherwise the last capture is one öre above ``remaining_authorized_amount`` and is refused
(docs/order-management.md#partial-captures-and-refunds), or a refund leaves a stray öre.

The scheme (cumulative amounts). For a line with quantity ``Q``, unit price ``U``, discount
``D``, total ``T = Q·U − D``, tax ``X`` and rate ``r`` (``k = r / (10000 + r)``), define for the
first ``n`` units (``0 ≤ n ≤ Q``)::

    D(n) = round(D · n / Q)                          (half away from zero)
    T(n) = n · U − D(n)
    X(0) = 0,  X(Q) = X,  X(n) = round(T(n) · k + (X − T · k) / 2)   for 0 < n < Q

and the part covering units ``a+1 … b`` is ``D(b) − D(a)``, ``T(b) − T(a)``, ``X(b) − X(a)``,
quantity ``b − a``. Then:

* **Exact sums.** Any sequence of parts telescopes: ``Σ = (D(Q) − D(0), T(Q) − T(0),
  X(Q) − X(0)) = (D, T, X)`` because ``D(0) = 0``, ``D(Q) = D``, ``T(0) = 0``, ``T(Q) = T``.
  The split depends only on how many units were taken before, so earlier and later calls agree.
* **Line identity.** ``T(b) − T(a) = (b − a)·U − (D(b) − D(a))`` by construction.
* **Sign of the discount.** ``n ↦ D·n/Q`` is monotone and rounding is monotone, so with
  ``D ≥ 0`` every part's discount is ``≥ 0`` (and ``≤ 0`` for a negative one). With ``D ≤ Q·U``
  every part's total is ``≥ 0`` too (``T(n) = n·U − round(D·n/Q)`` is a monotone rounding of
  ``n·T/Q``).
* **Tax within ±1 of the inclusive formula for the part.** Write ``X(n) = T(n)·k + g(n)``, so a
  part's tax is ``t·k + g(b) − g(a)`` (``t`` = part total) while the formula gives
  ``f(t) = t·k + e`` with ``|e| ≤ ½``. The difference ``g(b) − g(a) − e`` is an integer. Let
  ``d = X − T·k``; the line itself is within ±1 of the formula, so ``|d| ≤ 1½``. Interior
  points have ``|g(n) − d/2| ≤ ½``; ``g(0) = 0``, ``g(Q) = d``. Hence for two interior points
  ``|g(b) − g(a)| ≤ 1``, against an end point ``≤ |d|/2 + ½ ≤ 1¼``, and for the whole line the
  line's own tax applies. In every case the integer difference is below 2 in magnitude, i.e.
  at most 1. (Rounding ``T(n)·k`` alone fails this when ``X`` is itself 1 off the formula:
  the last part could be 2 off; the ``d/2`` shift splits that deviation between both ends.)
  For lines the gateway built, ``X`` is the formula's value, ``|d| ≤ ½``.

All functions are pure; amounts in and out are ``int``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from gateway.errors import BadArtnoListError, UnknownArtnoError
from gateway.translate.money import lines_total, round_half_away
from gateway.wire.values import ArtNo

#: Keys copied unchanged from a line into its parts (with ``unit_price`` and ``tax_rate``).
COPIED_KEYS = ("type", "reference", "name", "quantity_unit")


def _int(line: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = line.get(key, default)
    if value is None and default is not None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"order line {line.get('reference')!r}: {key} is not an integer: {value!r}")
    return value


class _Line:
    """The integer figures of one order line and its cumulative amount functions."""

    __slots__ = ("quantity", "unit_price", "tax_rate", "total", "discount", "tax", "_k", "_shift")

    def __init__(self, line: Mapping[str, Any]) -> None:
        self.quantity = _int(line, "quantity")
        self.unit_price = _int(line, "unit_price")
        self.tax_rate = _int(line, "tax_rate", 0)
        self.total = _int(line, "total_amount")
        self.discount = _int(line, "total_discount_amount", 0)
        self.tax = _int(line, "total_tax_amount", 0)
        if self.quantity < 0 or self.tax_rate < 0:
            raise ValueError(f"order line {line.get('reference')!r}: negative quantity or tax_rate")
        if self.total != self.quantity * self.unit_price - self.discount:
            # A line that breaks its own identity cannot be split so that parts sum to it.
            raise ValueError(
                f"order line {line.get('reference')!r}: total_amount {self.total} != "
                f"{self.quantity} × {self.unit_price} − {self.discount}"
            )
        self._k = Fraction(self.tax_rate, 10000 + self.tax_rate)
        self._shift = (self.tax - self.total * self._k) / 2

    def discount_upto(self, n: int) -> int:
        return round_half_away(Fraction(self.discount * n, self.quantity)) if n else 0

    def total_upto(self, n: int) -> int:
        return n * self.unit_price - self.discount_upto(n)

    def tax_upto(self, n: int) -> int:
        if n == 0:
            return 0
        if n == self.quantity:
            return self.tax
        return round_half_away(self.total_upto(n) * self._k + self._shift)


def part_of_line(line: Mapping[str, Any], done_qty: int, qty: int) -> dict[str, Any]:
    """The order line for ``qty`` units of ``line`` after ``done_qty`` units were taken earlier.

    Why cumulative: the amounts of units ``done_qty+1 … done_qty+qty`` are the cumulative
    amount up to ``done_qty+qty`` minus that up to ``done_qty`` (module docstring), so however a
    line is cut — 1+1+1 or 2+1 or all at once — the parts sum exactly to the line, each part
    satisfies ``total_amount = quantity × unit_price − total_discount_amount`` and its tax is
    within ±1 of the inclusive formula.

    ``unit_price`` and ``tax_rate`` stay; ``type``/``reference``/``name``/``quantity_unit`` are
    copied when present. ``qty ≤ 0`` or ``done_qty + qty`` above the line's quantity raise
    ``BadArtnoListError`` (9107). A line whose own arithmetic is broken raises ``ValueError``
    (upstream data the gateway cannot split faithfully).
    """
    reference = line.get("reference")
    if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
        raise BadArtnoListError(f"artno {reference!r}: quantity {qty!r} is not positive")
    if not isinstance(done_qty, int) or isinstance(done_qty, bool) or done_qty < 0:
        raise ValueError(f"done_qty must be a non-negative integer, got {done_qty!r}")
    figures = _Line(line)
    if done_qty + qty > figures.quantity:
        remain = max(0, figures.quantity - done_qty)
        raise BadArtnoListError(f"artno {reference!r}: {qty} requested, {remain} remain")
    start, end = done_qty, done_qty + qty
    part: dict[str, Any] = {key: line[key] for key in COPIED_KEYS if line.get(key) is not None}
    part["quantity"] = qty
    part["unit_price"] = figures.unit_price
    part["tax_rate"] = figures.tax_rate
    part["total_amount"] = figures.total_upto(end) - figures.total_upto(start)
    part["total_discount_amount"] = figures.discount_upto(end) - figures.discount_upto(start)
    part["total_tax_amount"] = figures.tax_upto(end) - figures.tax_upto(start)
    return part


def _key(line: Mapping[str, Any]) -> str:
    ref = line.get("reference")
    return ref if isinstance(ref, str) else ""


def done_per_line(lines: Sequence[Mapping[str, Any]], done_qty_by_ref: Mapping[str, int]) -> list[int]:
    """Spread the quantity already done per reference over the lines, filling them in order.

    Why: bookkeeping is per reference (that is what legacy ``artnos`` name), but several lines
    may share a reference; the planners always fill the first such line first, so this replays
    the same allocation. Quantities beyond what the lines hold are capped.
    """
    left = {ref: max(0, int(qty)) for ref, qty in done_qty_by_ref.items()}
    result = []
    for line in lines:
        quantity = _int(line, "quantity")
        key = _key(line)
        take = min(max(quantity, 0), left.get(key, 0))
        if take:
            left[key] -= take
        result.append(take)
    return result


def quantities_by_ref(lines: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Sum ``quantity`` per ``reference`` (e.g. over the lines of earlier captures/refunds).

    Why: builds the ``*_qty_by_ref`` mappings the planners take from stored or fetched lines.
    Lines without a reference count under ``""``.
    """
    totals: dict[str, int] = {}
    for line in lines:
        key = _key(line)
        totals[key] = totals.get(key, 0) + _int(line, "quantity")
    return totals


def _plan(
    lines: Sequence[Mapping[str, Any]],
    done_qty_by_ref: Mapping[str, int],
    artnos: Sequence[ArtNo],
    where: str,
) -> list[dict[str, Any]]:
    requested: dict[str, int] = {}
    for row in artnos:
        if not isinstance(row.artno, str) or not row.artno:
            raise BadArtnoListError("artnos: an entry has an empty artno")
        if not isinstance(row.qty, int) or isinstance(row.qty, bool) or row.qty <= 0:
            raise BadArtnoListError(f"artno {row.artno!r}: quantity {row.qty!r} is not positive")
        requested[row.artno] = requested.get(row.artno, 0) + row.qty
    if not requested:
        raise BadArtnoListError("artnos: the list is empty")
    for artno in requested:
        if not any(_key(line) == artno for line in lines):
            raise UnknownArtnoError(f"artno {artno!r} is not on the {where}")
    done = done_per_line(lines, done_qty_by_ref)
    parts: list[tuple[int, dict[str, Any]]] = []
    for artno, wanted in requested.items():
        indexes = [i for i, line in enumerate(lines) if _key(line) == artno]
        remain = sum(max(0, _int(lines[i], "quantity") - done[i]) for i in indexes)
        if wanted > remain:
            raise BadArtnoListError(f"artno {artno!r}: {wanted} requested, {remain} remain")
        for i in indexes:
            take = min(wanted, _int(lines[i], "quantity") - done[i])
            if take > 0:
                parts.append((i, part_of_line(lines[i], done[i], take)))
                wanted -= take
    parts.sort(key=lambda item: item[0])
    return [part for _, part in parts]


def plan_partial_capture(
    order_lines: list[dict[str, Any]],
    captured_qty_by_ref: Mapping[str, int],
    artnos: Sequence[ArtNo],
) -> list[dict[str, Any]]:
    """The capture's order lines for a legacy partial ``activate`` (``artnos`` non-empty).

    Why: docs/order-management.md#partial-captures-and-refunds — capture exactly the listed
    quantities of the lines whose ``reference`` equals each artno, never more than remains
    uncaptured, splitting amounts so that capturing a line in parts sums exactly to the line.
    Repeated artnos are summed; lines sharing a reference are filled in order (as
    :func:`done_per_line` assumes).

    Raises ``BadArtnoListError`` (9107) for an empty artno, a quantity ≤ 0, an empty list, or
    "artno X: 5 requested, 2 remain"; ``UnknownArtnoError`` (9108) for an artno no order line
    has. The result is in order-line order; its sum is :func:`capture_amount`.
    """
    return _plan(order_lines, captured_qty_by_ref, artnos, "order")


def plan_partial_refund(
    captured_lines: list[dict[str, Any]],
    refunded_qty_by_ref: Mapping[str, int],
    artnos: Sequence[ArtNo],
) -> list[dict[str, Any]]:
    """The refund's order lines for ``credit_part`` with ``artnos``, against one invoice.

    Why per invoice: a legacy credit refers to one invoice (one capture); the refundable
    quantity is what that capture holds minus what was already refunded on it, never what the
    order holds elsewhere. ``captured_lines`` are the invoice's captured lines,
    ``refunded_qty_by_ref`` what was refunded on it. Same errors as
    :func:`plan_partial_capture`, with "is not on the invoice".
    """
    return _plan(captured_lines, refunded_qty_by_ref, artnos, "invoice")


def remaining_lines(
    lines: list[dict[str, Any]], done_qty_by_ref: Mapping[str, int]
) -> list[dict[str, Any]]:
    """The not-yet-done rest of every line: full capture or full refund of what is left.

    Why: "capture everything still uncaptured" and "refund everything not yet refunded" must be
    the exact complement of earlier parts, so the rest is ``part_of_line(line, done, Q − done)``
    (same cumulative scheme). Lines with nothing left (or quantity 0) are omitted; an empty
    result means nothing is left (the caller answers 2102).
    """
    done = done_per_line(lines, done_qty_by_ref)
    rest = []
    for line, done_qty in zip(lines, done):
        left = _int(line, "quantity") - done_qty
        if left > 0:
            rest.append(part_of_line(line, done_qty, left))
    return rest


def capture_amount(lines: Iterable[Mapping[str, Any]]) -> int:
    """``captured_amount`` (or ``refunded_amount``) for a list of part lines: their exact sum."""
    return lines_total(lines)
