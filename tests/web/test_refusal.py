"""Refusal before the body: 401 from ``authorize``, 413 from the size limit, on real sockets.

"Before the body is read" is checked two ways: the client sends the head alone and gets
the answer without sending a body byte, and the listener's ``body_bytes_buffered`` counter
(what reached ``request.content``) stays at 0, or at most the limit for a chunked body.
"""
from __future__ import annotations

import hmac
import time
from typing import Any

import pytest_twisted
from twisted.internet import threads
from twisted.web import server
from twisted.web.resource import Resource

from gateway.web import GuardedRequest, ListenerLimits, Refusal, RefusalReason
from tests.web import clients
from tests.web.conftest import Serve

TOKEN = b"Bearer s3cret"
GiB = 1 << 30


def bearer(request: server.Request) -> bool:
    if request.path == b"/healthz":
        return True
    return hmac.compare_digest(request.getHeader(b"authorization") or b"", TOKEN)


def head(length: int | None = None, *, auth: bool = True, expect: bool = False,
         path: bytes = b"/x", extra: bytes = b"") -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: test"]
    if auth:
        lines.append(b"Authorization: " + TOKEN)
    if length is None:
        lines.append(b"Transfer-Encoding: chunked")
    else:
        lines.append(b"Content-Length: %d" % length)
    if expect:
        lines.append(b"Expect: 100-continue")
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


def send_head_only(port: int, data: bytes, timeout: float = 5.0) -> tuple[float, bytes, bool]:
    """Send a request head, no body; wait for the answer and EOF: (seconds, bytes, closed)."""
    with clients.connect(port, timeout) as sock:
        started = time.monotonic()
        sock.sendall(data)
        received, closed = clients.read_until_close(sock, timeout)
        return time.monotonic() - started, received, closed


@pytest_twisted.ensureDeferred
async def test_unauthenticated_upload_is_answered_401_before_its_body(serve: Serve) -> None:
    listener = await serve(ListenerLimits(max_body_bytes=1 << 20), authorize=bearer)
    took, data, closed = await threads.deferToThread(send_head_only, listener.port,
                                                     head(GiB, auth=False))
    print(f"\n1 GiB declared, no token, head only: 401 after {took * 1000:.1f} ms")
    response = clients.final_response(data)
    assert response.status == 401
    assert response.header(b"connection") == b"close"
    assert closed
    assert took < 0.5
    stats = listener.site.stats
    assert stats.body_bytes_buffered == 0
    assert stats.refused_requests == {RefusalReason.UNAUTHORIZED: 1}
    assert listener.resource.seen == []


@pytest_twisted.ensureDeferred
async def test_unauthenticated_streamed_upload_stops_at_the_socket_buffers(
        serve: Serve) -> None:
    """A client streaming a 1 GiB body: the 401 comes back while the body is still
    flowing; the listener buffered none of it (the full 1 GB upload against a separate
    server process, with its RSS, is in test_upload_rss.py)."""
    listener = await serve(ListenerLimits(max_body_bytes=1 << 20), authorize=bearer)
    upload = await threads.deferToThread(clients.stream_upload, listener.port,
                                         head(GiB, auth=False), GiB)
    assert upload.answered_after is not None
    assert upload.response.status == 401
    assert upload.body_bytes_sent < 64 << 20
    assert listener.site.stats.body_bytes_buffered == 0


@pytest_twisted.ensureDeferred
async def test_oversized_declared_length_gets_413_at_once(serve: Serve) -> None:
    limit = 64 * 1024
    listener = await serve(ListenerLimits(max_body_bytes=limit), authorize=bearer)
    took, data, closed = await threads.deferToThread(send_head_only, listener.port,
                                                     head(limit + 1))
    print(f"\nContent-Length limit+1, head only: 413 after {took * 1000:.1f} ms")
    assert clients.final_response(data).status == 413
    assert closed
    assert took < 0.5
    assert listener.site.stats.body_bytes_buffered == 0
    assert listener.resource.seen == []


@pytest_twisted.ensureDeferred
async def test_oversized_chunked_body_gets_413_once_the_total_passes_the_limit(
        serve: Serve) -> None:
    limit = 256 * 1024
    listener = await serve(ListenerLimits(max_body_bytes=limit), authorize=bearer)
    upload = await threads.deferToThread(clients.stream_upload, listener.port, head(None),
                                         None, chunked=True, limit=10.0)
    print(f"\nchunked body, limit {limit} B: 413 after {upload.answered_after:.3f} s, "
          f"{upload.body_bytes_sent} B sent by then")
    assert upload.answered_after is not None and upload.answered_after < 1.0
    assert upload.response.status == 413
    stats = listener.site.stats
    assert stats.body_bytes_buffered <= limit
    assert stats.refused_requests == {RefusalReason.TOO_LARGE: 1}
    assert listener.resource.seen == []


@pytest_twisted.ensureDeferred
async def test_authorized_bodies_up_to_the_limit_are_served(serve: Serve) -> None:
    limit = 200_000
    listener = await serve(ListenerLimits(max_body_bytes=limit), authorize=bearer)

    def post_both_ways() -> list[clients.Response]:
        out = []
        with clients.connect(listener.port) as sock:  # one keep-alive connection
            sock.sendall(head(limit) + b"a" * limit)
            out.append(clients.read_one_response(sock))
            chunk = b"b" * 50_000
            body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4))
            sock.sendall(head(None) + body + b"0\r\n\r\n")
            out.append(clients.read_one_response(sock))
        return out

    responses = await threads.deferToThread(post_both_ways)
    assert [(r.status, r.body) for r in responses] == [(200, b"ok 200000")] * 2
    assert listener.site.stats.body_bytes_buffered == 2 * limit
    assert not listener.site.stats.refused_requests


@pytest_twisted.ensureDeferred
async def test_unauthorized_and_oversized_is_401(serve: Serve) -> None:
    """``authorize`` is checked first: a stranger learns nothing about the limits."""
    listener = await serve(ListenerLimits(max_body_bytes=10), authorize=bearer)
    _, data, _ = await threads.deferToThread(send_head_only, listener.port,
                                             head(1000, auth=False))
    assert clients.final_response(data).status == 401


@pytest_twisted.ensureDeferred
async def test_refused_requests_never_get_100_continue(serve: Serve) -> None:
    listener = await serve(ListenerLimits(max_body_bytes=1000), authorize=bearer)

    def statuses(data: bytes) -> list[int | None]:
        _, received, _ = send_head_only(listener.port, data)
        return [r.status for r in clients.parse_responses(received)]

    assert await threads.deferToThread(statuses, head(500, auth=False, expect=True)) == [401]
    assert await threads.deferToThread(statuses, head(5000, expect=True)) == [413]


@pytest_twisted.ensureDeferred
async def test_accepted_request_with_expect_gets_100_continue_first(serve: Serve) -> None:
    listener = await serve(ListenerLimits(max_body_bytes=1000), authorize=bearer)

    def exchange() -> bytes:
        with clients.connect(listener.port) as sock:
            sock.sendall(head(5, expect=True, extra=b"Connection: close\r\n"))
            sock.settimeout(2.0)
            interim = sock.recv(100)
            sock.sendall(b"hello")
            rest, _ = clients.read_until_close(sock)
            return interim + rest

    raw = await threads.deferToThread(exchange)
    statuses = [r.status for r in clients.parse_responses(raw)]
    assert statuses == [100, 200]


@pytest_twisted.ensureDeferred
async def test_authorize_sees_the_request_line_and_headers(serve: Serve) -> None:
    seen: list[dict[str, Any]] = []

    def record(request: server.Request) -> bool:
        seen.append({"method": request.method, "uri": request.uri, "path": request.path,
                     "proto": request.clientproto, "user": request.getUser(),
                     "password": request.getPassword(), "content": request.content})
        return request.path == b"/open"

    listener = await serve(ListenerLimits(), authorize=record)
    basic = b"Authorization: Basic dXNlcjpwYXNz\r\n"  # user:pass
    _, data, _ = await threads.deferToThread(
        send_head_only, listener.port,
        b"PATCH /closed?a=1 HTTP/1.1\r\nHost: t\r\n" + basic + b"Content-Length: 3\r\n\r\n")
    assert clients.final_response(data).status == 401
    data, _ = await threads.deferToThread(
        clients.exchange, listener.port,
        b"GET /open?b=2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert clients.final_response(data).status == 200
    assert seen == [
        {"method": b"PATCH", "uri": b"/closed?a=1", "path": b"/closed", "proto": b"HTTP/1.1",
         "user": b"user", "password": b"pass", "content": None},
        {"method": b"GET", "uri": b"/open?b=2", "path": b"/open", "proto": b"HTTP/1.1",
         "user": b"", "password": b"", "content": None},
    ]


@pytest_twisted.ensureDeferred
async def test_authorize_that_raises_fails_closed(serve: Serve) -> None:
    def broken(request: server.Request) -> bool:
        raise RuntimeError("bug")

    listener = await serve(ListenerLimits(), authorize=broken)
    data, _ = await threads.deferToThread(
        clients.exchange, listener.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert clients.final_response(data).status == 401
    assert listener.resource.seen == []


LEGACY_FAULT = (b"<?xml version='1.0' encoding='ISO-8859-1'?>\n<methodResponse><fault>"
                b"<value><struct><member><name>faultCode</name><value><int>-32700</int>"
                b"</value></member><member><name>faultString</name><value><string>"
                b"parse_error: request body larger than 1024 bytes</string></value></member>"
                b"</struct></value></fault></methodResponse>")


def legacy_refusal(reason: RefusalReason, request: server.Request | None) -> Refusal | None:
    """The legacy edge's shape: HTTP 200 with an XML-RPC fault (only for TOO_LARGE here)."""
    if reason is RefusalReason.TOO_LARGE:
        return Refusal(200, LEGACY_FAULT, [("Content-Type", "text/xml; charset=ISO-8859-1")])
    return None


@pytest_twisted.ensureDeferred
async def test_the_caller_chooses_the_refusal_shape(serve: Serve) -> None:
    listener = await serve(ListenerLimits(max_body_bytes=1024, request_deadline_seconds=0.5),
                           refusal=legacy_refusal)
    _, data, closed = await threads.deferToThread(
        send_head_only, listener.port,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2048\r\n\r\n")
    response = clients.final_response(data)
    assert closed
    assert response.status == 200
    assert response.body == LEGACY_FAULT
    assert response.header(b"content-type") == b"text/xml; charset=ISO-8859-1"
    assert response.header(b"connection") == b"close"
    assert response.header(b"content-length") == b"%d" % len(LEGACY_FAULT)
    # A reason the factory leaves alone (None) gets the default refusal.
    _, data, _ = await threads.deferToThread(send_head_only, listener.port,
                                             b"POST / HTTP/1.1\r\nHost: t\r\n")
    assert clients.final_response(data).status == 408


@pytest_twisted.ensureDeferred
async def test_a_refusal_factory_that_raises_falls_back_to_the_default(serve: Serve) -> None:
    def broken(reason: RefusalReason, request: server.Request | None) -> Refusal:
        raise RuntimeError("bug")

    listener = await serve(ListenerLimits(max_body_bytes=10), refusal=broken)
    _, data, _ = await threads.deferToThread(
        send_head_only, listener.port,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n")
    response = clients.final_response(data)
    assert response.status == 413
    assert response.header(b"content-type") == b"text/plain; charset=utf-8"


@pytest_twisted.ensureDeferred
async def test_a_client_that_writes_its_whole_body_first_still_reads_the_refusal(
        serve: Serve) -> None:
    """The lingering drain: a naive client sends all 8 MiB before reading (no Expect)."""
    listener = await serve(ListenerLimits(max_body_bytes=1024, refusal_linger_seconds=2.0))
    size = 8 << 20

    def naive() -> tuple[bool, bytes]:
        with clients.connect(listener.port) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
            chunk = bytes(64 * 1024)
            wrote_all = True
            try:
                for _ in range(size // len(chunk)):
                    sock.sendall(chunk)
            except OSError:
                wrote_all = False
            data, _ = clients.read_until_close(sock)
            return wrote_all, data

    wrote_all, data = await threads.deferToThread(naive)
    assert wrote_all
    assert clients.final_response(data).status == 413
    assert listener.site.stats.discarded_bytes > 0
    assert listener.site.stats.body_bytes_buffered == 0


@pytest_twisted.ensureDeferred
async def test_the_drain_after_a_refusal_is_bounded_in_bytes_and_time(serve: Serve) -> None:
    """A client that never reads and never stops writing is cut off: after at most
    ``refusal_drain_bytes`` discarded, or ``refusal_linger_seconds``, whichever comes first."""
    drain = 4 << 20
    by_bytes = await serve(ListenerLimits(max_body_bytes=1024, refusal_linger_seconds=5.0,
                                          refusal_drain_bytes=drain))
    by_time = await serve(ListenerLimits(max_body_bytes=1024, refusal_linger_seconds=0.5,
                                         refusal_drain_bytes=1 << 40))

    def endless(port: int, pace: float) -> tuple[float, int]:
        with clients.connect(port) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (1 << 40))
            started = time.monotonic()
            sent = 0
            try:
                while time.monotonic() - started < 10:
                    sent += sock.send(clients.ZEROS)
                    if pace:
                        time.sleep(pace)
            except OSError:
                pass
            return time.monotonic() - started, sent

    took, sent = await threads.deferToThread(endless, by_bytes.port, 0.0)
    assert took < 4.0
    assert drain < by_bytes.site.stats.discarded_bytes <= drain + (1 << 20)
    took, sent = await threads.deferToThread(endless, by_time.port, 0.01)
    assert 0.45 <= took <= 0.5 + 0.6
    assert by_time.site.stats.body_bytes_buffered == 0


class ArgsResource(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[server.Request] = []

    def render_POST(self, request: server.Request) -> bytes:  # noqa: N802 - Twisted API
        self.requests.append(request)
        return repr(sorted(request.args)).encode()


class AppRequest(server.Request):
    """A listener's own request class that knows nothing of the guard."""

    marker = "app"


@pytest_twisted.ensureDeferred
async def test_form_bodies_are_not_parsed_and_request_classes_are_mixed_in(
        serve: Serve) -> None:
    resource = ArgsResource()
    listener = await serve(ListenerLimits(max_body_bytes=100), resource=resource,
                           request_class=AppRequest)
    form = b"a=1&b=2"
    data, _ = await threads.deferToThread(
        clients.exchange, listener.port,
        b"POST /f?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(form), form))
    assert clients.final_response(data).body == b"[b'q']"  # query string only, no form
    request = resource.requests[0]
    assert isinstance(request, AppRequest) and isinstance(request, GuardedRequest)
    assert request.marker == "app"
    # ... and the mixed-in class still enforces the limit.
    _, data, _ = await threads.deferToThread(
        send_head_only, listener.port,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n")
    assert clients.final_response(data).status == 413


@pytest_twisted.ensureDeferred
async def test_pipelined_bytes_after_a_refusal_are_never_parsed(serve: Serve) -> None:
    listener = await serve(ListenerLimits(), authorize=bearer)
    data, closed = await threads.deferToThread(
        clients.exchange, listener.port,
        b"GET /secret HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert closed
    assert [r.status for r in clients.parse_responses(data)] == [401]
    assert listener.resource.seen == []
