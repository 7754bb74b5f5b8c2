"""The seven older v2 calls on the wire: PHP 2.4.0 captures, digest dialects, PY SDK requests
and typed decoding (PHP shapes: ints for ids, doubles, empty arrays, '' for structs)."""
from __future__ import annotations

import base64
import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from legacy_sdk_capture import CapturedSdk

import klarna
from gateway.calls import REGISTRY, decode_call, verify_digest
from gateway.calls.activate_reservation import ActivateReservation
from gateway.calls.change_reservation import ChangeReservation
from gateway.calls.invoice_address import InvoiceAddress
from gateway.calls.invoice_amount import InvoiceAmount
from gateway.calls.invoice_part_amount import InvoicePartAmount
from gateway.calls.return_amount import ReturnAmount
from gateway.calls.update_orderno import UpdateOrderno
from gateway.errors import BadArtnoListError, GoodsListError, InvalidParamsError
from gateway.wire.parse import parse_method_call
from gateway.wire.values import Address, ArtNo, Goods

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures" / "php-2.4.0"
NEW_CALLS = ("activate_reservation", "change_reservation", "return_amount", "update_orderno",
             "invoice_amount", "invoice_part_amount", "invoice_address")
SECRET = b"s3cr3t"
PY = "python:api:3.1.0"
P2 = "php:api:2.4.0"
P4 = "php:api:4.1.0"
DIGEST = "x" * 88


def b64(text: str | bytes) -> str:
    data = text.encode("latin-1") if isinstance(text, str) else text
    return base64.b64encode(hashlib.sha512(data).digest()).decode()


# ---------------------------------------------------------------------------------------------
# The PHP 2.4.0 wire captures
# ---------------------------------------------------------------------------------------------


def _captures() -> list[Path]:
    found = []
    for path in sorted(CAPTURES.glob("*.xml")):
        method, _ = parse_method_call(path.read_bytes())
        if method in NEW_CALLS:
            found.append(path)
    return found


def test_every_new_call_has_a_php_capture() -> None:
    methods = {parse_method_call(p.read_bytes())[0] for p in _captures()}
    assert methods == set(NEW_CALLS)


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_php_240_capture_verifies_and_decodes(path: Path) -> None:
    """Each capture's digest verifies with the sandbox secret (and not with another), and
    its parameters decode as the call's dataclass."""
    method, params = parse_method_call(path.read_bytes())
    assert verify_digest(method, params, b"sandbox-secret")
    assert not verify_digest(method, params, b"sandbox-secret-2")
    call = decode_call(method, params)
    assert isinstance(call, REGISTRY.spec(method).call_type)
    assert call.eid == 1234 and call.client_version == P2


def test_php_captures_decode_to_these_values() -> None:
    """What the captures carry, field by field (ints, doubles, '' and empty arrays)."""
    calls = {parse_method_call(p.read_bytes())[0]: decode_call(*parse_method_call(
        p.read_bytes())) for p in _captures()}
    ar = calls["activate_reservation"]
    assert isinstance(ar, ActivateReservation)
    assert ar.rno == "8000000001" and ar.ocr == "" and ar.gender is None
    assert ar.goods == (Goods("A1", "Widget", 10000, Decimal(25), Decimal(0), 32, 1),)
    assert ar.shipping == ar.billing and ar.billing is not None
    assert ar.billing.fname == "Åsa" and ar.billing.country == 209
    assert (ar.client_ip, ar.flags, ar.currency, ar.country, ar.language) == (
        "0.0.0.0", 0, 0, 209, 138)
    assert (ar.pno_encoding, ar.pclass, ar.comment, ar.other_info) == (2, -1, "", ())
    assert ar.shipment_info.delay_adjust == 1
    assert "pno" not in ar.__dataclass_fields__  # checked, never kept
    assert calls["change_reservation"] == ChangeReservation(1234, P2, "8000000001", 15000, 0)
    assert calls["return_amount"] == ReturnAmount(1234, P2, "9000000001", 2500, Decimal(25),
                                                  2500, 32, "goodwill")
    assert calls["update_orderno"] == UpdateOrderno(1234, P2, "9000000001", "ERP-42")
    assert calls["invoice_amount"] == InvoiceAmount(1234, P2, "9000000001")
    assert calls["invoice_address"] == InvoiceAddress(1234, P2, "9000000001")
    assert calls["invoice_part_amount"] == InvoicePartAmount(1234, P2, "9000000001",
                                                             (ArtNo("A1", 1),))


# ---------------------------------------------------------------------------------------------
# Digest dialects
# ---------------------------------------------------------------------------------------------


def test_update_orderno_hashes_no_eid_and_empty_orderid_per_dialect() -> None:
    """`invno:orderid`: PY keeps an empty orderid (`invno::secret`), P2/P4 drop it; P2 also
    drops '0'."""
    py = ["4.1", PY, 1234, b64("9000000001::s3cr3t"), "9000000001", ""]
    p4 = ["4.1", P4, 1234, b64("9000000001:s3cr3t"), "9000000001", ""]
    p2_zero = ["4.1", P2, 1234, b64("9000000001:s3cr3t"), "9000000001", "0"]
    for params in (py, p4, p2_zero):
        assert verify_digest("update_orderno", params, SECRET)
    with_eid = ["4.1", PY, 1234, b64("1234:9000000001:E:s3cr3t"), "9000000001", "E"]
    assert not verify_digest("update_orderno", with_eid, SECRET)


def test_change_reservation_amount_zero_p2_drops_it() -> None:
    """`eid:rno:amount`: PY/P4 hash the 0, P2 (drop-falsy) leaves it out."""
    py = ["4.1", PY, "R1", 0, 1234, b64("1234:R1:0:s3cr3t"), 0]
    p2 = ["4.1", P2, "R1", 0, 1234, b64("1234:R1:s3cr3t"), 0]
    assert verify_digest("change_reservation", py, SECRET)
    assert verify_digest("change_reservation", p2, SECRET)
    assert verify_digest("change_reservation", ["4.1", P4, "R1", 500, 1234,
                                                b64("1234:R1:500:s3cr3t")], SECRET)


def test_activate_reservation_digest_is_an_unfiltered_concatenation() -> None:
    """`eid:pno:(goods.artno:qty)*` with an empty artno kept and a qty of 0 kept, from p17
    and p4; a filtered string does not match."""
    params: list[Any] = ["4.1", P2, "R1", "", "4103219202", *[""] * 5, [], [], "0.0.0.0", 0,
                         0, 209, 138, 1234, "", 2, -1,
                         [{"goods": {"artno": "", "title": "Frakt", "price": 4900, "vat": 25,
                                     "discount": 0, "flags": 40}, "qty": 1},
                          {"goods": {"artno": 777, "title": "T", "price": 1, "vat": 25,
                                     "discount": 0, "flags": 32}, "qty": 0}],
                         "", {}, [], [], [], []]
    params[18] = b64("1234:4103219202::1:777:0:s3cr3t")
    assert len(params) == 28 and verify_digest("activate_reservation", params, SECRET)
    params[18] = b64("1234:4103219202:1:777:s3cr3t")
    assert not verify_digest("activate_reservation", params, SECRET)


def test_return_amount_and_invoice_reads_hash_eid_and_invno_only() -> None:
    rows: dict[str, list[Any]] = {
        "return_amount": ["4.1", P2, 1234, "I1", 100, Decimal(25), b64("1234:I1:s3cr3t")],
        "invoice_amount": ["4.1", P2, 1234, "I1", b64("1234:I1:s3cr3t")],
        "invoice_address": ["4.1", PY, 1234, 12345, b64("1234:12345:s3cr3t")],
        "invoice_part_amount": ["4.1", P2, 1234, "I1", [{"artno": "A", "qty": 0}],
                                b64("1234:I1:A:0:s3cr3t")],
    }
    for method, params in rows.items():
        assert verify_digest(method, params, SECRET), method
    filtered = ["4.1", P2, 1234, "I1", [{"artno": "A", "qty": 0}], b64("1234:I1:A:s3cr3t")]
    assert not verify_digest("invoice_part_amount", filtered, SECRET)


# ---------------------------------------------------------------------------------------------
# Requests the PY SDK builds (captured byte for byte)
# ---------------------------------------------------------------------------------------------


def _check(captured: CapturedSdk, body: bytes, method: str) -> Any:
    name, params = parse_method_call(body)
    assert name == method
    assert verify_digest(method, params, captured.secret)
    assert not verify_digest(method, params, captured.secret + b"x")
    return decode_call(method, params)


def test_sdk_invoice_reads(sdk: CapturedSdk) -> None:
    k = sdk.client
    call = _check(sdk, sdk.call(12345, k.invoice_amount, "9000000001"), "invoice_amount")
    assert call == InvoiceAmount(1234, PY, "9000000001")
    row = ["Åsa", "Ölund", "Storgatan 1", "11122", "Stockholm", 209]
    call = _check(sdk, sdk.call(row, k.invoice_address, 12345678), "invoice_address")
    assert call.invno == "12345678"  # PY passes an int invno through as <int>
    k.add_art_no(qty=2, artno="Blå-1")
    k.add_art_no(qty=1, artno="A2")
    call = _check(sdk, sdk.call(100, k.invoice_part_amount, "9000000001"),
                  "invoice_part_amount")
    assert call.artnos == (ArtNo("Blå-1", 2), ArtNo("A2", 1))


@pytest.mark.parametrize("orderid", ["ERP-42", "", "0", "Ordér 7"])
def test_sdk_update_orderno(sdk: CapturedSdk, orderid: str) -> None:
    k = sdk.client
    call = _check(sdk, sdk.call("9000000001", k.update_orderno, "9000000001", orderid),
                  "update_orderno")
    assert call == UpdateOrderno(1234, PY, "9000000001", orderid)


@pytest.mark.parametrize(("args", "amount", "vat", "rate", "flags", "description"), [
    ((25.0, 25), 2500, Decimal(25), 2500, 32, ""),
    ((10, 12.5, 0, "Rabatt på frakt"), 1000, Decimal("12.5"), 1250, 0, "Rabatt på frakt"),
    ((0.1, 6.0, 32, ""), 10, Decimal(6), 600, 32, ""),
])
def test_sdk_return_amount(sdk: CapturedSdk, args: tuple[Any, ...], amount: int, vat: Decimal,
                           rate: int, flags: int, description: str) -> None:
    """PY sends all 9 parameters: amount × 100 as <int>, vat as given (int or double)."""
    k = sdk.client
    call = _check(sdk, sdk.call("9000000001", k.return_amount, "9000000001", *args),
                  "return_amount")
    assert call == ReturnAmount(1234, PY, "9000000001", amount, vat, rate, flags, description)


@pytest.mark.parametrize(("amount", "flags", "wire"), [(150.0, 0, 15000), (-20, 1, -2000),
                                                       (0, 0, 0)])
def test_sdk_change_reservation(sdk: CapturedSdk, amount: float, flags: int, wire: int) -> None:
    k = sdk.client
    call = _check(sdk, sdk.call("ok", k.change_reservation, "2400000001", amount, flags),
                  "change_reservation")
    assert call == ChangeReservation(1234, PY, "2400000001", wire, flags)


def test_sdk_activate_reservation(sdk: CapturedSdk) -> None:
    """PY: both addresses as structs, gender '' (None), goods with an empty artno (the
    digest keeps it empty), flags, the empty info dicts."""
    k = sdk.client
    k.add_article(qty=2, artno="A1", title="Blåbärssylt", price=49.9, vat=25, discount=0)
    k.add_article(qty=1, artno="", title="Frakt", price=49, vat=25, flags=32 | 8)
    address = klarna.Address(email="kund@example.se", telno="", cellno="0701234567",
                             fname="Åsa", lname="Öberg", street="Storgatan 1",
                             zip="123 45", city="Malmö", country="SE")
    k.shipping = address
    k.billing = address
    k.set_estore_info(orderid1="ERP-1", orderid2="")
    body = sdk.call(["ok", "9000000001"], k.activate_reservation, "4103219202",
                    "2400000001", None, ocr="OCR-1", flags=16)
    call = _check(sdk, body, "activate_reservation")
    assert isinstance(call, ActivateReservation)
    assert call.rno == "2400000001" and call.ocr == "OCR-1" and call.flags == 16
    assert call.orderid1 == "ERP-1" and call.gender is None
    assert [(g.artno, g.title, g.price, g.qty) for g in call.goods] == [
        ("A1", "Blåbärssylt", 4990, 2), ("", "Frakt", 4900, 1)]
    assert call.shipping == call.billing and call.shipping is not None
    assert call.shipping.zip == "123 45" and call.shipping.country == 209
    assert call.shipment_info.delay_adjust == 1 and call.pclass == -1


# ---------------------------------------------------------------------------------------------
# Decoding: PHP shapes and refusals
# ---------------------------------------------------------------------------------------------


def _ar(**changes: Any) -> list[Any]:
    """An activate_reservation parameter list as PHP sends it (phone transaction: the
    addresses are '', info structs empty arrays, gender '', pno '' for null)."""
    params: list[Any] = ["4.1", P2, 8000000001, "", "", "", "", "", "", "", "", "",
                         "0.0.0.0", 512, 0, 209, 138, 1234, DIGEST, 2, -1,
                         [{"goods": {"artno": 777, "title": "Räksmörgås", "price": 12500,
                                     "vat": Decimal("25"), "flags": 32,
                                     "discount": Decimal(
                                         "0.1000000000000000055511151231257827021181583404541015625")},
                           "qty": 2}],
                         "", [], [], [], [], []]
    for index, value in changes.items():
        params[int(index[1:])] = value
    return params


def test_php_activate_reservation_phone_transaction_shapes() -> None:
    call = decode_call("activate_reservation", _ar())
    assert isinstance(call, ActivateReservation)
    assert call.rno == "8000000001" and call.shipping is None and call.billing is None
    assert call.flags == 512 and call.gender is None and call.other_info == ()
    [g] = call.goods
    assert g.artno == "777" and g.title == "Räksmörgås" and g.qty == 2
    assert g.discount == Decimal("0.1000000000000000055511151231257827021181583404541015625")
    extra = decode_call("activate_reservation", _ar(p5=1, p27={"cust_no": "C1"},
                                                    p23={"delay_adjust": 2,
                                                         "shipping_company": "DHL"}))
    assert extra.gender == 1 and extra.other_info == ("extrainfo",)  # type: ignore[union-attr]
    assert extra.shipment_info.shipping_company == "DHL"  # type: ignore[union-attr]


@pytest.mark.parametrize(("changes", "error", "text"), [
    ({"p21": []}, GoodsListError, "goods_list is empty"),
    ({"p21": ""}, GoodsListError, "goods_list is empty"),
    ({"p21": [{"goods": {"artno": "A", "price": 1, "vat": 25}}]}, GoodsListError,
     "goods_list[0].qty is missing"),
    ({"p10": "Storgatan"}, InvalidParamsError, "shipping must be a struct"),
    ({"p20": "x"}, InvalidParamsError, "pclass must be an integer"),
    ({"p5": "male"}, InvalidParamsError, "gender must be an integer"),
    ({"p13": -1}, InvalidParamsError, "flags must not be negative"),
    ({"p23": "x"}, InvalidParamsError, "shipinfo must be a struct"),
    ({"p24": 5}, InvalidParamsError, "travelinfo must be a struct"),
    ({"p4": [1]}, InvalidParamsError, "pno must be a string"),
    ({"p2": ""}, InvalidParamsError, "rno must not be empty"),
    ({"p18": 7}, InvalidParamsError, "digest must be a string"),
])
def test_activate_reservation_refusals_name_the_parameter(changes: dict[str, Any],
                                                          error: type[Exception],
                                                          text: str) -> None:
    with pytest.raises(error) as info:
        decode_call("activate_reservation", _ar(**changes))
    assert text in info.value.fault_string  # type: ignore[attr-defined]


def test_activate_reservation_takes_exactly_28_parameters() -> None:
    with pytest.raises(InvalidParamsError, match="takes 28 parameters, got 27"):
        decode_call("activate_reservation", _ar()[:27])


def test_return_amount_optional_trailing_parameters_and_vat_shapes() -> None:
    """7, 8 or 9 parameters (flags default 32, description ''); vat as <int>, <double> or
    PHP's exact expansion of a hundredth."""
    base = ["4.1", P2, 1234, 9000000001, 2500, Decimal(25), DIGEST]
    assert decode_call("return_amount", base) == ReturnAmount(
        1234, P2, "9000000001", 2500, Decimal(25), 2500, 32, "")
    assert decode_call("return_amount", [*base, 0]).flags == 0  # type: ignore[union-attr]
    nine = decode_call("return_amount", [*base[:5], "12.5", DIGEST, 32, "Rabatt"])
    assert (nine.tax_rate, nine.description) == (1250, "Rabatt")  # type: ignore[union-attr]
    php = Decimal(format(15.6, ".128f").rstrip("0"))
    assert decode_call("return_amount", [*base[:5], php, DIGEST]).tax_rate == 1560  # type: ignore[union-attr]
    assert decode_call("return_amount", [*base[:5], 7, DIGEST]).tax_rate == 700  # type: ignore[union-attr]


@pytest.mark.parametrize(("params", "text"), [
    (["4.1", P2, 1234, "I", 100, Decimal("12.345"), DIGEST], "whole hundredths"),
    (["4.1", P2, 1234, "I", 100, Decimal(101), DIGEST], "from 0 to 100"),
    (["4.1", P2, 1234, "I", 100, Decimal(-1), DIGEST], "from 0 to 100"),
    (["4.1", P2, 1234, "I", 100, "x", DIGEST], "vat must be a number"),
    (["4.1", P2, 1234, "I", Decimal("25.5"), 25, DIGEST], "amount must be an integer"),
    (["4.1", P2, 1234, "I", 100, 25, DIGEST, 8], "flags must be 32 (INC_VAT) or 0"),
    (["4.1", P2, 1234, "I", 100, 25, DIGEST, 32, "d" * 256], "description: 256 characters"),
    (["4.1", P2, 1234, "I", 100, 25], "takes 7 or 8 or 9 parameters"),
])
def test_return_amount_refusals(params: list[Any], text: str) -> None:
    with pytest.raises(InvalidParamsError) as info:
        decode_call("return_amount", params)
    assert text in info.value.fault_string


def test_change_reservation_decoding() -> None:
    """flags optional (default NEW_AMOUNT); only 0 and 1; amount an <int> (may be
    negative for ADD_AMOUNT); rno as <int> from PHP."""
    assert decode_call("change_reservation", ["4.1", P2, 8000000001, 100, 1234, DIGEST]) == \
        ChangeReservation(1234, P2, "8000000001", 100, 0)
    assert decode_call("change_reservation", ["4.1", P2, "R", -5, "1234", DIGEST, 1]) == \
        ChangeReservation(1234, P2, "R", -5, 1)
    with pytest.raises(InvalidParamsError, match="flags must be 0"):
        decode_call("change_reservation", ["4.1", P2, "R", 100, 1234, DIGEST, 2])
    with pytest.raises(InvalidParamsError, match="amount must be an integer"):
        decode_call("change_reservation", ["4.1", P2, "R", Decimal("1.5"), 1234, DIGEST, 0])


def test_update_orderno_and_invoice_reads_decoding() -> None:
    assert decode_call("update_orderno", ["4.1", P2, 1234, DIGEST, 9000000001, 42]) == \
        UpdateOrderno(1234, P2, "9000000001", "42")
    with pytest.raises(InvalidParamsError, match="orderid: 256 characters"):
        decode_call("update_orderno", ["4.1", P2, 1234, DIGEST, "I", "o" * 256])
    assert decode_call("invoice_amount", ["4.1", P2, "1234", 9000000001, DIGEST]) == \
        InvoiceAmount(1234, P2, "9000000001")
    assert decode_call("invoice_address", ["4.1", PY, 1234, 77, DIGEST]) == \
        InvoiceAddress(1234, PY, "77")
    empty = decode_call("invoice_part_amount", ["4.1", P2, 1234, "I", "", DIGEST])
    assert empty == InvoicePartAmount(1234, P2, "I", ())
    with pytest.raises(BadArtnoListError, match=r"artnos\[0\].artno must not be empty"):
        decode_call("invoice_part_amount", ["4.1", P2, 1234, "I", [{"artno": "", "qty": 1}],
                                            DIGEST])
    with pytest.raises(InvalidParamsError, match="invno must not be empty"):
        decode_call("invoice_amount", ["4.1", P2, 1234, "", DIGEST])


def test_address_decode_in_activate_reservation_is_the_13_key_struct() -> None:
    addr = {"email": "", "telno": "", "cellno": "", "fname": "Åsa", "lname": "Ö",
            "company": "", "careof": "", "street": "Gatan", "house_number": 5,
            "house_extension": "", "zip": "12345", "city": "Malmö", "country": ""}
    call = decode_call("activate_reservation", _ar(p10=addr, p11=[]))
    assert call.shipping == Address(fname="Åsa", lname="Ö", street="Gatan",  # type: ignore[union-attr]
                                    house_number="5", zip="12345", city="Malmö")
    assert call.billing is None  # type: ignore[union-attr]


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_journaled_call_is_rebuilt_exactly_for_recovery(path: Path) -> None:
    """Recovery rebuilds a call from its journal JSON: every new call type round-trips
    (addresses, goods with exact Decimal percentages, shipinfo, optional ints)."""
    import json

    from gateway.engine.claim import Ticket
    from gateway.wire.values import from_json

    method, params = parse_method_call(path.read_bytes())
    call = decode_call(method, params)
    spec = REGISTRY.spec(method)
    journaled = Ticket.of(spec, call, 0.0, 0.0)
    data = {k: v for k, v in json.loads(journaled.call_json).items() if k != "method"}
    rebuilt = from_json(spec.call_type, data)
    again = Ticket.of(spec, rebuilt, 0.0, 0.0)
    assert rebuilt == call and again.fingerprint == journaled.fingerprint
    assert again.call_json == journaled.call_json
