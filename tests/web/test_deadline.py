"""Time bounds: the total per-request deadline and the idle timeout, on real sockets.

Short limits (0.5-2 s) keep the wall time small; each test measures on the client side and
checks the figure against the configured limit with a margin for a loaded CI machine.
"""
from __future__ import annotations

import time

import pytest_twisted
from twisted.internet import threads

from gateway.web import ListenerLimits, RefusalReason
from tests.web import clients
from tests.web.conftest import EchoResource, Serve

TOKEN = b"Bearer t"
#: Scheduling slack allowed on top of a configured time limit.
SLACK = 0.6


def _post(body: bytes, *, keep_alive: bool = True) -> bytes:
    connection = b"" if keep_alive else b"Connection: close\r\n"
    return (b"POST /x HTTP/1.1\r\nHost: test\r\n" + connection
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest_twisted.ensureDeferred
async def test_drip_client_is_cut_off_at_the_deadline(serve: Serve) -> None:
    """1 byte / 250 ms resets any idle timeout forever; the deadline is not reset."""
    deadline = 1.0
    listener = await serve(ListenerLimits(request_deadline_seconds=deadline,
                                          idle_timeout_seconds=5.0))
    request = _post(b"x" * 100)  # ~150 bytes: 37 s at this pace
    result = await threads.deferToThread(clients.drip, listener.port, request, 0.25)

    assert result.closed_after is not None, "the server never closed the drip client"
    print(f"\ndrip client (1 B / 250 ms), deadline {deadline} s: answered 408 and closed "
          f"after {result.closed_after:.3f} s, {result.sent} bytes sent")
    assert deadline - 0.05 <= result.closed_after <= deadline + SLACK
    response = result.response
    assert response.status == 408
    assert response.header(b"connection") == b"close"
    assert listener.site.stats.refused_requests[RefusalReason.TIMEOUT] == 1
    assert listener.resource.seen == []


@pytest_twisted.ensureDeferred
async def test_deadline_covers_the_body_too(serve: Serve) -> None:
    """Headers at once, then the body dripped: the deadline still ends it."""
    deadline = 1.0
    listener = await serve(ListenerLimits(request_deadline_seconds=deadline,
                                          idle_timeout_seconds=5.0))
    head = b"POST /x HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n"
    result = await threads.deferToThread(clients.drip, listener.port, b"x" * 100, 0.25,
                                         prefix=head)
    assert result.closed_after is not None
    assert deadline - 0.05 <= result.closed_after <= deadline + SLACK
    assert result.response.status == 408
    assert listener.resource.seen == []


@pytest_twisted.ensureDeferred
async def test_slow_request_within_the_deadline_succeeds(serve: Serve) -> None:
    """A slow client that finishes in time is served normally."""
    listener = await serve(ListenerLimits(request_deadline_seconds=2.0,
                                          idle_timeout_seconds=1.0))
    request = _post(b"y" * 40, keep_alive=False)

    def slow_client() -> tuple[float, clients.Response]:
        pieces = [request[i:i + 20] for i in range(0, len(request), 20)]
        with clients.connect(listener.port) as sock:
            started = time.monotonic()
            for piece in pieces:  # ~5-6 pieces, 0.2 s apart: ~1 s in all
                sock.sendall(piece)
                time.sleep(0.2)
            data, closed = clients.read_until_close(sock)
            assert closed
            return time.monotonic() - started, clients.final_response(data)

    took, response = await threads.deferToThread(slow_client)
    assert took > 0.8
    assert response.status == 200
    assert response.body == b"ok 40"


@pytest_twisted.ensureDeferred
async def test_each_keep_alive_request_has_its_own_deadline(serve: Serve) -> None:
    """Two 0.7 s requests on one connection pass a 1 s deadline: it is per request."""
    listener = await serve(ListenerLimits(request_deadline_seconds=1.0,
                                          idle_timeout_seconds=1.0))
    request = _post(b"z" * 10)

    def two_slow_requests() -> list[clients.Response]:
        out = []
        with clients.connect(listener.port) as sock:
            for _ in range(2):
                half = len(request) // 2
                sock.sendall(request[:half])
                time.sleep(0.7)
                sock.sendall(request[half:])
                out.append(clients.read_one_response(sock))
        return out

    responses = await threads.deferToThread(two_slow_requests)
    assert [r.status for r in responses] == [200, 200]
    assert listener.site.stats.accepted_connections == 1


@pytest_twisted.ensureDeferred
async def test_slow_handler_is_not_cut_by_the_deadline(serve: Serve) -> None:
    """The deadline ends with the last body byte: a handler may take longer."""
    listener = await serve(ListenerLimits(request_deadline_seconds=0.5,
                                          idle_timeout_seconds=0.5),
                           resource=EchoResource(delay=1.2))
    data, closed = await threads.deferToThread(clients.exchange, listener.port,
                                               _post(b"abc", keep_alive=False))
    assert closed
    response = clients.final_response(data)
    assert response.status == 200
    assert response.body == b"ok 3"


@pytest_twisted.ensureDeferred
async def test_idle_keep_alive_connection_is_closed(serve: Serve) -> None:
    """After a response, a keep-alive connection that says nothing is closed at the idle
    timeout, silently (no request is under way, so there is nothing to answer)."""
    idle = 0.5
    listener = await serve(ListenerLimits(request_deadline_seconds=5.0,
                                          idle_timeout_seconds=idle))

    def keep_alive_then_wait() -> tuple[clients.Response, bytes, float, bool]:
        with clients.connect(listener.port) as sock:
            sock.sendall(_post(b"hi"))
            response = clients.read_one_response(sock)
            answered = time.monotonic()
            rest, closed = clients.read_until_close(sock, timeout=5.0)
            return response, rest, time.monotonic() - answered, closed

    response, rest, idle_for, closed = await threads.deferToThread(keep_alive_then_wait)
    print(f"\nkeep-alive connection idle timeout {idle} s: closed after {idle_for:.3f} s")
    assert response.status == 200
    assert response.header(b"connection") != b"close"
    assert closed and rest == b""
    assert idle - 0.05 <= idle_for <= idle + SLACK


@pytest_twisted.ensureDeferred
async def test_connection_that_never_speaks_is_closed_at_the_idle_timeout(
        serve: Serve) -> None:
    idle = 0.5
    listener = await serve(ListenerLimits(request_deadline_seconds=5.0,
                                          idle_timeout_seconds=idle))

    def silent() -> tuple[bytes, bool, float]:
        with clients.connect(listener.port) as sock:
            started = time.monotonic()
            data, closed = clients.read_until_close(sock, timeout=5.0)
            return data, closed, time.monotonic() - started

    data, closed, took = await threads.deferToThread(silent)
    assert closed and data == b""
    assert idle - 0.05 <= took <= idle + SLACK


@pytest_twisted.ensureDeferred
async def test_request_stalled_half_way_gets_408_at_the_idle_timeout(serve: Serve) -> None:
    """Idle timeout mid-request: answered 408 (not a silent close), before the deadline."""
    idle = 0.5
    listener = await serve(ListenerLimits(request_deadline_seconds=5.0,
                                          idle_timeout_seconds=idle))

    def stall() -> tuple[bytes, bool, float]:
        with clients.connect(listener.port) as sock:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: te")
            started = time.monotonic()
            data, closed = clients.read_until_close(sock, timeout=5.0)
            return data, closed, time.monotonic() - started

    data, closed, took = await threads.deferToThread(stall)
    assert closed
    assert clients.final_response(data).status == 408
    assert idle - 0.05 <= took <= idle + SLACK


@pytest_twisted.ensureDeferred
async def test_deadline_before_the_request_line_is_complete(serve: Serve) -> None:
    """A request line dripped forever: no Request object exists yet, still a 408."""
    listener = await serve(ListenerLimits(request_deadline_seconds=0.6,
                                          idle_timeout_seconds=5.0))
    result = await threads.deferToThread(clients.drip, listener.port, b"GET /" + b"a" * 200,
                                         0.1)
    assert result.closed_after is not None
    assert 0.55 <= result.closed_after <= 0.6 + SLACK
    assert result.response.status == 408


@pytest_twisted.ensureDeferred
async def test_pipelined_request_waiting_behind_a_slow_handler_is_not_timed_out(
        serve: Serve) -> None:
    """A request queued behind a slow one starts its deadline only when it is parsed."""
    listener = await serve(ListenerLimits(request_deadline_seconds=0.5,
                                          idle_timeout_seconds=0.5),
                           resource=EchoResource(delay=0.8))

    def pipelined() -> list[clients.Response]:
        with clients.connect(listener.port) as sock:
            sock.sendall(_post(b"one") + _post(b"second", keep_alive=False))
            first = clients.read_one_response(sock)
            second = clients.read_one_response(sock)
            return [first, second]

    responses = await threads.deferToThread(pipelined)
    assert [(r.status, r.body) for r in responses] == [(200, b"ok 3"), (200, b"ok 6")]
