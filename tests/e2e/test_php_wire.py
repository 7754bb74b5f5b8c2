"""PHP SDK wire shapes through the whole gateway (no PHP SDK can be fetched here, so the
requests are built byte for byte as phpxmlrpc sends them: HTTP/1.0, ISO-8859-1, doubles,
empty <array> for unset structs, '' for an unset goods list, the PHP digest dialects)."""
from __future__ import annotations

import base64
import hashlib
import socket
import xmlrpc.client
from typing import Any
from urllib.parse import urlparse

import pytest_twisted
from twisted.internet import threads

from tests.harness import Harness

DECL = b'<?xml version="1.0" encoding="ISO-8859-1" ?>\n'


def digest(*parts: str, secret: str = "sandbox-secret", algo: str = "sha512") -> str:
    joined = ":".join(list(parts) + [secret]).encode("latin-1")
    return base64.b64encode(hashlib.new(algo, joined).digest()).decode()


def v(x: Any) -> bytes:
    """phpxmlrpc's encoding of a PHP value."""
    if isinstance(x, bool):
        return b"<value><boolean>%d</boolean></value>" % x
    if isinstance(x, int):
        return b"<value><int>%d</int></value>" % x
    if isinstance(x, float):  # PHP prints up to 128 decimals, trailing zeros stripped
        text = format(x, ".128f").rstrip("0").rstrip(".")
        return b"<value><double>" + text.encode() + b"</double></value>"
    if isinstance(x, str):
        esc = x.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return b"<value><string>" + esc.encode("latin-1") + b"</string></value>"
    if isinstance(x, list):
        return b"<value><array><data>" + b"".join(v(i) for i in x) + b"</data></array></value>"
    if isinstance(x, dict):
        return b"<value><struct>" + b"".join(
            b"<member><name>" + k.encode() + b"</name>" + v(val) + b"</member>"
            for k, val in x.items()) + b"</struct></value>"
    raise TypeError(x)


def php_request(method: str, *params: Any) -> bytes:
    body = DECL + b"<methodCall>\n<methodName>" + method.encode() + b"</methodName>\n<params>\n"
    body += b"".join(b"<param>\n" + v(p) + b"\n</param>\n" for p in params)
    return body + b"</params>\n</methodCall>"


def post_http10(url: str, body: bytes) -> Any:
    """What P2/P4 send over plain http: a raw HTTP/1.0 socket, declared ISO-8859-1."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=20) as sock:
        sock.sendall(b"POST / HTTP/1.0\r\nUser-Agent: XML-RPC for PHP 3.0.0.beta\r\n"
                     b"Host: %s:%d\r\nAccept-Charset: UTF-8,ISO-8859-1,US-ASCII\r\n"
                     b"Content-Type: text/xml; charset=ISO-8859-1\r\n"
                     b"Content-Length: %d\r\n\r\n" % (u.hostname.encode(), u.port, len(body))
                     + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    return xmlrpc.client.loads(payload)[0][0]


async def php(gw: Harness, body: bytes) -> Any:
    return await threads.deferToThread(post_http10, gw.url, body)


@pytest_twisted.ensureDeferred
async def test_php5_full_activation_with_cleared_artnos_and_sha256(gw: Harness) -> None:
    """P5 after clear(): `artnos` is an empty array (= everything), `ocr` '' is sent but
    not hashed (drop-empty), flags 0 absent; a sha256 digest is accepted too."""
    created = await gw.create_order()
    rno = created["rno"]
    info = {"ocr": "", "orderid1": "ERP-9", "shipment_info": {"delay_adjust": 1},
            "artnos": []}
    d = digest("4:1", "php:api:5.0.0", "1234", rno, "ERP-9", "1", algo="sha256")
    reply = await php(gw, php_request("activate", "4.1", "php:api:5.0.0", 1234, d, rno, info))
    assert reply[0] == "ok" and reply[1].isdigit()
    order = await gw.order(created["order_id"])
    assert order["status"] == "CAPTURED" and order["captures"][0]["reference"] == "ERP-9"


@pytest_twisted.ensureDeferred
async def test_php2_update_with_doubles_and_latin1_and_falsy_digest(gw: Harness) -> None:
    """P2 update: goods with <double> vat/discount (0.1 as its long expansion), an int
    artno, a Latin-1 title, unset addresses as empty arrays, orderid2 '0' dropped from
    the digest (drop-falsy)."""
    created = await gw.create_order()
    rno = created["rno"]
    goods = [{"goods": {"artno": 777, "title": "Räksmörgås", "price": 12500, "vat": 25.0,
                        "discount": 0.1, "flags": 32}, "qty": 2}]
    upd = {"goods_list": goods, "dlv_addr": [], "bill_addr": [], "orderid1": "ORD-1",
           "orderid2": "0"}
    d = digest("4:1", "php:api:2.4.0", "1234", rno, "777", "2", "ORD-1")  # '0' dropped
    body = php_request("update", "4.1", "php:api:2.4.0", 1234, d, rno, upd)
    assert b"0.1000000000000000055511151231257827021181583404541015625" in body
    assert await php(gw, body) == "ok"
    order = await gw.order(created["order_id"])
    [line] = order["order_lines"]
    assert line["reference"] == "777" and line["name"] == "Räksmörgås"
    assert line["unit_price"] == 12500 and line["total_discount_amount"] == 25  # 0.1 % of 25000
    assert order["order_amount"] == 25000 - 25
    assert order["merchant_reference1"] == "ORD-1"


@pytest_twisted.ensureDeferred
async def test_php_credit_part_with_empty_string_artnos_and_goods(gw: Harness) -> None:
    """PHP credit_part on a fresh object: artnos '' plus the trailing 0 and a goods list."""
    created = await gw.create_order()
    _, invno = await gw.call(gw.sdk().activate, created["rno"])
    goods = [{"goods": {"artno": "FEE", "title": "Frakt", "price": 2000, "vat": 25.0,
                        "discount": 0.0, "flags": 32}, "qty": 1}]
    d = digest("1234", invno)
    reply = await php(gw, php_request("credit_part", "4.1", "php:api:4.1.0", 1234, invno, "",
                                      "", d, 0, goods))
    assert reply == invno
    order = await gw.order(created["order_id"])
    assert order["refunded_amount"] == 2000


@pytest_twisted.ensureDeferred
async def test_php_faults_are_plain_ints_with_symbols(gw: Harness) -> None:
    """A wrong digest from a PHP client is fault 9114 with an int code, Latin-1 reply."""
    created = await gw.create_order()
    body = php_request("cancel_reservation", "4.1", "php:api:5.0.0", created["rno"], 1234,
                       digest("1234", created["rno"], secret="wrong"))
    try:
        await php(gw, body)
    except xmlrpc.client.Fault as f:
        assert f.faultCode == 9114 and f.faultString.startswith("invalid_estore_secret: ")
    else:
        raise AssertionError("expected fault 9114")
