"""Typed decoding of the served calls, incl. hand-written PHP-style (phpxmlrpc) request bodies."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.calls import REGISTRY, decode_call, verify_digest
from gateway.calls.activate import Activate
from gateway.calls.cancel_reservation import CancelReservation
from gateway.calls.credit_invoice import CreditInvoice
from gateway.calls.credit_part import CreditPart
from gateway.calls.email_invoice import EmailInvoice
from gateway.calls.extend_expiry_date import ExtendExpiryDate
from gateway.calls.send_invoice import SendInvoice
from gateway.calls.update import Update
from gateway.config import Merchant
from gateway.edge.auth import Authenticator
from gateway.errors import (
    BadArtnoListError,
    GatewayError,
    FaultCode,
    GoodsListError,
    InvalidParamsError,
    MethodNotFoundError,
    NotAllowedError,
)
from gateway.wire import params as wire
from gateway.wire.parse import parse_method_call
from gateway.wire.values import Address, ArtNo

SERVED_METHODS = frozenset(REGISTRY.served)
KNOWN_UNSERVED_METHODS = frozenset(REGISTRY.not_offered)


def extract_eid(method: str, params: list[Any]) -> int:
    """The eid at the method's declared position (the edge's first check)."""
    lookup = REGISTRY.lookup(method)
    if lookup is None:
        raise MethodNotFoundError(f"unknown method {method}")
    return wire.eid_at(params, lookup.eid_at)

PHP_DECL = b'<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
DIGEST = "x" * 88


def php_call(method: str, *params: bytes) -> bytes:
    """A methodCall shaped like phpxmlrpc's output: ISO-8859-1, one value per param."""
    body = b"".join(b"<param>\n<value>" + p + b"</value>\n</param>\n" for p in params)
    return (PHP_DECL + b"<methodCall>\n<methodName>" + method.encode() + b"</methodName>\n"
            b"<params>\n" + body + b"</params>\n</methodCall>")


def s(text: str) -> bytes:
    return b"<string>" + text.encode("latin-1") + b"</string>"


def i(value: int) -> bytes:
    return b"<int>" + str(value).encode() + b"</int>"


def struct(**members: bytes) -> bytes:
    return b"<struct>\n" + b"".join(
        b"<member><name>" + k.encode() + b"</name>\n<value>" + v + b"</value>\n</member>\n"
        for k, v in members.items()) + b"</struct>"


def array(*values: bytes) -> bytes:
    return b"<array>\n<data>\n" + b"".join(b"<value>" + v + b"</value>\n" for v in values) \
        + b"</data>\n</array>"


EMPTY_ARRAY = array()
HEAD = (s("4.1"), s("php:api:5.0.0"))


def php_address(**overrides: bytes) -> bytes:
    fields = {k: s("") for k in ("email", "telno", "cellno", "fname", "lname", "company",
                                 "careof", "street", "house_number", "house_extension", "zip",
                                 "city")}
    fields["country"] = s("")
    fields.update(overrides)
    return struct(**fields)


def php_goods(artno: bytes, title: bytes, price: bytes, vat: bytes, discount: bytes,
              flags: bytes, qty: bytes) -> bytes:
    return struct(goods=struct(artno=artno, title=title, price=price, vat=vat,
                               discount=discount, flags=flags), qty=qty)


# ---------------------------------------------------------------------------------------------
# PHP bodies
# ---------------------------------------------------------------------------------------------


def test_php_activate_after_clear_means_full_activation() -> None:
    """PHP activate: int eid, no `flags`, `artnos: []` (after clear) → full activation."""
    body = php_call("activate", *HEAD, i(1234), s(DIGEST), s("2400000001"),
                    struct(ocr=s(""), orderid1=s("Ordér 1"), artnos=EMPTY_ARRAY,
                           shipment_info=struct(delay_adjust=i(1))))
    call = decode_call(*parse_method_call(body))
    assert call == Activate(eid=1234, client_version="php:api:5.0.0", rno="2400000001",
                            artnos=(), ocr="", flags=0, orderid1="Ordér 1",
                            shipment_info=call.shipment_info)
    assert call.shipment_info.delay_adjust == 1


def test_php_update_with_doubles_int_artno_latin1_title_and_empty_arrays() -> None:
    """PHP update: `<double>25</double>`, 0.1 expansion, `<int>` artno, ISO-8859-1 title,
    empty `<array>` address and country ''."""
    goods = array(
        php_goods(i(123), s("Blåbärssylt"), i(4990), b"<double>25</double>",
                  b"<double>0.1000000000000000055511151231257827021181583404541015625</double>",
                  i(32), i(2)),
        php_goods(s(""), s("Frakt"), i(4900), b"<double>25</double>", b"<double>0</double>",
                  i(40), i(1)),
    )
    bill = php_address(fname=s("Åsa"), lname=s("Öberg"), street=s("Gatan 1"),
                       zip=s("12345"), city=s("Malmö"), house_number=i(12))
    body = php_call("update", *HEAD, i(1234), s(DIGEST), s("2400000001"),
                    struct(goods_list=goods, dlv_addr=EMPTY_ARRAY, bill_addr=bill,
                           orderid1=s(""), orderid2=s("")))
    assert "Blåbärssylt".encode("latin-1") in body
    call = decode_call(*parse_method_call(body))
    assert isinstance(call, Update)
    first, second = call.goods
    assert first.artno == "123" and first.title == "Blåbärssylt" and first.price == 4990
    assert first.vat == Decimal(25)
    assert first.discount == Decimal(
        "0.1000000000000000055511151231257827021181583404541015625")
    assert second.artno == "" and second.flags == 40 and second.discount == 0
    assert call.dlv_addr is None
    assert call.bill_addr == Address(fname="Åsa", lname="Öberg", street="Gatan 1",
                                     zip="12345", city="Malmö", house_number="12",
                                     country=None)


def test_php_update_goods_list_empty_string() -> None:
    """PHP update with no article sends `goods_list` as `<string></string>`: no goods."""
    body = php_call("update", *HEAD, i(1234), s(DIGEST), i(2400000001),
                    struct(goods_list=s(""), dlv_addr=php_address(country=i(209)),
                           bill_addr=EMPTY_ARRAY, orderid1=s("A"), orderid2=s("0")))
    call = decode_call(*parse_method_call(body))
    assert isinstance(call, Update)
    assert call.goods == () and call.rno == "2400000001"
    assert call.dlv_addr is not None and call.dlv_addr.country == 209
    assert call.dlv_addr.is_empty() is False
    assert (call.orderid1, call.orderid2) == ("A", "0")


def test_php_credit_part_empty_artnos_with_restocking_goods() -> None:
    """PHP credit_part: artnos `''`, p7 `0`, p8 goods list with an `<int>` title."""
    body = php_call("credit_part", *HEAD, i(1234), s("9000000001"), s(""), s(""), s(DIGEST),
                    i(0), array(php_goods(s("FEE"), i(5), i(-5000), b"<double>25</double>",
                                          b"<double>0</double>", i(32), i(1))))
    call = decode_call(*parse_method_call(body))
    assert isinstance(call, CreditPart)
    assert call.artnos == () and call.credno == ""
    assert call.goods[0].title == "5" and call.goods[0].price == -5000


def test_simple_calls_decode() -> None:
    """cancel/extend/email/send/credit_invoice decode with int or string ids."""
    assert decode_call("cancel_reservation", ["4.1", "v", "R1", "7", DIGEST]) == \
        CancelReservation(eid=7, client_version="v", rno="R1")
    assert decode_call("extend_expiry_date", ["4.1", "v", "R1", 7, DIGEST]) == \
        ExtendExpiryDate(eid=7, client_version="v", rno="R1")
    assert decode_call("email_invoice", ["4.1", "v", 7, 12345, DIGEST]) == \
        EmailInvoice(eid=7, client_version="v", invno="12345")
    assert decode_call("send_invoice", ["4.1", "v", 7, "I9", DIGEST]) == \
        SendInvoice(eid=7, client_version="v", invno="I9")
    assert decode_call("credit_invoice", ["4.1", "v", 7, "I9", 55, DIGEST]) == \
        CreditInvoice(eid=7, client_version="v", invno="I9", credno="55")


def test_py_style_vat_int_and_decimal_price_integral() -> None:
    """vat as `<int>`, discount as Decimal, price as an integral Decimal are accepted."""
    goods = [{"goods": {"artno": "A", "title": "T", "price": Decimal("100.0"), "vat": 25,
                        "discount": Decimal("12.5"), "flags": 32}, "qty": 1}]
    call = decode_call("update", ["4.1", "v", 1, DIGEST, "R", {"goods_list": goods}])
    assert isinstance(call, Update)
    assert call.goods[0].price == 100 and call.goods[0].vat == Decimal(25)
    assert call.goods[0].discount == Decimal("12.5")


def test_partial_activate_artnos() -> None:
    """A non-empty artnos list decodes in order; int artnos become strings."""
    info = {"artnos": [{"artno": "A", "qty": 2}, {"artno": 7, "qty": "3"}],
            "shipment_info": {"delay_adjust": 1}, "flags": 2, "bclass": ""}
    call = decode_call("activate", ["4.1", "v", 1, DIGEST, "R", info])
    assert isinstance(call, Activate)
    assert call.artnos == (ArtNo("A", 2), ArtNo("7", 3))
    assert call.flags == 2 and call.bclass is None


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------


def _activate(info: Any) -> list[Any]:
    return ["4.1", "v", 1, DIGEST, "R", info]


@pytest.mark.parametrize(("params", "error", "text"), [
    (_activate({"artnos": [{"artno": "A", "qty": 1}, {"artno": "B", "qty": "x"}]}),
     InvalidParamsError, "activateInfo.artnos[1].qty must be an integer"),
    (_activate({"artnos": [{"artno": "A", "qty": -1}]}), BadArtnoListError,
     "activateInfo.artnos[0].qty must not be negative"),
    (_activate({"artnos": [{"qty": 1}]}), BadArtnoListError, "artnos[0].artno is missing"),
    (_activate({"artnos": [{"artno": "", "qty": 1}]}), BadArtnoListError, "must not be empty"),
    (_activate({"artnos": ["A"]}), InvalidParamsError, "activateInfo.artnos[0] must be a struct"),
    (_activate({"artnos": {"artno": "A"}}), InvalidParamsError, "artnos must be an array"),
    (_activate("nope"), InvalidParamsError, "activateInfo must be a struct"),
    (_activate({"flags": True}), InvalidParamsError, "activateInfo.flags must be an integer"),
    (_activate({"shipment_info": {"delay_adjust": "fast"}}), InvalidParamsError,
     "activateInfo.shipment_info.delay_adjust must be an integer"),
    (["4.1", "v", 1, DIGEST, "R"], InvalidParamsError, "activate takes 6 parameters, got 5"),
    (["4.1", "v", 1, DIGEST, "", {}], InvalidParamsError, "rno must not be empty"),
    (["4.1", "v", 1, DIGEST, 1.5, {}], InvalidParamsError, "rno must be a string"),
    (["4.1", "v", 1, 99, "R", {}], InvalidParamsError, "digest must be a string"),
    (["4.0", "v", 1, DIGEST, "R", {}], InvalidParamsError, "proto"),
    (["4.1", 3, 1, DIGEST, "R", {}], InvalidParamsError, "client_version"),
    (["4.1", "v", "12a", DIGEST, "R", {}], InvalidParamsError, "eid must be an integer"),
    (["4.1", "v", -1, DIGEST, "R", {}], InvalidParamsError, "eid must not be negative"),
])
def test_activate_refusals_name_the_parameter(params: list[Any], error: type[Exception],
                                              text: str) -> None:
    """Malformed activate parameters give the documented fault with the parameter named."""
    with pytest.raises(error) as info:
        decode_call("activate", params)
    assert text in info.value.fault_string  # type: ignore[attr-defined]


def _update_goods(row: Any) -> list[Any]:
    return ["4.1", "v", 1, DIGEST, "R", {"goods_list": [row]}]


GOOD = {"artno": "A", "title": "T", "price": 100, "vat": 25, "discount": 0, "flags": 32}


@pytest.mark.parametrize(("row", "error", "text"), [
    ({"goods": GOOD, "qty": -1}, GoodsListError, "goods_list[0].qty must not be negative"),
    ({"goods": {**GOOD, "artno": "", "title": ""}, "qty": 1}, GoodsListError,
     "goods_list[0].goods needs an artno or a title"),
    ({"goods": GOOD}, GoodsListError, "goods_list[0].qty is missing"),
    ({"qty": 1}, GoodsListError, "goods_list[0].goods is missing"),
    ({"goods": {k: v for k, v in GOOD.items() if k != "price"}, "qty": 1}, GoodsListError,
     "goods_list[0].goods.price is missing"),
    ({"goods": {**GOOD, "price": Decimal("1.5")}, "qty": 1}, InvalidParamsError,
     "goods_list[0].goods.price must be an integer"),
    ({"goods": {**GOOD, "vat": "abc"}, "qty": 1}, InvalidParamsError,
     "goods_list[0].goods.vat must be a number"),
    ({"goods": {**GOOD, "vat": [1]}, "qty": 1}, InvalidParamsError, "vat must be a number"),
    ("row", InvalidParamsError, "updateInfo.goods_list[0] must be a struct"),
])
def test_update_goods_refusals(row: Any, error: type[Exception], text: str) -> None:
    """Malformed goods rows give 3210 (content) or -32602 (type), naming the row."""
    with pytest.raises(error) as info:
        decode_call("update", _update_goods(row))
    assert text in info.value.fault_string  # type: ignore[attr-defined]


def test_update_refuses_non_struct_address_and_bad_country() -> None:
    """An address that is neither a struct nor empty, or a non-numeric country → -32602."""
    with pytest.raises(InvalidParamsError, match="updateInfo.dlv_addr must be a struct"):
        decode_call("update", ["4.1", "v", 1, DIGEST, "R", {"dlv_addr": "Gatan 1"}])
    with pytest.raises(InvalidParamsError, match="updateInfo.bill_addr.country"):
        decode_call("update", ["4.1", "v", 1, DIGEST, "R", {"bill_addr": {"country": "SE"}}])


def test_credit_part_arity_and_marker() -> None:
    """credit_part takes 7 or 9 params; p7 must be 0."""
    base = ["4.1", "v", 1, "I1", [], "", DIGEST]
    with pytest.raises(InvalidParamsError, match="7 or 9"):
        decode_call("credit_part", [*base, 0])
    with pytest.raises(InvalidParamsError, match="parameter 7"):
        decode_call("credit_part", [*base, 1, []])
    with pytest.raises(InvalidParamsError, match="artnos must be an array"):
        decode_call("credit_part", ["4.1", "v", 1, "I1", 5, "", DIGEST])
    assert decode_call("credit_part", [*base, 0, ""]).goods == ()  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Method table and eid
# ---------------------------------------------------------------------------------------------


def test_method_table() -> None:
    """Served → decoded; a known legacy call with a valid eid and digest → 9103 naming the
    call and why; anything else → -32601."""
    import base64
    import hashlib

    merchant = Merchant(eid=5, shared_secret="s", rest_username="u", rest_password="p",
                        base_url="http://x")
    auth = Authenticator({5: merchant}.get, REGISTRY)
    digest = base64.b64encode(hashlib.sha512(b"5:R1:100:s").digest()).decode()
    with pytest.raises(NotAllowedError) as info:
        auth.authenticate("split_reservation", ["4.1", "v", "R1", 100, "", "", 0, 5, digest])
    assert info.value.fault_code == FaultCode.NOT_ALLOWED_OPERATION
    assert info.value.fault_string.startswith(
        "not_allowed_operation: split_reservation is not offered by this gateway")
    with pytest.raises(MethodNotFoundError, match="system.listMethods"):
        auth.authenticate("system.listMethods", [])
    assert {"reserve_amount", "get_pclasses", "update_notes", "split_reservation",
            "has_account", "activate_part", "delete_invoice"} <= KNOWN_UNSERVED_METHODS
    assert {"activate_reservation", "change_reservation", "return_amount", "update_orderno",
            "invoice_amount", "invoice_part_amount", "invoice_address"} <= SERVED_METHODS
    assert not SERVED_METHODS & KNOWN_UNSERVED_METHODS


@pytest.mark.parametrize(("method", "params", "eid"), [
    ("activate", ["4.1", "v", 1234, DIGEST, "R", {}], 1234),
    ("update", ["4.1", "v", "1234", DIGEST, "R", {}], 1234),
    ("cancel_reservation", ["4.1", "v", "R", 99, DIGEST], 99),
    ("extend_expiry_date", ["4.1", "v", "R", "99", DIGEST], 99),
    ("credit_part", ["4.1", "v", 5, "I", [], "", DIGEST], 5),
    ("check_order_status", ["4.1", "v", 5, DIGEST, 1, 0], 5),
    ("split_reservation", ["4.1", "v", "R", 1, "", "", 0, 77, DIGEST], 77),
    ("reserve_amount", ["4.1", "v", *([""] * 14), 4321, DIGEST], 4321),
    ("email_invoice", ["4.1", "v", 2**40, "I", DIGEST], 2**40),
])
def test_extract_eid_positions(method: str, params: list[Any], eid: int) -> None:
    """eid is read from the method's position as `<int>` or numeric `<string>`."""
    assert extract_eid(method, params) == eid


def test_extract_eid_refusals() -> None:
    """Missing or non-numeric eid → -32602 naming `eid`; unknown method → -32601."""
    with pytest.raises(InvalidParamsError, match="eid"):
        extract_eid("activate", ["4.1", "v"])
    with pytest.raises(InvalidParamsError, match="eid"):
        extract_eid("activate", ["4.1", "v", {"a": 1}])
    with pytest.raises(InvalidParamsError, match="eid"):
        extract_eid("activate", ["4.1", "v", True])
    with pytest.raises(InvalidParamsError, match="proto"):
        extract_eid("activate", [])
    with pytest.raises(MethodNotFoundError):
        extract_eid("nope", ["4.1", "v", 1])


# ---------------------------------------------------------------------------------------------
# Fuzzing: whatever parse_method_call can produce, decoding and digests only raise GatewayError
# ---------------------------------------------------------------------------------------------

_KEYS = st.sampled_from(["artnos", "artno", "qty", "goods", "goods_list", "price", "vat",
                         "discount", "flags", "title", "dlv_addr", "bill_addr", "country",
                         "shipment_info", "delay_adjust", "bclass", "ocr", "orderid1",
                         "orderid2", "reference", "cust_no", "zip", "x"])
_LEAVES = (st.none() | st.booleans() | st.integers() | st.text(max_size=6)
           | st.sampled_from(["", "0", "12", "-1", "1.5", "4.1"])
           | st.decimals(allow_nan=False, allow_infinity=False, places=None)
           | st.binary(max_size=4))
_PARAM = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(_KEYS, inner, max_size=5), max_leaves=25)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SERVED_METHODS)), st.lists(_PARAM, max_size=10),
       st.booleans())
def test_decode_and_digest_never_raise_non_gateway_errors(method: str, params: list[Any],
                                                          with_envelope: bool) -> None:
    """Random parameter lists (with or without a valid envelope) never crash decode_call,
    extract_eid or verify_digest with anything but a GatewayError."""
    if with_envelope:
        params = ["4.1", "php:api:5.0.0", *params]
    for fn in (lambda: decode_call(method, params), lambda: extract_eid(method, params),
               lambda: verify_digest(method, params, b"s3cr3t")):
        try:
            fn()
        except GatewayError:
            pass
