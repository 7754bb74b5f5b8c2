"""Review 2: when is a reply "delivered"? (docs/operations.md#money-safety-guarantees-and-limits.)

A call whose connection closed before its reply was written stays bound: the client's
identical retry continues it or gets its reply, and is never a second operation. The edge
records delivery when ``request.finish()`` hands the reply to the transport
(``notifyFinish``), so a close that happened before the write but that the reactor has not
yet read counts as a delivery, the unsafe way round.
"""
from __future__ import annotations

import socket
import xmlrpc.client
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import serverFromString

from gateway.edge.resource import LegacyResource, Reply, make_site


@pytest_twisted.ensureDeferred
async def test_a_reply_written_after_the_client_hung_up_is_not_delivered() -> None:
    """1. The client sends ``activate``; the capture is under way (the dispatch waits).
    2. The client gives up (its SDK timeout) and closes the connection.
    3. In the same reactor turn, before the reactor has read that close, the capture
       finishes and the reply is written: ``finish()`` succeeds on the dead connection and
       ``notifyFinish`` fires, so the delivery is recorded.
    The client never got its invno; its retry of the same call is then a new operation (a
    second capture) instead of the replay the documentation promises."""
    started: defer.Deferred[None] = defer.Deferred()
    gate: defer.Deferred[Any] = defer.Deferred()
    delivered: list[str] = []

    async def record() -> None:
        delivered.append("9000000001")

    async def dispatch(method: str, params: list[Any], client: str | None) -> Any:
        started.callback(None)
        return await gate

    resource = LegacyResource(dispatch)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        make_site(resource))
    sock = socket.create_connection(("127.0.0.1", port.getHost().port))
    try:
        body = xmlrpc.client.dumps(("4.1", "python:api:3.1.0", 1234, "d", "R", {}),
                                   methodname="activate").encode()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await started
        sock.close()  # the client hangs up: it will never read a reply
        gate.callback(Reply(["ok", "9000000001"], delivered=record))  # same reactor turn
        await task.deferLater(reactor, 0.3, lambda: None)
        assert delivered == [], "a reply written after the client hung up was recorded " \
                                "as delivered: its retry would be a second capture"
    finally:
        sock.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_reply_written_after_the_client_hung_up_is_recorded_undelivered() -> None:
    """Review 3: as on the KCO v2 edge, a legacy reply written after the client hung up is
    recorded *undelivered*, so the client's identical retry gets it at once instead of
    waiting out the delivery grace ('being written') first."""
    started: defer.Deferred[None] = defer.Deferred()
    gate: defer.Deferred[Any] = defer.Deferred()
    recorded: list[str] = []

    async def delivered() -> None:
        recorded.append("delivered")

    async def undelivered() -> None:
        recorded.append("undelivered")

    async def dispatch(method: str, params: list[Any], client: str | None) -> Any:
        started.callback(None)
        return await gate

    resource = LegacyResource(dispatch)
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        make_site(resource))
    sock = socket.create_connection(("127.0.0.1", port.getHost().port))
    try:
        body = xmlrpc.client.dumps(("4.1", "python:api:3.1.0", 1234, "d", "R", {}),
                                   methodname="activate").encode()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/xml\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await started
        sock.close()
        gate.callback(Reply(["ok", "9000000001"], delivered=delivered,
                            undelivered=undelivered))
        await task.deferLater(reactor, 0.3, lambda: None)
        assert recorded == ["undelivered"]
    finally:
        sock.close()
        await port.stopListening()
