"""A TCP link to a real server that a test can cut: PostgreSQL going away without stopping
the PostgreSQL other sessions share.

:class:`Link` listens on a loopback port and forwards every connection to the real server.
``sever()`` drops every connection as a server that restarts does (the client sees its
connection closed) and lets new ones through; ``unplug()`` drops them and refuses new ones
(a server that is down: connection refused); ``plug()`` lets connections through again on
the same port.
"""
from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IListeningPort


class _Upstream(protocol.Protocol):
    def __init__(self, down: _Downstream) -> None:
        self.down = down

    def connectionMade(self) -> None:
        self.down.up = self
        for chunk in self.down.buffered:
            self.transport.write(chunk)
        self.down.buffered.clear()

    def dataReceived(self, data: bytes) -> None:
        self.down.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.down.transport.loseConnection()


class _UpstreamFactory(protocol.ClientFactory):
    def __init__(self, down: _Downstream) -> None:
        self.down = down

    def buildProtocol(self, addr: Any) -> _Upstream:
        return _Upstream(self.down)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.down.transport.loseConnection()


class _Downstream(protocol.Protocol):
    up: _Upstream | None = None

    def __init__(self, link: Link) -> None:
        self.link = link
        self.buffered: list[bytes] = []

    def connectionMade(self) -> None:
        self.link.connections.add(self)
        self.link.reactor.connectTCP(self.link.host, self.link.port, _UpstreamFactory(self))

    def dataReceived(self, data: bytes) -> None:
        if self.up is None:
            self.buffered.append(data)
        else:
            self.up.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.link.connections.discard(self)
        if self.up is not None:
            self.up.transport.loseConnection()

    def drop(self) -> None:
        self.transport.abortConnection()
        if self.up is not None:
            self.up.transport.abortConnection()


class Link(protocol.Factory):
    def __init__(self, reactor: Any, host: str, port: int) -> None:
        self.reactor, self.host, self.port = reactor, host, port
        self.connections: set[_Downstream] = set()
        self.listening: IListeningPort | None = None
        self.local_port = 0

    def buildProtocol(self, addr: Any) -> _Downstream:
        return _Downstream(self)

    def plug(self) -> int:
        """Forward connections (again, on the same port); the port."""
        if self.listening is None:
            self.listening = self.reactor.listenTCP(self.local_port, self,
                                                    interface="127.0.0.1")
            self.local_port = self.listening.getHost().port
        return self.local_port

    def sever(self) -> None:
        """Drop every connection (the server restarted); new ones go through."""
        for conn in list(self.connections):
            conn.drop()

    async def unplug(self) -> None:
        """Drop every connection and refuse new ones (the server is down)."""
        if self.listening is not None:
            listening, self.listening = self.listening, None
            await listening.stopListening()
        self.sever()
