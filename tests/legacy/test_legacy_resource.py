"""The twisted.web edge on a real loopback Site, driven by real XML-RPC clients."""
from __future__ import annotations

import socket
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
import treq
from legacy_sdk_capture import make_sdk
from twisted.internet import defer, reactor, task, threads
from twisted.internet.endpoints import serverFromString
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web import server

from gateway.calls import REGISTRY
from gateway.edge.auth import Authenticator
from gateway.edge.resource import CallRecord, LegacyResource, make_site
from gateway.errors import InvalidDigestError, NotAllowedError


@dataclass
class Harness:
    """A running Site plus what its dispatch function saw."""

    port: int
    calls: list[tuple[str, list[Any]]] = field(default_factory=list)
    records: list[CallRecord] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


async def _start(dispatch: Callable[..., Any], *,
                 site_limit: int | None = 1 << 20, resource_limit: int = 1 << 20
                 ) -> tuple[Harness, Any]:
    records: list[CallRecord] = []
    auth = Authenticator(lambda eid: None, REGISTRY)
    async def three(method: str, params: list[Any], client: str | None) -> Any:
        return await dispatch(method, params)
    resource = LegacyResource(three, max_body_bytes=resource_limit, on_call=records.append,
                              eid_of=auth.eid_of)
    site = make_site(resource, site_limit) if site_limit is not None else server.Site(resource)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(site)
    harness = Harness(port=port.getHost().port, records=records)
    globalLogPublisher.addObserver(harness.events.append)
    return harness, port


async def _stop(harness: Harness, port: Any) -> None:
    globalLogPublisher.removeObserver(harness.events.append)
    await port.stopListening()


def _proxy_call(url: str, method: str, *args: Any) -> Any:
    """Blocking ServerProxy call, closed afterwards (run in a thread)."""
    proxy = xmlrpc.client.ServerProxy(url, encoding="iso-8859-1")
    try:
        return getattr(proxy, method)(*args)
    finally:
        proxy("close")()


async def call(url: str, method: str, *args: Any) -> Any:
    return await threads.deferToThread(_proxy_call, url, method, *args)


async def fault_of(url: str, method: str, *args: Any) -> xmlrpc.client.Fault:
    try:
        await call(url, method, *args)
    except xmlrpc.client.Fault as fault:
        return fault
    raise AssertionError("expected a fault")


def _raw_exchange(port: int, data: bytes, *, close_after_send: bool = False,
                  timeout: float = 5.0) -> bytes:
    """Send raw bytes, read the reply until EOF (or return at once if close_after_send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if close_after_send:
            return b""
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _body(method: str, *params: Any) -> bytes:
    return xmlrpc.client.dumps(params, method, encoding="iso-8859-1").encode(
        "iso-8859-1", "xmlcharrefreplace")


@pytest_twisted.ensureDeferred
async def test_post_on_any_path() -> None:
    """POST on /, /RPC2 (PY's default for a path-less uri) and any other path is XML-RPC."""
    calls: list[Any] = []

    async def dispatch(method: str, params: list[Any]) -> Any:
        calls.append((method, params))
        return ["ok", "9000000001"]

    harness, port = await _start(dispatch)
    try:
        for path in ("/", "", "/RPC2", "/anything/deeper?x=1"):
            url = f"http://127.0.0.1:{harness.port}{path}"
            result = await call(url, "activate", "4.1", "python:api:3.1.0", 1234, "Blåbär")
            assert result == ["ok", "9000000001"]
        assert len(calls) == 4
        assert calls[0] == ("activate", ["4.1", "python:api:3.1.0", 1234, "Blåbär"])
        assert [r.outcome for r in harness.records] == ["ok"] * 4
        assert harness.records[0].eid == 1234 and harness.records[0].method == "activate"
        access = [e for e in harness.events if e.get("log_namespace") == "gateway.legacy.access"]
        assert access and "method=activate eid=1234 outcome=ok" in _fmt(access[0])
    finally:
        await _stop(harness, port)


def _fmt(event: dict[str, Any]) -> str:
    return formatEvent(event)


@pytest_twisted.ensureDeferred
async def test_reply_headers_and_encoding() -> None:
    """Replies are HTTP 200, text/xml; charset=ISO-8859-1, with Content-Length, Latin-1 body."""

    async def dispatch(method: str, params: list[Any]) -> Any:
        return "Blåbär €"

    harness, port = await _start(dispatch)
    try:
        body = _body("email_invoice", "4.1")
        request = (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\n"
                   b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                   + b"\r\n\r\n" + body)
        raw = await threads.deferToThread(_raw_exchange, harness.port, request)
        head, _, content = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK"
        assert b"Content-Type: text/xml; charset=ISO-8859-1" in lines
        assert b"Content-Length: " + str(len(content)).encode() in lines
        assert "Blåbär".encode("latin-1") in content and b"&#8364;" in content
        assert xmlrpc.client.loads(content)[0] == ("Blåbär €",)
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_get_and_other_methods_are_405() -> None:
    """GET, HEAD, PUT → 405 with `Allow: POST`; dispatch is never called."""
    calls: list[Any] = []

    async def dispatch(method: str, params: list[Any]) -> Any:
        calls.append(method)
        return "ok"

    harness, port = await _start(dispatch)
    try:
        for verb in ("GET", "HEAD", "PUT", "DELETE"):
            response = await treq.request(verb, harness.url("/RPC2"), persistent=False)
            assert response.code == 405
            assert response.headers.getRawHeaders("allow") == ["POST"]
            await response.content()
        assert calls == []
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_faults_gateway_error_internal_error_cancelled_and_unsafe_reply() -> None:
    """GatewayError → its fault; ValueError → -32603 without its text (traceback logged);
    a leaked CancelledError → 9119; an unsafe reply value (None) → -32603."""

    async def dispatch(method: str, params: list[Any]) -> Any:
        if method == "boom":
            raise ValueError("secret internal text")
        if method == "fault":
            raise InvalidDigestError("digest does not match")
        if method == "cancelled":
            raise defer.CancelledError()
        if method == "unserved":
            raise NotAllowedError("check_order_status is not offered by this gateway")
        return None

    harness, port = await _start(dispatch)
    try:
        url = harness.url("/")
        fault = await fault_of(url, "fault", "4.1", "v", 1234)
        assert (fault.faultCode, fault.faultString) == (
            9114, "invalid_estore_secret: digest does not match")
        fault = await fault_of(url, "boom", "4.1", "v", 1234)
        assert (fault.faultCode, fault.faultString) == (-32603, "internal_error: internal error")
        assert "secret" not in fault.faultString
        fault = await fault_of(url, "cancelled")
        assert fault.faultCode == 9119
        fault = await fault_of(url, "unserved")
        assert fault.faultCode == 9103 and "check_order_status" in fault.faultString
        fault = await fault_of(url, "none")
        assert fault.faultCode == -32603
        failures = [e for e in harness.events if e.get("log_failure") is not None]
        assert any(e["log_failure"].check(ValueError) for e in failures)
        assert any(e["log_failure"].check(TypeError) for e in failures)
        assert [r.fault_code for r in harness.records] == [9114, -32603, 9119, 9103, -32603]
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_malformed_bodies_get_parse_and_request_faults() -> None:
    """Hostile or non-methodCall bodies → -32700 / -32600 faults over HTTP 200."""
    calls: list[Any] = []

    async def dispatch(method: str, params: list[Any]) -> Any:
        calls.append(method)
        return "ok"

    harness, port = await _start(dispatch)
    try:
        cases = [
            (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
             b"<methodCall><methodName>&e;</methodName></methodCall>", -32700),
            (b"not xml at all", -32700),
            (b"<methodResponse/>", -32600),
        ]
        for body, code in cases:
            response = await treq.post(harness.url("/"), data=body, persistent=False)
            assert response.code == 200
            with pytest.raises(xmlrpc.client.Fault) as info:
                xmlrpc.client.loads(await response.content())
            assert info.value.faultCode == code
        assert calls == []
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_php_style_http10_request() -> None:
    """A phpxmlrpc-shaped HTTP/1.0 request (charset in Content-Type, Latin-1 bytes) works."""
    calls: list[Any] = []

    async def dispatch(method: str, params: list[Any]) -> Any:
        calls.append((method, params))
        return "ok"

    harness, port = await _start(dispatch)
    try:
        body = (b'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<methodCall>\n<methodName>'
                b"cancel_reservation</methodName>\n<params>\n<param>\n<value><string>4.1"
                b"</string></value>\n</param>\n<param>\n<value><string>php:api:4.1.0</string>"
                b"</value>\n</param>\n<param>\n<value><string>R\xe5</string></value>\n</param>"
                b"\n<param>\n<value><int>1234</int></value>\n</param>\n<param>\n<value><string>"
                b"d</string></value>\n</param>\n</params>\n</methodCall>")
        request = (b"POST / HTTP/1.0\r\nUser-Agent: XML-RPC for PHP 3.0.1\r\nHost: 127.0.0.1\r\n"
                   b"Accept-Charset: UTF-8,ISO-8859-1,US-ASCII\r\n"
                   b"Content-Type: text/xml; charset=ISO-8859-1\r\nContent-Length: "
                   + str(len(body)).encode() + b"\r\n\r\n" + body)
        raw = await threads.deferToThread(_raw_exchange, harness.port, request)
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200")
        assert xmlrpc.client.loads(payload)[0] == ("ok",)
        assert calls == [("cancel_reservation", ["4.1", "php:api:4.1.0", "Rå", 1234, "d"])]
        assert harness.records[0].eid == 1234
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_oversized_content_length_refused_before_buffering() -> None:
    """A declared 100 MB body is answered at header time (fault -32700, HTTP 200) and the
    connection closed: the client sends only the headers and a few bytes and still gets the
    answer, which proves the gateway did not wait to buffer the body."""
    calls: list[Any] = []

    async def dispatch(method: str, params: list[Any]) -> Any:
        calls.append(method)
        return "ok"

    harness, port = await _start(dispatch, site_limit=10_000)
    try:
        request = (b"POST /RPC2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                   b"Content-Length: 104857600\r\n\r\n<?xml version='1.0'?><methodCall>")
        raw = await threads.deferToThread(_raw_exchange, harness.port, request)
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Connection: close" in head
        with pytest.raises(xmlrpc.client.Fault) as info:
            xmlrpc.client.loads(payload)
        assert info.value.faultCode == -32700
        assert "larger than 10000 bytes" in info.value.faultString
        assert calls == [] and harness.records == []
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_oversized_with_expect_continue_gets_only_the_final_answer() -> None:
    """curl-style `Expect: 100-continue` with an oversized body: the client gets the fault
    and no `100 Continue` (so it never starts sending the body)."""
    harness, port = await _start(_never_called, site_limit=10_000)
    try:
        request = (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\n"
                   b"Expect: 100-continue\r\nContent-Length: 50000000\r\n\r\n")
        raw = await threads.deferToThread(_raw_exchange, harness.port, request)
        assert raw.startswith(b"HTTP/1.1 200 OK") and b"100 Continue" not in raw
        assert raw.endswith(b"</methodResponse>\n")
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_oversized_chunked_body_refused() -> None:
    """A chunked body that grows past the limit is refused mid-stream the same way."""
    harness, port = await _start(_never_called, site_limit=1000)
    try:
        chunk = b"x" * 800
        request = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 3)
        raw = await threads.deferToThread(_raw_exchange, harness.port, request)
        assert raw.startswith(b"HTTP/1.1 200")
        with pytest.raises(xmlrpc.client.Fault) as info:
            xmlrpc.client.loads(raw.partition(b"\r\n\r\n")[2])
        assert info.value.faultCode == -32700
    finally:
        await _stop(harness, port)


async def _never_called(method: str, params: list[Any]) -> Any:
    raise AssertionError("dispatch must not run")


@pytest_twisted.ensureDeferred
async def test_resource_limit_under_plain_site() -> None:
    """Under a plain Site the resource itself refuses a body above its limit (-32700)."""
    harness, port = await _start(_never_called, site_limit=None, resource_limit=200)
    try:
        fault = await fault_of(harness.url("/"), "update", "x" * 500)
        assert fault.faultCode == -32700 and "larger than 200 bytes" in fault.faultString
        assert harness.records[0].fault_code == -32700
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_client_disconnect_mid_call_completes_dispatch() -> None:
    """A client that hangs up mid-call does not cancel the dispatch: it completes, the
    outcome is recorded as client_gone, and nothing is written to the dead request."""
    started: defer.Deferred[None] = defer.Deferred()
    gate: defer.Deferred[str] = defer.Deferred()
    finished: list[str] = []

    async def dispatch(method: str, params: list[Any]) -> Any:
        started.callback(None)
        result = await gate
        finished.append(result)
        return ["ok", result]

    harness, port = await _start(dispatch)
    try:
        body = _body("activate", "4.1", "python:api:3.1.0", 1234, "d", "R", {})
        request = (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\n"
                   b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await threads.deferToThread(_raw_exchange, harness.port, request,
                                    close_after_send=True)
        await started
        await task.deferLater(reactor, 0.2, lambda: None)  # let the server see the hang-up
        assert not gate.called
        gate.callback("9000000001")
        for _ in range(50):
            if harness.records:
                break
            await task.deferLater(reactor, 0.02, lambda: None)
        assert finished == ["9000000001"]
        assert harness.records[0].client_gone and harness.records[0].fault_code is None
        assert harness.records[0].method == "activate" and harness.records[0].eid == 1234
        assert not [e for e in harness.events if e.get("log_failure") is not None]
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_keep_alive_serves_several_calls() -> None:
    """PY's keep-alive connection can carry several calls in sequence."""

    async def dispatch(method: str, params: list[Any]) -> Any:
        return f"{method}:{params[0]}"

    harness, port = await _start(dispatch)
    try:
        def several() -> list[Any]:
            proxy = xmlrpc.client.ServerProxy(harness.url("/"))
            try:
                return [proxy.email_invoice(n) for n in range(3)]
            finally:
                proxy("close")()

        assert await threads.deferToThread(several) == [
            "email_invoice:0", "email_invoice:1", "email_invoice:2"]
    finally:
        await _stop(harness, port)


@pytest_twisted.ensureDeferred
async def test_sdk_against_real_site() -> None:
    """The unmodified PY SDK talks to the Site (path-less uri → /RPC2) and parses replies."""
    seen: list[tuple[str, list[Any]]] = []

    async def dispatch(method: str, params: list[Any]) -> Any:
        seen.append((method, params))
        return {"cancel_reservation": "ok", "extend_expiry_date": "20150525T103631",
                "activate": ["ok", "9000000001"]}[method]

    harness, port = await _start(dispatch)
    try:
        captured = make_sdk(uri=f"http://127.0.0.1:{harness.port}")
        client = captured.client
        del client.ServerProxy  # use the real stdlib ServerProxy again
        client.init()

        def run() -> list[Any]:
            return [client.cancel_reservation("2400000001"),
                    client.extend_expiry_date("2400000001").isoformat(),
                    client.activate("2400000001")]

        assert await threads.deferToThread(run) == [
            True, "2015-05-25T10:36:31", ("ok", "9000000001")]
        assert [m for m, _ in seen] == ["cancel_reservation", "extend_expiry_date", "activate"]
    finally:
        await _stop(harness, port)
