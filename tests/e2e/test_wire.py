"""Hostile and odd wire input against the full gateway: a clear fault, nothing touched."""
from __future__ import annotations

import xmlrpc.client

import pytest_twisted
import treq

from tests.e2e.sdk import mutations
from tests.harness import Harness

XXE = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<methodCall><methodName>activate</methodName><params><param><value>&x;</value></param>
</params></methodCall>"""


async def post(gw: Harness, body: bytes, path: str = "/") -> tuple[int, bytes]:
    resp = await treq.post(gw.url.rstrip("/") + path, data=body,
                           headers={"Content-Type": "text/xml"})
    return resp.code, await resp.content()


def fault(data: bytes) -> xmlrpc.client.Fault:
    try:
        xmlrpc.client.loads(data)
    except xmlrpc.client.Fault as f:
        return f
    raise AssertionError(data)


@pytest_twisted.ensureDeferred
async def test_hostile_bodies_get_faults_and_change_nothing(gw: Harness) -> None:
    """XXE, garbage, a non-methodCall root and an oversized body are refused with the
    parse/request faults; the order is untouched and no journal entry is written."""
    created = await gw.create_order()
    for body, code in ((XXE, -32700), (b"\x00\xffgarbage", -32700),
                       (b"<?xml version='1.0'?><methodResponse/>", -32600),
                       (b"<methodCall>" + b"x" * (2 << 20) + b"</methodCall>", -32700)):
        status, data = await post(gw, body, "/RPC2")
        assert status == 200
        f = fault(data)
        assert f.faultCode == code and "root:" not in f.faultString
    assert mutations(await gw.operations(created["order_id"]), "") == []
    assert gw.gateway.store is not None
    assert await gw.gateway.store.journal_for(1234) == []


@pytest_twisted.ensureDeferred
async def test_wrong_arity_is_invalid_params_after_auth(gw: Harness) -> None:
    """A correctly signed call with a missing parameter answers -32602 naming it."""
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha512(b"1234:8000000000:sandbox-secret").digest())
    body = xmlrpc.client.dumps(("4.1", "python:api:3.1.0", "8000000000", 1234,
                                digest.decode(), "extra"), "cancel_reservation").encode()
    status, data = await post(gw, body)
    f = fault(data)
    assert f.faultCode == -32602


@pytest_twisted.ensureDeferred
async def test_latin1_reply_encoding(gw: Harness) -> None:
    """Replies are ISO-8859-1 XML that the stdlib client parses; any path works."""
    created = await gw.create_order()
    k = gw.sdk(uri=gw.url.rstrip("/") + "/some/legacy/path")
    assert await gw.call(k.cancel_reservation, created["rno"]) is True
