"""The connection cap, on real sockets: N kept, the rest closed at once."""
from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import threads

from gateway.web import ListenerLimits
from tests.web import clients
from tests.web.conftest import Serve
from tests.waiting import wait_until

GET = b"GET /x HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest_twisted.ensureDeferred
async def test_only_max_connections_idle_connections_are_kept(serve: Serve) -> None:
    cap, extra = 5, 4
    listener = await serve(ListenerLimits(max_connections=cap, idle_timeout_seconds=10.0))

    socks, kept, refused_closed_within = await threads.deferToThread(
        clients.open_idle_connections, listener.port, cap + extra, 1.0)
    try:
        print(f"\n{cap + extra} idle connections against a cap of {cap}: {sum(kept)} kept, "
              f"the {extra} others closed within {refused_closed_within * 1000:.0f} ms")
        assert sum(kept) == cap
        assert kept[:cap] == [True] * cap  # first come, first served
        # the others were closed within the settle window (kept is False for them), long
        # before the 10 s idle timeout: closed for the cap, not for idling (how fast is a
        # benchmark's business: scripts/bench/listener_limits.py)
        stats = listener.site.stats
        assert stats.open_connections == cap
        assert stats.refused_connections == extra

        # The kept connections are fully usable.
        def use(sock: socket.socket) -> clients.Response:
            sock.setblocking(True)
            sock.sendall(GET)
            return clients.read_one_response(sock)
        response = await threads.deferToThread(use, socks[0])
        assert response.status == 200
    finally:
        for sock in socks:
            sock.close()


@pytest_twisted.ensureDeferred
async def test_a_slot_frees_up_when_a_connection_closes(serve: Serve) -> None:
    cap = 3
    listener = await serve(ListenerLimits(max_connections=cap, idle_timeout_seconds=10.0))
    socks, kept, _ = await threads.deferToThread(clients.open_idle_connections,
                                                 listener.port, cap, 0.2)
    try:
        assert all(kept)

        def over_cap_then_after_close() -> tuple[bool, clients.Response]:
            extra = clients.try_connect(listener.port)
            refused = True
            if extra is not None:
                with extra:
                    try:
                        wait_until(lambda: not clients.is_open(extra),
                                   "the connection over the cap closed", timeout=2)
                    except AssertionError:
                        refused = False
            socks[0].close()
            wait_until(lambda: listener.site.stats.open_connections < cap,
                       "a slot freed by the close", timeout=2)
            with clients.connect(listener.port) as late:
                late.sendall(GET)
                return refused, clients.read_one_response(late)

        refused, response = await threads.deferToThread(over_cap_then_after_close)
        assert refused
        assert response.status == 200
    finally:
        for sock in socks:
            sock.close()


@pytest_twisted.ensureDeferred
async def test_closed_connections_are_no_longer_counted(serve: Serve) -> None:
    """Every way a connection ends (client close, idle timeout, refusal) frees its slot."""
    listener = await serve(ListenerLimits(max_connections=2, idle_timeout_seconds=0.3,
                                          refusal_linger_seconds=0.2))

    def churn() -> list[int | None]:
        statuses: list[int | None] = []
        for _ in range(3):
            data, _ = clients.exchange(listener.port, GET.replace(b"\r\n\r\n",
                                                                  b"\r\nConnection: close\r\n\r\n"))
            statuses.append(clients.final_response(data).status)
            with clients.connect(listener.port) as sock:  # idles out
                clients.read_until_close(sock, timeout=2.0)
            data, _ = clients.exchange(  # refused (413): closed after the linger
                listener.port,
                b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\n")
            statuses.append(clients.final_response(data).status)
        return statuses

    statuses = await threads.deferToThread(churn)
    assert statuses == [200, 413] * 3
    assert listener.site.stats.refused_connections == 0
    assert listener.site.stats.accepted_connections == 9
