"""Tests of gateway.translate.address: legacy address → REST Address, country codes, equality."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import FaultCode, InvalidParamsError
from gateway.translate.address import (
    klarna_country_to_alpha2,
    legacy_address_to_rest,
    rest_address_equal,
)
from gateway.wire.values import Address

FULL = Address(
    email="anna@example.se", telno="08-123 45 67", cellno="070-111 22 33", fname="Anna",
    lname="Andersson", company="Testbolaget AB", careof="c/o Berg", street="Hamngatan",
    house_number="5", house_extension="B", zip="123 45", city="Stockholm", country=209,
)


@pytest.mark.parametrize(
    ("code", "alpha2"),
    [(209, "SE"), (164, "NO"), (73, "FI"), (59, "DK"), (81, "DE"), (154, "NL"), (15, "AT")],
)
def test_klarna_country_codes(code: int, alpha2: str) -> None:
    """Klarna's integer codes of the Klarna markets map to their ISO alpha-2 codes."""
    assert klarna_country_to_alpha2(code) == alpha2


@pytest.mark.parametrize("code", [0, 999, -1, True])
def test_unknown_country_code_names_the_field(code: int) -> None:
    """Unknown codes (and bools) are invalid_params naming the legacy field."""
    with pytest.raises(InvalidParamsError) as info:
        klarna_country_to_alpha2(code, field="dlv_addr.country")
    assert info.value.fault_code == FaultCode.INVALID_PARAMS
    assert info.value.public_message.startswith("dlv_addr.country: ")


def test_full_address_mapping() -> None:
    """Every legacy field lands in its REST field; cellno wins over telno; street is joined."""
    rest = legacy_address_to_rest(FULL, field="dlv_addr")
    assert rest == {
        "given_name": "Anna",
        "family_name": "Andersson",
        "organization_name": "Testbolaget AB",
        "street_address": "Hamngatan 5 B",
        "street_address2": "c/o Berg",
        "postal_code": "123 45",
        "city": "Stockholm",
        "country": "SE",
        "email": "anna@example.se",
        "phone": "070-111 22 33",
    }
    assert json.loads(json.dumps(rest)) == rest


@pytest.mark.parametrize(
    ("street", "number", "extension", "expected"),
    [("Hamngatan", "5", "B", "Hamngatan 5 B"), ("Hauptstr.", "12", "", "Hauptstr. 12"),
     ("Kalverstraat", "", "a", "Kalverstraat a"), ("  Storgatan 1 ", "", "", "Storgatan 1"),
     ("", "7", "", "7"), ("", "", "", None)],
)
def test_street_joining(street: str, number: str, extension: str, expected: str | None) -> None:
    """Non-empty street parts are stripped and joined with single spaces; none → omitted."""
    rest = legacy_address_to_rest(
        Address(street=street, house_number=number, house_extension=extension), field="dlv_addr")
    assert rest.get("street_address") == expected


def test_empty_values_are_omitted_and_telno_is_the_fallback() -> None:
    """Empty (or blank) legacy values are not sent; without cellno, telno is the phone."""
    rest = legacy_address_to_rest(Address(telno=" 08-123 ", fname="  ", city="Malmö"), field="bill_addr")
    assert rest == {"phone": "08-123", "city": "Malmö"}
    assert legacy_address_to_rest(Address(), field="dlv_addr") == {}


@pytest.mark.parametrize(
    ("changes", "legacy_field"),
    [({"zip": "12345678901"}, "zip"), ({"fname": "a" * 101}, "fname"), ({"lname": "b" * 101}, "lname"),
     ({"street": "s" * 98, "house_number": "12"}, "street"), ({"careof": "c" * 101}, "careof"),
     ({"city": "c" * 201}, "city"), ({"email": "e" * 101}, "email"),
     ({"cellno": "1" * 101}, "cellno"), ({"telno": "2" * 101}, "telno"),
     ({"company": "x" * 256}, "company"), ({"country": 4711}, "country")],
)
def test_length_limits_name_the_legacy_field(changes: dict[str, object], legacy_field: str) -> None:
    """Values beyond the REST limits are refused locally, naming e.g. dlv_addr.zip."""
    with pytest.raises(InvalidParamsError) as info:
        legacy_address_to_rest(Address(**changes), field="dlv_addr")  # type: ignore[arg-type]
    assert info.value.public_message.startswith(f"dlv_addr.{legacy_field}: ")


def test_values_at_the_limits_pass() -> None:
    """Exactly the REST maximum lengths are accepted unchanged."""
    rest = legacy_address_to_rest(
        Address(zip="1" * 10, fname="a" * 100, city="c" * 200, company="x" * 255), field="dlv_addr")
    assert rest["postal_code"] == "1" * 10 and len(rest["organization_name"]) == 255


def test_rest_address_equal_normalises() -> None:
    """Case, repeated/surrounding whitespace, postcode and phone spacing, missing-vs-empty."""
    a = legacy_address_to_rest(FULL, field="dlv_addr")
    b = dict(a, given_name=" ANNA ", street_address="hamngatan  5 b", postal_code="12345",
             country="se", phone="070-1112233", title="Mrs", region="ignored")
    assert rest_address_equal(a, b)
    assert rest_address_equal({"city": ""}, {"city": None}) and rest_address_equal({}, {"city": ""})
    assert not rest_address_equal(a, dict(a, city="Göteborg"))
    assert not rest_address_equal(a, dict(a, street_address="Hamngatan 5 C"))
    assert not rest_address_equal(a, {k: v for k, v in a.items() if k != "email"})


@given(st.builds(Address, fname=st.text(max_size=30), lname=st.text(max_size=30),
                 street=st.text(max_size=30), house_number=st.text(max_size=5),
                 zip=st.text(max_size=10), city=st.text(max_size=30),
                 country=st.sampled_from([None, 209, 164, 81])))
def test_conversion_is_stable_under_comparison(addr: Address) -> None:
    """A converted address equals itself and its upper-cased copy; values are non-empty strings."""
    rest = legacy_address_to_rest(addr, field="dlv_addr")
    assert all(isinstance(v, str) and v and v == v.strip() for v in rest.values())
    assert rest_address_equal(rest, rest)
    assert rest_address_equal(rest, {k: v.upper() for k, v in rest.items()}) == all(
        v.upper().casefold() == v.casefold() for v in rest.values())


def test_alpha2_to_klarna_country_is_the_table_read_backwards() -> None:
    """Every code of the CSV maps back to itself; case and spaces do not matter; anything
    else (unknown, empty, not a string) is None."""
    import csv

    from gateway.translate.address import COUNTRY_CODES_CSV, alpha2_to_klarna_country

    with COUNTRY_CODES_CSV.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) > 200
    for row in rows:
        code = int(row["klarna_code"])
        assert alpha2_to_klarna_country(klarna_country_to_alpha2(code)) == code
    assert alpha2_to_klarna_country(" se ") == 209 and alpha2_to_klarna_country("gb") == 229
    for bad in ("XX", "", None, 209, "SWE"):
        assert alpha2_to_klarna_country(bad) is None


def test_rest_address_to_legacy_row() -> None:
    """Six elements: a person [fname, lname, ...], a company ["", company, ...], the
    country an int; no known country → None."""
    from gateway.translate.address import rest_address_to_legacy_row

    rest = legacy_address_to_rest(FULL, field="bill_addr")
    assert rest_address_to_legacy_row(rest) == [
        "", "Testbolaget AB", "Hamngatan 5 B", "123 45", "Stockholm", 209]
    person = {k: v for k, v in rest.items() if k != "organization_name"}
    assert rest_address_to_legacy_row(person) == [
        "Anna", "Andersson", "Hamngatan 5 B", "123 45", "Stockholm", 209]
    assert rest_address_to_legacy_row({"given_name": "A", "country": "FI"}) == [
        "A", "", "", "", "", 73]
    assert rest_address_to_legacy_row({**person, "country": "ZZ"}) is None
    assert rest_address_to_legacy_row({"given_name": "A"}) is None
