"""Number mapping, verdicts and seeding: the replay's pure logic."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from gateway.calls.profiles import STRICT_RULES
from gateway.replay.compare import (
    DIFFERENT, DOCUMENTED, KNOWN, RULE_OUTCOMES, SAME, NumberMap, Outcome, judge, learn,
    mapped_values, number_ref, reservation_existed,
)
from gateway.replay.masking import placeholder
from gateway.replay.seed import DEFAULT_UNIT_PRICE, Parsed, seed_orders

TRANSLATION = (Path(__file__).resolve().parents[2] / "docs" / "translation.md").read_text(
    encoding="utf-8")
D = placeholder("sha512")
V = "python:api:3.1.0"


def ok(value: Any) -> Outcome:
    return Outcome(value=value)


def fault(code: int, text: str = "") -> Outcome:
    return Outcome(fault_code=code, fault_string=text)


def activate(rno: str, *artnos: tuple[str, int]) -> list[Any]:
    return ["4.1", V, 1234, D, rno, {"artnos": [{"artno": a, "qty": q} for a, q in artnos]}]


def credit_part(invno: str, *artnos: tuple[str, int]) -> list[Any]:
    return ["4.1", V, 1234, invno, [{"artno": a, "qty": q} for a, q in artnos], "CR", D]


# -- number positions and mapping -----------------------------------------------------------


@pytest.mark.parametrize(("method", "params", "kind", "positions"), [
    ("activate", activate("8000000001"), "rno", (4,)),
    ("extend_expiry_date", ["4.1", V, "8000000001", 1234, D], "rno", (2,)),
    ("cancel_reservation", ["4.1", V, "8000000001", 1234, D], "rno", (2,)),
    ("credit_part", credit_part("9000000001", ("A", 1)), "invno", (3,)),
    ("email_invoice", ["4.1", V, 1234, "9000000001", D], "invno", (3,)),
    ("invoice_amount", ["4.1", V, 1234, "9000000001", D], "invno", (3,)),
    ("check_order_status", ["4.1", V, 1234, D, "9000000001", 0], "any", (4,)),
])
def test_number_ref_finds_the_number_through_the_declaration(
        method: str, params: list[Any], kind: str, positions: tuple[int, ...]) -> None:
    ref = number_ref(method, params)
    assert ref is not None and (ref.kind, ref.positions) == (kind, positions)


def test_number_ref_ignores_calls_that_name_no_number_or_do_not_decode() -> None:
    assert number_ref("activate", ["4.1", V, 1234, D]) is None  # wrong arity
    assert number_ref("no_such_call", ["x"]) is None
    # a passive-invoice call (not offered) still names its invoice
    ref = number_ref("activate_invoice", ["4.1", V, 1234, "9000000001", D])
    assert ref is not None and ref.kind == "invno"


def test_mapping_sends_target_numbers_and_identity_otherwise() -> None:
    numbers = NumberMap(rno={"8000000001": "8000000042"}, invno={"9000000001": "555"})
    assert mapped_values("activate", activate("8000000001"), numbers)[0] == {4: "8000000042"}
    assert mapped_values("activate", activate("8000000002"), numbers)[0] == {}
    assert mapped_values("email_invoice", ["4.1", V, 1234, "9000000001", D],
                         numbers)[0] == {3: "555"}
    any_ref = ["4.1", V, 1234, D, "8000000001", 0]
    assert mapped_values("check_order_status", any_ref, numbers)[0] == {4: "8000000042"}


def test_learning_invoice_numbers_from_replies() -> None:
    numbers = NumberMap()
    assert learn("activate", ok(["ok", "9000000001"]), ok(["ok", "9100000000"]), numbers) \
        is None
    assert numbers.invno == {"9000000001": "9100000000"}
    assert numbers.apply(["ok", "9000000001"]) == ["ok", "9100000000"]
    assert numbers.apply(9000000001) == 9100000000  # v2's int invno maps too
    conflict = learn("activate", ok(["ok", "9000000001"]), ok(["ok", "1"]), numbers)
    assert conflict and "9100000000" in conflict
    assert numbers.invno == {"9000000001": "9100000000"}  # the first mapping stays
    # faults and other calls teach nothing
    assert learn("activate", fault(9109), ok(["ok", "7"]), numbers) is None
    assert learn("credit_part", ok("1"), ok("2"), numbers) is None
    assert numbers.as_json() == {"rno": {}, "invno": {"9000000001": "9100000000"}}


# -- verdicts -------------------------------------------------------------------------------


def test_same_after_number_mapping() -> None:
    numbers = NumberMap(invno={"9000000001": "9100000000"})
    v = judge("credit_part", ok("9000000001"), ok("9100000000"), numbers)
    assert v.verdict == SAME and v.rule is None
    assert judge("update", ok("ok"), ok("ok"), numbers).verdict == SAME
    assert judge("credit_part", ok("9000000001"), ok("9000000001"), numbers).verdict \
        == DIFFERENT  # mapped: the target should have answered its own number


def test_faults_with_the_same_code_are_same_whatever_the_wording() -> None:
    v = judge("activate", fault(9109, "unknown_reservation"),
              fault(9109, "unknown rno 1 for eid 1234"), NumberMap())
    assert v.verdict == SAME
    assert judge("activate", fault(9109), fault(9103), NumberMap()).verdict == DIFFERENT


@pytest.mark.parametrize("rule", STRICT_RULES, ids=lambda r: r.id)
def test_every_profile_rule_is_a_known_difference_both_ways(rule: Any) -> None:
    outcomes = RULE_OUTCOMES[rule.id]
    method = sorted(rule.calls)[0]
    v2 = fault(outcomes.v2, "v2's own words")
    strict = fault(outcomes.v2, f"not_allowed: ... {outcomes.marker} ...")
    for rest_label in outcomes.rest:
        rest = ok("ok") if rest_label == "ok" else fault(int(rest_label))
        # v2 → the default profile; the default → a v2-strict target (in the rule's words)
        for recorded, new in ((v2, rest), (rest, strict)):
            v = judge(method, recorded, new, NumberMap())
            assert (v.verdict, v.rule) == (KNOWN, rule.id)
            assert v.readme is not None and rule.v2 in v.readme
        # a target fault with the rule's code but another reason is no known difference
        assert judge(method, rest, v2, NumberMap()).verdict == DIFFERENT
    # no rule covers extend_expiry_date: the same outcomes there are different
    assert all("extend_expiry_date" not in r.calls for r in STRICT_RULES)
    assert judge("extend_expiry_date", v2, ok("ok"), NumberMap()).verdict == DIFFERENT


def test_rule_outcomes_follow_the_profile_rules() -> None:
    """One entry per STRICT_RULES row, whose v2 code is the one the documented row names."""
    assert set(RULE_OUTCOMES) == {r.id for r in STRICT_RULES}
    for rule in STRICT_RULES:
        assert rule.v2.startswith(str(RULE_OUTCOMES[rule.id].v2))
        for label in RULE_OUTCOMES[rule.id].rest - {"ok"}:
            assert label in rule.rest
    source = (Path(__file__).resolve().parents[2] / "gateway" / "calls" / "profiles.py"
              ).read_text(encoding="utf-8")
    for outcomes in RULE_OUTCOMES.values():
        assert outcomes.marker in source  # the words of the v2-strict fault


@pytest.mark.parametrize("doc", DOCUMENTED.values(), ids=lambda d: d.id)
def test_documented_differences_quote_the_translation_doc(doc: Any) -> None:
    assert doc.quote in TRANSLATION


def test_documented_differences() -> None:
    n = NumberMap(invno={"555": "9000000000"})
    cases = [
        ("activate", ok(["no_risk", "555"]), ok(["ok", "9000000000"]), "no-risk"),
        ("credit_part", ok(555), ok("9000000000"), "invno-as-string"),
        ("extend_expiry_date", ok("20270301T235959"), ok("20260129T130000"),
         "expiry-from-call-day"),
        ("activate_invoice", ok("ok"), fault(8111), "passive-invoices"),
        ("get_pclasses", ok([]), fault(9103, "not offered"), "not-offered"),
        ("update", ok("ok"), fault(9103, "billing address changes are refused"),
         "billing-address"),
    ]
    for method, recorded, new, rule in cases:
        v = judge(method, recorded, new, n)
        assert (v.verdict, v.rule) == (KNOWN, rule), (method, v)
    note = judge("send_invoice", ok("555"), ok("9000000000"), n)
    assert note.verdict == SAME and note.rule == "send-invoice-by-email"


def test_truly_different_replies() -> None:
    n = NumberMap()
    assert judge("invoice_amount", ok(12345), ok(10000), n).verdict == DIFFERENT
    assert judge("invoice_amount", ok(12345), ok("12345"), n).verdict == DIFFERENT
    assert judge("extend_expiry_date", ok("not a date"), ok("20260129T130000"), n).verdict \
        == DIFFERENT
    assert judge("update", ok("ok"), fault(9103, "cannot update"), n).verdict == DIFFERENT
    assert judge("activate", ok(["no_risk", "1"]), ok(["ok", "2"]), n).verdict == DIFFERENT
    v = judge("update", ok("ok"), Outcome(error="HTTP 502"), n)
    assert v.verdict == DIFFERENT and "HTTP 502" in v.reason


def test_reservation_existence_from_recorded_outcomes() -> None:
    assert reservation_existed(["9109", "ok"])
    assert reservation_existed(["9103"])
    assert not reservation_existed(["9109", "9114", "-32602"])
    assert not reservation_existed([])


# -- seeding ---------------------------------------------------------------------------------


def test_seed_orders_cover_the_recorded_calls() -> None:
    goods = {"goods_list": [
        {"goods": {"artno": "ART-1", "title": "Sylt", "price": 10000, "vat": 25,
                   "discount": 0, "flags": 32}, "qty": 2}],
        "dlv_addr": "", "bill_addr": "", "orderid1": "", "orderid2": ""}
    calls = [
        Parsed("update", ["4.1", V, 1234, D, "8000000001", goods], 1234, ok("ok")),
        Parsed("activate", activate("8000000001", ("ART-1", 1), ("ART-9", 2)), 1234,
               ok(["ok", "9000000001"])),
        Parsed("credit_part", credit_part("9000000001", ("ART-9", 3)), 1234, ok("9000000001")),
        Parsed("credit_part", credit_part("9000000001", ("NOPE", 1)), 1234, fault(9108)),
        Parsed("activate", activate("8000000002"), 1234, ok(["ok", "9000000002"])),
        Parsed("extend_expiry_date", ["4.1", V, "8000000003", 1234, D], 5678, ok("x")),
        Parsed("activate", activate("8000000003", ("A", 1)), 5678, ok(["ok", "9000000003"])),
        Parsed("activate", activate("8999999999"), 1234, fault(9109)),
    ]
    seeds = {(s.eid, s.rno): s for s in seed_orders(calls)}
    assert list(seeds) == [(1234, "8000000001"), (1234, "8000000002"), (5678, "8000000003")]
    lines = {ln["reference"]: ln for ln in seeds[(1234, "8000000001")].lines}
    assert set(lines) == {"ART-1", "ART-9"}  # NOPE was refused: not an article
    assert (lines["ART-1"]["quantity"], lines["ART-1"]["unit_price"]) == (2, 10000)
    assert lines["ART-1"]["name"] == "Sylt"  # the goods row's title and price
    assert (lines["ART-9"]["quantity"], lines["ART-9"]["unit_price"]) == (3, DEFAULT_UNIT_PRICE)
    [plain] = seeds[(1234, "8000000002")].lines
    assert (plain["reference"], plain["quantity"]) == ("ITEM-1", 1)
    # activated in full by artnos, then extended: one more unit keeps it open
    [open_line] = seeds[(5678, "8000000003")].lines
    assert open_line["quantity"] == 2
    body = seeds[(1234, "8000000001")].body()
    assert body["order_amount"] == sum(ln["total_amount"] for ln in body["order_lines"])
    assert body["rno"] == "8000000001" and body["eid"] == 1234
    for ln in body["order_lines"]:  # Klarna's line arithmetic holds
        assert ln["total_amount"] == ln["quantity"] * ln["unit_price"] - \
            ln["total_discount_amount"]
        rate = ln["tax_rate"]
        assert abs(ln["total_tax_amount"] - round(ln["total_amount"] * rate / (10000 + rate))) \
            <= 1


def test_rule_ids_are_documented_table_ids() -> None:
    table = re.findall(r"^\| `([a-z0-9-]+)` \|", TRANSLATION, re.M)
    assert set(RULE_OUTCOMES) <= set(table)
