"""Per merchant ``text_repair``: mojibake in the free text a legacy call sends to REST.

Each call declares the fields whose text goes to REST (``CallSpec.free_text``: names,
addresses, company names, article titles and references, shipping info, descriptions) and
the artno lists that name lines the order already has (``CallSpec.line_keys``). With the
merchant's mode:

- ``off``: nothing is looked at;
- ``report`` (the default): the text is sent as received; each field whose text
  :func:`gateway.translate.text.repair` would change gets a journal note naming the field
  with the text before and after, and is counted (``Plan.repairs``);
- ``fix``: the plan is made from the repaired text (so that is what REST receives), with the
  same notes.

Only text the plan's requests carry is noted: a field the call does not send (an address
equal to the order's, ``update``'s ``bill_addr`` when it is the SDK's copy of ``dlv_addr``)
does not reach the customer.

An artno is a key, not text for the customer: it is repaired only when that changes the
line it names, i.e. the order (or the invoice) has a line with the repaired reference and
none with the artno as received; in ``fix`` mode it then names that line (an ERP keeps
sending the mis-encoded artno after ``update`` wrote the repaired reference). An artno
that names its line as received is right, whatever it looks like.

The digest is checked on the parameters as received, long before (``gateway.edge.auth``);
the journal keeps the call as received, and the notes say what was sent instead. Pure:
:func:`repairing` wraps a call's plan, given how to find a merchant's mode.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from gateway.calls.registry import CallRegistry
from gateway.calls.spec import CallSpec
from gateway.translate.plan import OrderContext, Plan
from gateway.translate.text import TextRepair, repair

if TYPE_CHECKING:
    from gateway.config import Config

OFF: Final = "off"
REPORT: Final = "report"
FIX: Final = "fix"
#: Legacy names of fields whose attribute is named otherwise.
_LEGACY_NAMES: Final = {"goods": "goods_list"}

#: ``eid -> text_repair mode`` (``off`` for an eid without a merchant).
ModeOf = Callable[[int], str]


def text_repair_mode(config: Config) -> ModeOf:
    """``eid -> text_repair`` of that merchant (``off`` for an eid not configured)."""
    def mode_of(eid: int) -> str:
        merchant = config.merchant(eid)
        return merchant.text_repair if merchant is not None else OFF
    return mode_of


@dataclass(frozen=True)
class CallRepairs:
    """A call with its declared free text and line keys repaired, and what changed."""

    call: Any
    #: Free text that changes (or could not be checked).
    texts: tuple[TextRepair, ...]
    #: Artnos that name another line once repaired.
    keys: tuple[TextRepair, ...]


def repair_call(spec: CallSpec[Any], call: Any, ctx: OrderContext, mode: str) -> CallRepairs:
    """Worked out in every mode but ``off``; the repaired call is sent only in ``fix``."""
    texts: list[TextRepair] = []
    keys: list[TextRepair] = []
    changes: dict[str, Any] = {}
    for name in spec.free_text:
        value = getattr(call, name)
        fixed = _repaired(value, _LEGACY_NAMES.get(name, name), mode, texts)
        if fixed is not value:
            changes[name] = fixed
    known = _line_references(ctx)
    for name in spec.line_keys:
        rows = getattr(call, name)
        fixed_rows = tuple(_repaired_key(row, f"{_LEGACY_NAMES.get(name, name)}[{i}].artno",
                                         known, mode, keys) for i, row in enumerate(rows))
        if any(a is not b for a, b in zip(fixed_rows, rows)):
            changes[name] = fixed_rows
    return CallRepairs(replace(call, **changes) if changes else call, tuple(texts),
                       tuple(keys))


def _repaired(value: Any, label: str, mode: str, found: list[TextRepair]) -> Any:
    """``value`` with every string in it repaired (the same object when nothing changes);
    each string that would change, or could not be checked, is added to ``found``."""
    if isinstance(value, str):
        result = repair(value)
        if result.error is not None:
            found.append(TextRepair(label, value, value, mode, result.error))
            return value
        if result.text == value:
            return value
        found.append(TextRepair(label, value, result.text, mode))
        return result.text
    if isinstance(value, tuple):
        items = tuple(_repaired(v, f"{label}[{i}]", mode, found) for i, v in enumerate(value))
        return value if all(a is b for a, b in zip(items, value)) else items
    if is_dataclass(value) and not isinstance(value, type):
        changed = {}
        for f in fields(value):
            old = getattr(value, f.name)
            new = _repaired(old, f"{label}.{f.name}", mode, found)
            if new is not old:
                changed[f.name] = new
        return replace(value, **changed) if changed else value
    return value  # numbers, flags, None: not text


def _repaired_key(row: Any, label: str, known: frozenset[str], mode: str,
                  found: list[TextRepair]) -> Any:
    """An artno row repaired only when that makes it name a line it did not name."""
    artno = row.artno
    if artno in known:
        return row
    result = repair(artno)
    if result.error is not None or result.text == artno or result.text not in known:
        return row
    found.append(TextRepair(label, artno, result.text, mode))
    return replace(row, artno=result.text)


def _line_references(ctx: OrderContext) -> frozenset[str]:
    """The references of the order's lines and of the invoice's (what artnos name)."""
    lines = list(ctx.order.get("order_lines") or [])
    if ctx.invoice is not None:
        lines += list(ctx.invoice.lines)
    return frozenset(str(ln.get("reference")) for ln in lines if ln.get("reference"))


def _sent(repairs: tuple[TextRepair, ...], plan: Plan, mode: str) -> list[TextRepair]:
    """The repairs of text the plan really sends: text a plan does not send (an address
    equal to the order's, ``update``'s billing address when it is the SDK's copy of the
    shipping address) does not reach the customer, and is not noted. Each string of the
    request bodies vouches for one repair, so a copy sent once is noted once."""
    unclaimed = [text for step in plan.steps for text in _strings(step.body)]
    kept = []
    for r in repairs:
        if r.error is not None:  # not checked: say so, whatever was sent
            kept.append(r)
            continue
        needle = (r.after if mode == FIX else r.before).strip()
        claimed = next((i for i, text in enumerate(unclaimed) if needle in text), None)
        if claimed is not None:
            del unclaimed[claimed]
            kept.append(r)
    return kept


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def repairing(spec: CallSpec[Any], mode_of: ModeOf) -> CallSpec[Any]:
    """``spec`` whose plan applies the merchant's ``text_repair`` (unchanged for a call
    that sends no free text)."""
    if not spec.free_text and not spec.line_keys:
        return spec
    inner = spec.plan

    def plan(call: Any, ctx: OrderContext) -> Plan:
        mode = mode_of(call.eid)
        if mode == OFF:
            return inner(call, ctx)
        found = repair_call(spec, call, ctx, mode)
        result = inner(found.call if mode == FIX else call, ctx)
        repairs = (*_sent(found.texts, result, mode), *found.keys)
        if not repairs:
            return result
        return replace(result, notes=(*result.notes, *(r.note for r in repairs)),
                       repairs=(*result.repairs, *repairs))
    plan.__doc__ = f"{spec.name}'s plan, with the merchant's text_repair applied."
    return replace(spec, plan=plan)


def repairing_registry(registry: CallRegistry, mode_of: ModeOf) -> CallRegistry:
    """The same calls, each planned with the merchant's ``text_repair``."""
    return registry.mapped(lambda spec: repairing(spec, mode_of))
