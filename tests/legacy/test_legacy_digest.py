"""Digest verification: spec vectors, the three SDK dialects, and real PY SDK requests."""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from legacy_sdk_capture import CapturedSdk, make_sdk

import klarna
from gateway.calls import REGISTRY, decode_call, digest_parts, verify_digest
from gateway.config import Merchant
from gateway.edge.auth import Authenticator
from gateway.errors import InvalidParamsError, MethodNotFoundError
from gateway.wire import digest as digest_rules
from gateway.wire.digest import hash_for_digest
from gateway.wire.parse import parse_method_call

DIGEST_POSITIONS = {name: spec.digest_at for name, spec in REGISTRY.served.items()}


def digest_candidates(method: str, params: list[Any], secret: bytes) -> set[bytes]:
    return set(digest_rules.candidates(digest_parts(method, params), secret))

SECRET = b"s3cr3t"
PY = "python:api:3.1.0"
P2 = "php:api:2.4.0"
P5 = "php:api:5.0.0"


def b64(data: bytes, fn: Callable[[bytes], Any] = hashlib.sha512) -> str:
    return base64.b64encode(fn(data).digest()).decode("ascii")


# ---------------------------------------------------------------------------------------------
# Test vectors: docs/legacy-protocol.md#test-vectors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fn", "vector"), [
    (hashlib.md5, "gZaoCrfRJX7aG353wX85mA=="),
    (hashlib.sha256, "H+VdRaMTaSMzKlU0Xwex5HjZ+PCTyinfcIHAzs622V0="),
    (hashlib.sha512, "ZWgcH/N4+OoU9NqGCcbuB9ASX65gl7I2HMi0SkP2f61lBJqhU9WOtlf19LJkbi3//"
                     "rQX/rMnxtNTgQEO5PMZSw=="),
])
def test_stringsecret_vectors_identify_hash_by_length(fn: Any, vector: str) -> None:
    """The Fishnet-Shop vectors of `STRINGSECRET` are recognised by length and reproduce."""
    assert hash_for_digest(vector) is fn
    assert b64(b"STRINGSECRET", fn) == vector


def test_cancel_reservation_capture_vector() -> None:
    """The captured cancel_reservation digest (PY, P2 and P5 sent the same) verifies."""
    vector = ("6UVw3BlT1uOtdMverCIB9bDRrgxPbbhlC6Tw70jEaKJwOypb2ccWNMi6uT3YQesDy2jOufo23xCfbY7"
              "Kye9MpQ==")
    for version in (PY, P2, P5):
        params = ["4.1", version, "2400000001", 1234, vector]
        assert verify_digest("cancel_reservation", params, SECRET)
    assert not verify_digest("cancel_reservation", ["4.1", PY, "2400000001", 1234, vector],
                             b"wrong")


@pytest.mark.parametrize("fn", [hashlib.md5, hashlib.sha224, hashlib.sha256, hashlib.sha384,
                                hashlib.sha512])
@pytest.mark.parametrize("method", ["credit_invoice", "email_invoice", "send_invoice"])
def test_every_hash_length_is_accepted(fn: Any, method: str) -> None:
    """md5, sha224, sha256, sha384 and sha512 digests are all accepted (length decides)."""
    digest = b64(b"1234:9000000001:s3cr3t", fn)
    if method == "credit_invoice":
        params: list[Any] = ["4.1", P5, 1234, "9000000001", "", digest]
    else:
        params = ["4.1", P5, 1234, "9000000001", digest]
    assert verify_digest(method, params, SECRET)
    assert not verify_digest(method, params, b"other")


def test_unknown_length_non_string_and_non_ascii_digests_mismatch() -> None:
    """A digest of no known length, a non-string or non-ASCII digest is a mismatch, not a crash."""
    good = b64(b"1234:9000000001:s3cr3t")
    for bad in (good[:-1], good + "=", 12345, ["x"], "é" * 88, ""):
        assert not verify_digest("email_invoice", ["4.1", PY, 1234, "9000000001", bad], SECRET)


def test_missing_digest_and_unknown_method_raise_gateway_errors() -> None:
    """Too few params → -32602 naming the digest; an unknown method → -32601."""
    merchant = Merchant(eid=1234, shared_secret="s3cr3t", rest_username="u",
                        rest_password="p", base_url="http://x")
    auth = Authenticator({1234: merchant}.get, REGISTRY)
    with pytest.raises(InvalidParamsError, match="digest"):
        auth.authenticate("email_invoice", ["4.1", PY, 1234, "9000000001"])
    with pytest.raises(MethodNotFoundError):
        auth.authenticate("no_such_call", ["4.1", PY, 1234, "x", "y"])


def test_string_eid_is_hashed_as_sent() -> None:
    """PY with a string eid sends `<string>1234</string>`; the digest uses it verbatim."""
    params = ["4.1", PY, "2400000001", "1234", b64(b"1234:2400000001:s3cr3t")]
    assert verify_digest("cancel_reservation", params, SECRET)
    assert verify_digest("extend_expiry_date", params, SECRET)


# ---------------------------------------------------------------------------------------------
# Dialect differences (docs/legacy-protocol.md#sdk-dialects)
# ---------------------------------------------------------------------------------------------


def _activate(version: str, info: dict[str, Any], digest_text: bytes) -> list[Any]:
    return ["4.1", version, 1234, b64(digest_text), "2400000001", info]


def test_activate_empty_reference_py_keeps_it_php_drops_it() -> None:
    """activate with reference='': PY hashes `…:O1::RC…`, P4/P5 `…:O1:RC…`; both accepted."""
    info = {"orderid1": "O1", "reference": "", "reference_code": "RC",
            "shipment_info": {"delay_adjust": 1}}
    py = _activate(PY, info, b"4:1:" + PY.encode() + b":1234:2400000001:O1::RC:1:s3cr3t")
    p5 = _activate(P5, info, b"4:1:" + P5.encode() + b":1234:2400000001:O1:RC:1:s3cr3t")
    assert verify_digest("activate", py, SECRET)
    assert verify_digest("activate", p5, SECRET)


def test_activate_bclass_zero_kept_by_p4_dropped_by_p2() -> None:
    """bclass 0: P4/P5 hash `0`, P2 (drop-falsy) leaves it out; both accepted."""
    info = {"bclass": 0, "orderid1": "O1", "shipment_info": {"delay_adjust": 1}}
    p5 = _activate(P5, info, b"4:1:" + P5.encode() + b":1234:2400000001:0:O1:1:s3cr3t")
    p2 = _activate(P2, info, b"4:1:" + P2.encode() + b":1234:2400000001:O1:1:s3cr3t")
    assert verify_digest("activate", p5, SECRET)
    assert verify_digest("activate", p2, SECRET)
    wrong = _activate(P2, info, b"4:1:" + P2.encode() + b":1234:2400000001:O1:0:1:s3cr3t")
    assert not verify_digest("activate", wrong, SECRET)


def test_activate_artnos_and_flags_order() -> None:
    """activate hashes present optional keys in fixed order, then delay_adjust, then artno:qty."""
    info = {"reference": "Ref", "flags": 8, "cust_no": "C9", "ocr": "123",
            "shipment_info": {"delay_adjust": 2},
            "artnos": [{"artno": "A", "qty": 1}, {"artno": "B", "qty": 0}]}
    text = b"4:1:" + P5.encode() + b":1234:2400000001:C9:8:123:Ref:2:A:1:B:0:s3cr3t"
    assert verify_digest("activate", _activate(P5, info, text), SECRET)
    p2_text = b"4:1:" + P2.encode() + b":1234:2400000001:C9:8:123:Ref:2:A:1:B:s3cr3t"
    assert verify_digest("activate", _activate(P2, info, p2_text), SECRET)


def _update(version: str, info: dict[str, Any], text: bytes) -> list[Any]:
    return ["4.1", version, 1234, b64(text), "2400000001", info]


def test_update_qty_zero_and_orderid_zero_per_dialect() -> None:
    """update with qty 0 and orderid2 '0': PY/P4 hash both, P2 drops both."""
    info = {"goods_list": [{"goods": {"artno": "A1", "title": "t", "price": 100, "vat": 25,
                                      "discount": 0, "flags": 32}, "qty": 0}],
            "dlv_addr": [], "bill_addr": [], "orderid1": "O1", "orderid2": "0"}
    py = b"4:1:" + PY.encode() + b":1234:2400000001:A1:0:O1:0:s3cr3t"
    p2 = b"4:1:" + P2.encode() + b":1234:2400000001:A1:O1:s3cr3t"
    assert verify_digest("update", _update(PY, info, py), SECRET)
    assert verify_digest("update", _update(P2, info, p2), SECRET)
    assert not verify_digest("update", _update(P2, info, p2.replace(b"A1:", b"A1:1:")), SECRET)


def test_update_addrparts_title_fallback_and_latin1_bytes() -> None:
    """addrparts skip empty fields; goods with empty artno use the title; Latin-1 bytes hash."""
    address = {"email": "", "telno": "", "cellno": "", "fname": "Åsa", "lname": "Öberg",
               "company": "", "careof": "", "street": "Gatan 1", "house_number": "",
               "house_extension": "", "zip": "12345", "city": "Malmö", "country": 209}
    info = {"goods_list": "", "dlv_addr": address, "bill_addr": [], "orderid1": "",
            "orderid2": ""}
    text = ("4:1:" + P5 + ":1234:2400000001:Gatan 1:12345:Malmö:209:Åsa:Öberg:s3cr3t")
    assert verify_digest("update", _update(P5, info, text.encode("latin-1")), SECRET)
    info2 = {"goods_list": [{"goods": {"artno": "", "title": "Blåbärssylt", "price": 4990,
                                       "vat": 25, "discount": 0, "flags": 32}, "qty": 2}],
             "dlv_addr": [], "bill_addr": [], "orderid1": "", "orderid2": ""}
    text2 = "4:1:" + PY + ":1234:2400000001:Blåbärssylt:2:s3cr3t"
    assert verify_digest("update", _update(PY, info2, text2.encode("latin-1")), SECRET)


def test_credit_part_is_never_filtered() -> None:
    """credit_part is a concatenation `eid:invno:(artno:qty)*:secret` in every SDK."""
    artnos = [{"artno": "A", "qty": 0}, {"artno": "B", "qty": 2}]
    good = ["4.1", P2, 1234, "9000000001", artnos, "",
            b64(b"1234:9000000001:A:0:B:2:s3cr3t")]
    assert verify_digest("credit_part", good, SECRET)
    filtered = ["4.1", P2, 1234, "9000000001", artnos, "",
                b64(b"1234:9000000001:A:B:2:s3cr3t")]
    assert not verify_digest("credit_part", filtered, SECRET)
    assert len(digest_candidates("credit_part", good, SECRET)) == 1
    no_artnos = ["4.1", P5, 1234, "9000000001", "", "", b64(b"1234:9000000001:s3cr3t"), 0, []]
    assert verify_digest("credit_part", no_artnos, SECRET)


def test_php_utf8_bytes_declared_latin1_round_trip() -> None:
    """A PHP client hashing UTF-8 bytes it declared as ISO-8859-1 still verifies
    (docs/legacy-protocol.md#hash-and-encoding)."""
    title_utf8 = "Blåbär".encode()
    body = (b'<?xml version="1.0" encoding="ISO-8859-1" ?><methodCall><methodName>update'
            b"</methodName><params>"
            b"<param><value><string>4.1</string></value></param>"
            b"<param><value><string>php:api:2.4.0</string></value></param>"
            b"<param><value><int>1234</int></value></param>"
            b"<param><value><string>" + b64(b"4:1:php:api:2.4.0:1234:R1:" + title_utf8
                                            + b":1:s3cr3t").encode() + b"</string></value></param>"
            b"<param><value><string>R1</string></value></param>"
            b"<param><value><struct>"
            b"<member><name>goods_list</name><value><array><data><value><struct>"
            b"<member><name>goods</name><value><struct>"
            b"<member><name>artno</name><value><string></string></value></member>"
            b"<member><name>title</name><value><string>" + title_utf8 + b"</string></value></member>"
            b"<member><name>price</name><value><int>100</int></value></member>"
            b"<member><name>vat</name><value><double>25</double></value></member>"
            b"<member><name>discount</name><value><double>0</double></value></member>"
            b"<member><name>flags</name><value><int>32</int></value></member>"
            b"</struct></value></member>"
            b"<member><name>qty</name><value><int>1</int></value></member>"
            b"</struct></value></data></array></value></member>"
            b"<member><name>dlv_addr</name><value><array><data></data></array></value></member>"
            b"<member><name>bill_addr</name><value><array><data></data></array></value></member>"
            b"<member><name>orderid1</name><value><string></string></value></member>"
            b"<member><name>orderid2</name><value><string></string></value></member>"
            b"</struct></value></param></params></methodCall>")
    method, params = parse_method_call(body)
    assert params[5]["goods_list"][0]["goods"]["title"] == "BlÃ¥bÃ¤r"
    assert verify_digest(method, params, SECRET)


def test_non_latin1_character_is_a_mismatch_not_a_crash() -> None:
    """A character outside Latin-1 (e.g. via &#8364;) cannot match any SDK digest."""
    params = ["4.1", PY, 1234, "9000000001€", b64("1234:9000000001€:s3cr3t".encode())]
    assert digest_candidates("email_invoice", params, SECRET) == set()
    assert not verify_digest("email_invoice", params, SECRET)


def test_hostile_shapes_never_crash() -> None:
    """Junk where structs/lists are expected only makes the digest mismatch."""
    junk_values: list[Any] = [None, 5, "x", [], {}, [1, "a", None], {"a": [{}]}, True]
    for method, position in DIGEST_POSITIONS.items():
        for junk in junk_values:
            # 28 parameters: enough for every served call (activate_reservation's digest
            # is p18).
            params: list[Any] = ["4.1", PY, *([junk] * 26)]
            params[position] = b64(b"x")
            assert verify_digest(method, params, SECRET) in (True, False)
            digest_parts(method, params)


# ---------------------------------------------------------------------------------------------
# Real PY SDK requests, captured byte for byte
# ---------------------------------------------------------------------------------------------


def _check(captured: CapturedSdk, body: bytes, expected_method: str) -> list[Any]:
    method, params = parse_method_call(body)
    assert method == expected_method
    assert verify_digest(method, params, captured.secret)
    assert not verify_digest(method, params, captured.secret + b"x")
    decode_call(method, params)
    return params


def _address(**kwargs: Any) -> klarna.Address:
    defaults = {"email": "kund@example.se", "telno": "", "cellno": "0701234567",
                "fname": "Åsa", "lname": "Öberg", "street": "Storgatan 1", "zip": "123 45",
                "city": "Malmö", "country": "SE"}
    defaults.update(kwargs)
    return klarna.Address(**defaults)


def test_sdk_cancel_extend_email_send_credit_invoice(sdk: CapturedSdk) -> None:
    """The five simple calls as the PY SDK sends them verify and decode."""
    k = sdk.client
    _check(sdk, sdk.call("ok", k.cancel_reservation, "2400000001"), "cancel_reservation")
    _check(sdk, sdk.call("20150525T103631", k.extend_expiry_date, "2400000001"),
           "extend_expiry_date")
    _check(sdk, sdk.call("9000000001", k.email_invoice, "9000000001"), "email_invoice")
    _check(sdk, sdk.call("9000000001", k.send_invoice, 12345678), "send_invoice")
    _check(sdk, sdk.call("9000000001", k.credit_invoice, "9000000001", "CR-1"),
           "credit_invoice")
    _check(sdk, sdk.call("9000000001", k.credit_invoice, "9000000001"), "credit_invoice")


def test_sdk_with_string_eid_and_md5_free_default() -> None:
    """A string eid in the PY config is sent as `<string>` and still verifies."""
    captured = make_sdk(eid="1234", secret="hemligt")
    k = captured.client
    params = _check(captured, captured.call("ok", k.cancel_reservation, "2400000001"),
                    "cancel_reservation")
    assert params[3] == "1234"
    assert len(params[4]) == 88  # sha512


@pytest.mark.parametrize("variant", ["full", "partial", "info", "empty_reference", "flags"])
def test_sdk_activate_variants(sdk: CapturedSdk, variant: str) -> None:
    """activate: full, partial (add_art_no), with activate info, with reference='' and flags."""
    k = sdk.client
    if variant == "partial":
        k.add_art_no(qty=2, artno="A1")
        k.add_art_no(qty=1, artno="Blå-7")
    elif variant == "info":
        k.set_activate_info(orderid1="O1", orderid2="O2", reference="Ref", cust_no="C1",
                            bclass=0)
        k.set_shipment_info(delay_adjust=2, shipping_company="PostNord",
                            tracking_no="TR1")
    elif variant == "empty_reference":
        k.set_activate_info(orderid1="O1", reference="", reference_code="")
    body = sdk.call(["ok", "9000000001"], k.activate, "2400000001",
                    ocr="12345" if variant == "info" else "",
                    flags=8 if variant == "flags" else 0)
    params = _check(sdk, body, "activate")
    call = decode_call("activate", params)
    assert call.rno == "2400000001"
    if variant == "partial":
        assert [(a.artno, a.qty) for a in call.artnos] == [("A1", 2), ("Blå-7", 1)]
    if variant == "info":
        assert call.shipment_info.delay_adjust == 2
        assert call.bclass == 0 and call.ocr == "12345"
    if variant == "flags":
        assert call.flags == 8


@pytest.mark.parametrize("variant", ["goods", "addresses", "orderids", "everything",
                                     "nothing", "billing_only"])
def test_sdk_update_variants(sdk: CapturedSdk, variant: str) -> None:
    """update with goods (Latin-1 titles, empty artno, qty 0), addresses and orderids."""
    k = sdk.client
    if variant in ("goods", "everything"):
        k.add_article(qty=2, artno="", title="Blåbärssylt", price=49.9, vat=25, discount=0)
        k.add_article(qty=0, artno="A1", title="Ägg", price=10, vat=12.5, discount=10.0)
        k.add_article(qty=1, artno="SHIP", title="Frakt", price=49, vat=25, flags=32 | 8)
    if variant in ("addresses", "everything"):
        k.shipping = _address()
        k.billing = _address(fname="", lname="", company="Företaget AB", careof="Ekonomi")
    if variant == "billing_only":
        k.billing = _address(country=None)
    if variant in ("orderids", "everything"):
        k.set_estore_info(orderid1="Order 1", orderid2="0")
    params = _check(sdk, sdk.call("ok", k.update, "2400000001"), "update")
    call = decode_call("update", params)
    if variant == "goods":
        assert call.goods[0].title == "Blåbärssylt" and call.goods[0].price == 4990
        assert str(call.goods[1].vat) == "12.5"
        assert call.dlv_addr is None and call.bill_addr is None
    if variant == "billing_only":
        assert call.dlv_addr == call.bill_addr and call.bill_addr is not None
        assert call.bill_addr.country is None


@pytest.mark.parametrize("variant", ["artnos", "artnos_int_credno", "goods_list", "both"])
def test_sdk_credit_part_variants(sdk: CapturedSdk, variant: str) -> None:
    """credit_part with artnos, with an int credno, and with a restocking goods list."""
    k = sdk.client
    if variant in ("artnos", "artnos_int_credno", "both"):
        k.add_art_no(qty=1, artno="A1")
        k.add_art_no(qty=3, artno="Blåbär")
    if variant in ("goods_list", "both"):
        k.add_article(qty=1, artno="FEE", title="Returavgift", price=-50, vat=25)
    credno: Any = 77 if variant == "artnos_int_credno" else "CR-9"
    params = _check(sdk, sdk.call("9000000001", k.credit_part, "9000000001", credno),
                    "credit_part")
    call = decode_call("credit_part", params)
    assert call.credno == str(credno)
    if variant in ("goods_list", "both"):
        assert len(params) == 9 and call.goods[0].price == -5000
    else:
        assert len(params) == 7 and call.goods == ()
