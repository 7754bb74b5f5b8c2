"""Judging a replayed call: number mapping and verdicts. Pure (no I/O, no Twisted).

**Number mapping.** A target issues its own invoice numbers (and a seeded sandbox target may
register a reservation under another number). :class:`NumberMap` holds recorded → target
numbers: reservation numbers come from seeding, invoice numbers are learned from the replies
that issue them (``activate``/``activate_reservation``: recorded ``["ok", X]``, replayed
``["ok", Y]`` → X→Y). Before a call is sent, the number it names is mapped
(:func:`number_positions` finds it through the call's declaration); before replies are
compared, every recorded number in the recorded reply is mapped.

**Verdicts** (:func:`judge`):

* ``same``: the replies are equal after number mapping, or both are faults with the same
  code (fault strings are worded differently by v2 and the gateway; both are in the report);
* ``known difference``: the difference is one docs/translation.md documents, named: a rule
  of ``gateway/calls/profiles.py`` ``STRICT_RULES`` (v2's fault on one side, REST's outcome
  on the other, in either direction: a ``v2-strict`` target restores v2's fault), or a
  documented difference no profile removes (:data:`DOCUMENTED`);
* ``different``: anything else, which fails the replay.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from gateway.calls import REGISTRY
from gateway.calls.profiles import STRICT_RULES
from gateway.calls.spec import Target

SAME: Final = "same"
KNOWN: Final = "known difference"
DIFFERENT: Final = "different"
SKIPPED: Final = "skipped"
VERDICTS: Final = (SAME, KNOWN, DIFFERENT, SKIPPED)

OK: Final = "ok"
#: Faults that say a reservation was unknown, or that the call never reached it.
NOT_FOUND: Final = frozenset({9109, 8101})
BEFORE_LOOKUP: Final = frozenset({-32700, -32600, -32601, -32602, 9113, 9114, 1999})
#: Calls whose reply issues a new invoice number at this index.
ISSUES_INVNO: Final = {"activate": 1, "activate_reservation": 1}
#: Calls whose reply carries an invoice number (v2 sometimes sent it as an int).
INVNO_REPLIES: Final = frozenset({*ISSUES_INVNO, "credit_part", "credit_invoice",
                                  "email_invoice", "send_invoice", "return_amount",
                                  "update_orderno"})
_DUMMY_DIGEST: Final = "A" * 88


@dataclass(frozen=True)
class Outcome:
    """One side's answer: a value, a fault, or an ``error`` (no readable reply)."""

    value: Any = None
    fault_code: int | None = None
    fault_string: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.fault_code is None

    @property
    def label(self) -> str:
        if self.error is not None:
            return "error"
        return OK if self.fault_code is None else str(self.fault_code)


@dataclass
class NumberMap:
    """Recorded → target reservation and invoice numbers (identity when absent)."""

    rno: dict[str, str] = field(default_factory=dict)
    invno: dict[str, str] = field(default_factory=dict)

    def map(self, kind: str, value: str) -> str:
        if kind == "rno":
            return self.rno.get(value, value)
        if kind == "invno":
            return self.invno.get(value, value)
        return self.invno.get(value, self.rno.get(value, value))

    def learn_invno(self, recorded: str, target: str) -> str | None:
        """Record X→Y; a conflicting earlier mapping is kept and described."""
        known = self.invno.get(recorded)
        if known is None:
            self.invno[recorded] = target
            return None
        if known != target:
            return f"invno {recorded} was mapped to {known}, now answered {target}"
        return None

    def apply(self, value: Any) -> Any:
        """``value`` with every recorded number (a string or int equal to one) mapped."""
        if isinstance(value, list):
            return [self.apply(v) for v in value]
        if isinstance(value, dict):
            return {k: self.apply(v) for k, v in value.items()}
        if isinstance(value, str):
            return self.invno.get(value, self.rno.get(value, value))
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
            mapped = self.invno.get(text, self.rno.get(text))
            return value if mapped is None or not mapped.isdigit() else int(mapped)
        return value

    def as_json(self) -> dict[str, dict[str, str]]:
        return {"rno": {k: v for k, v in self.rno.items() if k != v},
                "invno": {k: v for k, v in self.invno.items() if k != v}}


# -- which parameter holds the number -------------------------------------------------------


@dataclass(frozen=True)
class NumberRef:
    """The number a call names: its kind (``rno``, ``invno``, ``any``), value, positions."""

    kind: str
    value: str
    positions: tuple[int, ...]


def number_ref(method: str, params: Sequence[Any]) -> NumberRef | None:
    """Where the call's reservation or invoice number is, through its declaration.

    The call is decoded with a stand-in digest (the recorded one is masked); a call that
    does not decode names nothing mappable (the target will refuse it the same way).
    """
    spec = REGISTRY.served.get(method)
    if spec is None:
        entry = REGISTRY.not_offered.get(method)
        if entry is None or entry.invno_at is None or entry.invno_at >= len(params):
            return None
        value = params[entry.invno_at]
        return _ref("invno", value, (entry.invno_at,)) if _is_number(value) else None
    call = decode_masked(method, params)
    if call is None:
        return None
    ref = spec.ref(call)
    kinds = {Target.RESERVATION: "rno", Target.INVOICE: "invno", Target.ANY_NUMBER: "any"}
    kind = kinds.get(ref.target)
    if kind is None or not ref.value:
        return None
    positions = tuple(i for i, v in enumerate(params)
                      if i not in (spec.eid_at, spec.digest_at) and _is_number(v)
                      and str(v) == ref.value)
    return NumberRef(kind, ref.value, positions) if positions else None


def decode_masked(method: str, params: Sequence[Any]) -> Any:
    """A served call decoded with a stand-in for its masked digest; ``None`` when it does
    not decode (the target will refuse it as the recorded side did)."""
    spec = REGISTRY.served.get(method)
    if spec is None:
        return None
    try:
        decoded = list(params)
        if spec.digest_at < len(decoded):
            decoded[spec.digest_at] = _DUMMY_DIGEST
        return spec.decode_params(decoded)
    except Exception:  # noqa: BLE001 - any decode failure: nothing to map
        return None


def _ref(kind: str, value: Any, positions: tuple[int, ...]) -> NumberRef:
    return NumberRef(kind, str(value), positions)


def _is_number(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def mapped_values(method: str, params: Sequence[Any], numbers: NumberMap
                  ) -> tuple[dict[int, str], NumberRef | None]:
    """``{position: new text}`` for the call's number (empty when nothing changes)."""
    ref = number_ref(method, params)
    if ref is None:
        return {}, None
    new = numbers.map(ref.kind, ref.value)
    return ({i: new for i in ref.positions} if new != ref.value else {}), ref


def learn(method: str, recorded: Outcome, new: Outcome, numbers: NumberMap) -> str | None:
    """Learn the invoice number a reply issues; a conflict is described."""
    index = ISSUES_INVNO.get(method)
    if index is None or not (recorded.ok and new.ok):
        return None
    rec, got = recorded.value, new.value
    if not (isinstance(rec, list) and isinstance(got, list) and len(rec) > index
            and len(got) > index):
        return None
    return numbers.learn_invno(str(rec[index]), str(got[index]))


# -- known differences ----------------------------------------------------------------------


@dataclass(frozen=True)
class RuleOutcomes:
    """A profile rule as outcomes: v2's fault code, what REST (the default) answers, and
    the words of the gateway's own ``v2-strict`` fault (``gateway/calls/profiles.py``).

    Why the words: a recorded v2 fault is taken for the rule by its code (v2 worded its
    faults its own way), but a target's fault is the rule's only when it says so: a 9103
    has many other reasons.
    """

    v2: int
    rest: frozenset[str]
    marker: str


#: One entry per ``STRICT_RULES`` id (a test keeps them equal, and checks each v2 code
#: against the rule's own v2 text and each marker against the rule's fault).
RULE_OUTCOMES: Final[dict[str, RuleOutcomes]] = {
    "update-after-activation": RuleOutcomes(9103, frozenset({OK}), "already activated"),
    "activation-delay": RuleOutcomes(9103, frozenset({OK}), "30 minutes after"),
    "cancel-cancelled": RuleOutcomes(9103, frozenset({OK}), "already cancelled"),
    "credit-unknown-artno": RuleOutcomes(9107, frozenset({"9108"}), "is not on invoice"),
    "fully-credited-invoice": RuleOutcomes(8103, frozenset({OK, "2102"}), "fully credited"),
}


@dataclass(frozen=True)
class Documented:
    """A documented difference no profile removes; ``quote`` is quoted from
    ``docs/translation.md`` (a test checks it is there verbatim), mostly from a call's
    declared differences (``CallSpec.differences``)."""

    id: str
    quote: str


DOCUMENTED: Final[dict[str, Documented]] = {d.id: d for d in (
    Documented("no-risk", 'the gateway never answers `"no_risk"`'),
    Documented("expiry-from-call-day",
               "REST extends to the call day + the merchant's period"),
    Documented("invno-as-string", "Invoice numbers are always returned as strings"),
    Documented("send-invoice-by-email", "REST has no postal send-out"),
    Documented("passive-invoices", "Calls on passive invoices"),
    Documented("billing-address", "Billing address changes are refused by the current API"),
    Documented("not-offered", "Calls the gateway does not offer"),
)}
#: Documented behaviour worth a note even when the replies are the same.
NOTES: Final = {"send_invoice": "send-invoice-by-email"}


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str
    rule: str | None = None  # a STRICT_RULES id or a DOCUMENTED id
    readme: str | None = None  # the documented passage the rule names (docs/translation.md)

    def as_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason, "rule": self.rule,
                "readme": self.readme}


def _rule_text(rule_id: str) -> str:
    rule = next(r for r in STRICT_RULES if r.id == rule_id)
    return f"`{rule.id}`: v2: {rule.v2}; REST: {rule.rest}"


def _known(doc_id: str, reason: str) -> Verdict:
    return Verdict(KNOWN, reason, doc_id, documented_text(doc_id))


def documented_text(doc_id: str) -> str:
    """The documented passage a difference names (docs/translation.md)."""
    return DOCUMENTED[doc_id].quote


def judge(method: str, recorded: Outcome, new: Outcome, numbers: NumberMap) -> Verdict:
    """The verdict on one call; see the module docstring."""
    if recorded.error is not None:
        return Verdict(DIFFERENT, f"the recorded reply is unreadable: {recorded.error}")
    if new.error is not None:
        return Verdict(DIFFERENT, f"no reply from the target: {new.error}")
    if recorded.ok and new.ok:
        mapped = numbers.apply(recorded.value)
        return _both_ok(method, mapped, new.value, mapped != recorded.value)
    if not recorded.ok and not new.ok and recorded.fault_code == new.fault_code:
        return Verdict(SAME, f"both fault {new.fault_code}")
    rule = _profile_rule(method, recorded, new)
    if rule is not None:
        return Verdict(KNOWN, f"recorded {recorded.label}, now {new.label}: profile rule "
                              f"{rule}", rule, _rule_text(rule))
    return _documented_fault(method, recorded, new) or Verdict(
        DIFFERENT, f"recorded {_describe(recorded)}, now {_describe(new)}")


def _describe(o: Outcome) -> str:
    return "ok" if o.ok else f"fault {o.fault_code} ({o.fault_string[:80]})"


def _profile_rule(method: str, recorded: Outcome, new: Outcome) -> str | None:
    """The STRICT_RULES id explaining v2's fault on one side and REST's outcome on the
    other: v2 (recorded) → the default profile, or the other way round when the target runs
    ``v2-strict`` (its fault must then carry the rule's words)."""
    for rule in STRICT_RULES:
        outcomes = RULE_OUTCOMES.get(rule.id)
        if outcomes is None or method not in rule.calls:
            continue
        v2 = str(outcomes.v2)
        if recorded.label == v2 and new.label in outcomes.rest:
            return rule.id
        if new.label == v2 and recorded.label in outcomes.rest \
                and outcomes.marker in new.fault_string:
            return rule.id
    return None


def _documented_fault(method: str, recorded: Outcome, new: Outcome) -> Verdict | None:
    """A v2 success the gateway refuses for a documented reason."""
    if not recorded.ok or new.ok:
        return None
    entry = REGISTRY.not_offered.get(method)
    if entry is not None:
        if entry.invno_at is not None and new.fault_code in (8111, 8113, 8101):
            return _known("passive-invoices", f"{method} on a passive invoice: REST has none "
                                              f"(fault {new.fault_code})")
        if new.fault_code == 9103:
            return _known("not-offered", f"{method} is not offered by the gateway (9103)")
    if method == "update" and new.fault_code == 9103 and "billing" in new.fault_string.lower():
        return _known("billing-address", "billing address change refused (9103)")
    return None


def _both_ok(method: str, recorded: Any, new: Any, mapped: bool = False) -> Verdict:
    if recorded == new:
        note = NOTES.get(method)
        if note is not None:
            return Verdict(SAME, f"equal replies; note: {documented_text(note)}", note,
                           documented_text(note))
        return Verdict(SAME, "equal replies" + (" after number mapping" if mapped else ""))
    if method in ISSUES_INVNO and isinstance(recorded, list) and isinstance(new, list) \
            and len(recorded) == len(new) == 2 and recorded[1] == new[1] \
            and recorded[0] == "no_risk" and new[0] == "ok":
        return _known("no-risk", 'v2 answered "no_risk", the gateway always answers "ok"')
    if method in INVNO_REPLIES and _stringified(recorded) == new:
        return _known("invno-as-string", "v2 answered an invoice number as an int")
    if method == "extend_expiry_date" and _is_legacy_date(recorded) and _is_legacy_date(new):
        return _known("expiry-from-call-day", f"new expiry {new}, recorded {recorded}: "
                                              "extended from the day of the call")
    return Verdict(DIFFERENT, f"replies differ: recorded {recorded!r}, now {new!r}")


def _stringified(value: Any) -> Any:
    if isinstance(value, list):
        return [_stringified(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _is_legacy_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.strptime(value, "%Y%m%dT%H%M%S")
    except ValueError:
        return False
    return True


def reservation_existed(outcomes: Sequence[str]) -> bool:
    """Whether the recorded outcomes of the calls naming a reservation say it existed."""
    for label in outcomes:
        if label == OK:
            return True
        if label.lstrip("-").isdigit() and int(label) not in NOT_FOUND | BEFORE_LOOKUP:
            return True
    return False
