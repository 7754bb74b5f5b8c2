"""A TCP link to a real server that a test can cut: PostgreSQL going away without stopping
the PostgreSQL other sessions share.

:class:`Link` listens on a loopback port and forwards every connection to the real server.
``sever()`` drops every connection as a server that restarts does (the client sees its
connection reset) and lets new ones through; ``unplug()`` drops them and refuses new ones
(a server that is down: connection refused); ``mute()`` drops them and takes new ones
without ever answering (a host that does not answer: a firewall dropping packets, a
partition); ``plug()`` lets connections through again on the same port.

The link runs on a thread of its own, not on the reactor: the gateway's database threads
block on it, and a reactor that waits for them (``Database.stop`` joins its threads) must
not be what forwards their bytes.
"""
from __future__ import annotations

import selectors
import socket
import struct
import threading
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit


class Link:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.local_port = 0
        self._listener: socket.socket | None = None
        self._muted = False
        self._peer: dict[socket.socket, socket.socket | None] = {}  # muted: no peer
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._orders: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="netcut", daemon=True)
        self._thread.start()

    # -- the test's side (any thread) ---------------------------------------------------------

    def plug(self) -> int:
        """Forward connections (again, on the same port); the port."""
        self._do(self._plug)
        return self.local_port

    def sever(self) -> None:
        """Drop every connection (the server restarted); new ones go through."""
        self._do(self._drop_all)

    def unplug(self) -> None:
        """Drop every connection and refuse new ones (the server is down)."""
        self._do(self._unplug)

    def mute(self) -> None:
        """Drop every connection; accept new ones and never answer them."""
        def mute() -> None:
            self._muted = True
            self._drop_all()
        self._do(mute)

    def close(self) -> None:
        self._do(self._unplug)
        self._stopping = True
        self._wake_w.send(b"x")
        self._thread.join(5)

    def _do(self, order: Callable[[], None]) -> None:
        """Run ``order`` on the link's thread and wait for it."""
        done = threading.Event()

        def run() -> None:
            try:
                order()
            finally:
                done.set()
        with self._lock:
            self._orders.append(run)
        self._wake_w.send(b"x")
        assert done.wait(5), "the link's thread did not answer"

    # -- the link's thread --------------------------------------------------------------------

    def _plug(self) -> None:
        if self._muted:
            self._muted = False
            self._drop_all()  # the connections that never got an answer
        if self._listener is None:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.local_port))
            listener.listen(64)
            listener.setblocking(False)
            self.local_port = listener.getsockname()[1]
            self._listener = listener
            self._selector.register(listener, selectors.EVENT_READ)

    def _unplug(self) -> None:
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None
        self._drop_all()

    def _drop_all(self) -> None:
        for sock in list(self._peer):
            self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        """Close both ends with a reset, as a dying server's kernel would."""
        peer = self._peer.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peer.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            s.close()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._muted:
            self._peer[client] = None
            self._selector.register(client, selectors.EVENT_READ)
            return
        try:
            upstream = socket.create_connection((self.host, self.port), timeout=5)
        except OSError:
            client.close()
            return
        self._peer[client], self._peer[upstream] = upstream, client
        for s in (client, upstream):
            s.setblocking(True)
            s.settimeout(5)
            self._selector.register(s, selectors.EVENT_READ)

    def _pump(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        peer = self._peer.get(sock)
        if not data:
            self._drop(sock)
        elif peer is not None:  # a muted connection's bytes go nowhere
            try:
                peer.sendall(data)
            except OSError:
                self._drop(sock)

    def _loop(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=1.0):
                sock = key.fileobj
                if sock is self._wake_r:
                    self._wake_r.recv(4096)
                    with self._lock:
                        orders, self._orders = self._orders, []
                    for order in orders:
                        order()
                elif sock is self._listener:
                    self._accept()
                elif sock in self._peer:
                    self._pump(sock)  # type: ignore[arg-type]


def linked(url: str, **query: str) -> tuple[Link, str]:
    """A plugged link to the PostgreSQL of ``url``, and ``url`` through it (``query``:
    more parameters, e.g. ``application_name``)."""
    parts = urlsplit(url)
    link = Link(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = link.plug()
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    return link, urlunsplit(parts._replace(
        netloc=f"{parts.username}@127.0.0.1:{port}",
        query="&".join(q for q in (parts.query, extra) if q)))
