"""The orders a recording implies, for a sandbox target that lacks them. Pure.

A recording names reservations the target has never seen (they were created outside the
legacy API, through Klarna Payments). A sandbox target can create them: this module works
out, per recorded reservation that existed (some call on it did not answer "unknown
reservation"), an order whose lines cover what the recorded calls did with it:

* articles and quantities: the artnos ``activate`` captured (summed over activations), the
  goods rows of ``update``/``activate_reservation`` (with their prices), the artnos credited
  on the invoices those activations issued (``credit_part``, ``invoice_part_amount``);
* prices: from the goods rows where the recording has them, else
  :data:`DEFAULT_UNIT_PRICE` at :data:`DEFAULT_TAX_RATE`;
* when the partial activations would capture everything but the recording shows the
  reservation still open afterwards (a full activation, or an ``update``,
  ``extend_expiry_date``, ``change_reservation`` or ``cancel_reservation`` that succeeded),
  the first article gets one more unit, so something is left as it was.

What cannot be inferred (the original prices of articles only ever named by artno, amounts
answered by ``invoice_amount``) may make a reply differ; the report then says so.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from gateway.replay.compare import Outcome, decode_masked, number_ref, reservation_existed
from gateway.translate.money import goods_to_order_line
from gateway.wire.values import Goods

DEFAULT_UNIT_PRICE: Final = 10000
DEFAULT_TAX_RATE: Final = 2500
DEFAULT_ARTNO: Final = "ITEM-1"
#: Calls that succeed only on a reservation with something left to capture.
OPEN_CALLS: Final = frozenset({"update", "extend_expiry_date", "change_reservation",
                               "cancel_reservation"})


@dataclass(frozen=True)
class Parsed:
    """A recorded call, decoded: what seeding and mapping read."""

    method: str
    params: list[Any]
    eid: int | None
    outcome: Outcome
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SeedOrder:
    """An order to create on a sandbox target and register under ``rno``."""

    eid: int
    rno: str
    lines: tuple[dict[str, Any], ...]

    def body(self, country: str = "SE", currency: str = "SEK", locale: str = "sv-SE"
             ) -> dict[str, Any]:
        """The ``POST /v1/sandbox/orders`` body."""
        return {"eid": self.eid, "rno": self.rno, "purchase_country": country,
                "purchase_currency": currency, "locale": locale,
                "order_amount": sum(int(ln["total_amount"]) for ln in self.lines),
                "order_tax_amount": sum(int(ln["total_tax_amount"]) for ln in self.lines),
                "order_lines": [dict(ln) for ln in self.lines]}


@dataclass
class _Needs:
    activated: dict[str, int] = field(default_factory=dict)
    credited: dict[str, int] = field(default_factory=dict)
    goods: dict[str, Goods] = field(default_factory=dict)
    open_after: bool = False
    outcomes: list[str] = field(default_factory=list)


def seed_orders(calls: Sequence[Parsed]) -> list[SeedOrder]:
    """One :class:`SeedOrder` per recorded reservation that existed, in first-use order."""
    owners = invoice_owners(calls)
    needs: dict[tuple[int, str], _Needs] = {}
    for c in calls:
        key = _reservation_of(c, owners)
        if key is None:
            continue
        need = needs.setdefault(key, _Needs())
        need.outcomes.append(c.outcome.label)
        _note(c, need)
    return [SeedOrder(eid, rno, tuple(_lines(need)))
            for (eid, rno), need in needs.items() if reservation_existed(need.outcomes)]


def invoice_owners(calls: Sequence[Parsed]) -> dict[tuple[int, str], str]:
    """(eid, invno) → rno, from the activations' replies and the recorded contexts."""
    owners: dict[tuple[int, str], str] = {}
    for c in calls:
        if c.eid is None:
            continue
        rno, invno = c.context.get("rno"), c.context.get("invno")
        if rno and invno:
            owners.setdefault((c.eid, str(invno)), str(rno))
        if c.method in ("activate", "activate_reservation") and c.outcome.ok \
                and isinstance(c.outcome.value, list) and len(c.outcome.value) == 2:
            ref = number_ref(c.method, c.params)
            if ref is not None:
                owners.setdefault((c.eid, str(c.outcome.value[1])), ref.value)
    return owners


def _reservation_of(c: Parsed, owners: dict[tuple[int, str], str]) -> tuple[int, str] | None:
    if c.eid is None:
        return None
    ref = number_ref(c.method, c.params)
    if ref is None:
        return None
    if ref.kind == "rno":
        return c.eid, ref.value
    owner = owners.get((c.eid, ref.value))
    return None if owner is None else (c.eid, owner)


def _note(c: Parsed, need: _Needs) -> None:
    call = decode_masked(c.method, c.params)
    if call is None or not c.outcome.ok:
        return
    if c.method in OPEN_CALLS:
        need.open_after = True
    if c.method == "activate":
        if call.artnos:
            for a in call.artnos:
                need.activated[a.artno] = need.activated.get(a.artno, 0) + a.qty
        else:
            need.open_after = True  # a full activation found something left
    elif c.method in ("update", "activate_reservation"):
        for g in call.goods:
            need.goods[g.artno or g.title] = g
        if c.method == "activate_reservation":
            for g in call.goods:
                ref = g.artno or g.title
                need.activated[ref] = need.activated.get(ref, 0) + g.qty
    elif c.method in ("credit_part", "invoice_part_amount"):
        for a in call.artnos:
            need.credited[a.artno] = max(need.credited.get(a.artno, 0), a.qty)


def _lines(need: _Needs) -> list[dict[str, Any]]:
    refs = list(dict.fromkeys([*need.goods, *need.activated, *need.credited]))
    if not refs:
        refs = [DEFAULT_ARTNO]
    qty = {r: max(need.goods[r].qty if r in need.goods else 0, need.activated.get(r, 0),
                  need.credited.get(r, 0), 1) for r in refs}
    if need.open_after and all(qty[r] <= need.activated.get(r, 0) for r in refs):
        qty[refs[0]] += 1
    return [_line(r, qty[r], need.goods.get(r)) for r in refs]


def _line(reference: str, qty: int, goods: Goods | None) -> dict[str, Any]:
    if goods is not None:
        try:
            return goods_to_order_line(replace(goods, qty=qty))
        except Exception:  # noqa: BLE001 - a row the gateway refuses: a plain line instead
            pass
    total = qty * DEFAULT_UNIT_PRICE
    tax = total - round(total * 10000 / (10000 + DEFAULT_TAX_RATE))
    return {"type": "physical", "reference": reference, "name": reference, "quantity": qty,
            "unit_price": DEFAULT_UNIT_PRICE, "tax_rate": DEFAULT_TAX_RATE,
            "total_amount": total, "total_discount_amount": 0, "total_tax_amount": tax}
