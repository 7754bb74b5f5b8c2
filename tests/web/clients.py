"""Blocking raw-socket HTTP clients for the listener tests (run them in a thread).

Real sockets on loopback, byte-exact requests, and timing taken on the client side: what a
misbehaving client would see. Every loop is bounded in time.
"""
from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass, field

HOST = "127.0.0.1"
ZEROS = bytes(64 * 1024)


@dataclass
class Response:
    """One parsed HTTP response (or what arrived of it)."""

    status: int | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name.lower())


def parse_responses(raw: bytes) -> list[Response]:
    """Split ``raw`` into responses (``100 Continue`` included); the last may be partial."""
    out: list[Response] = []
    rest = raw
    while rest:
        head, sep, after = rest.partition(b"\r\n\r\n")
        if not sep:
            out.append(Response(raw=rest))
            break
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        response = Response(status=int(parts[1]) if len(parts) > 1 else None)
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            response.headers[name.strip().lower()] = value.strip()
        length = int(response.headers.get(b"content-length", b"0") or 0)
        response.body, rest = after[:length], after[length:]
        response.raw = head + sep + response.body
        out.append(response)
    return out


def final_response(raw: bytes) -> Response:
    """The first non-1xx response in ``raw``."""
    for response in parse_responses(raw):
        if response.status is None or response.status >= 200:
            return response
    return Response(raw=raw)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=timeout)


def read_until_close(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Read until EOF or reset; returns (bytes, closed) where closed is false on timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk


def read_one_response(sock: socket.socket, timeout: float = 5.0) -> Response:
    """Read until one complete final (non-1xx) response is in (or timeout/EOF)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        responses = parse_responses(data)
        finals = [r for r in responses if r.status is not None and r.status >= 200]
        if finals and len(finals[0].body) == int(finals[0].header(b"content-length") or 0):
            return finals[0]
        left = deadline - time.monotonic()
        if left <= 0:
            return final_response(data)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return final_response(data)
        if not chunk:
            return final_response(data)
        data += chunk


def exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data`` at once, read until the server closes: (bytes received, closed)."""
    with connect(port, timeout) as sock:
        sock.sendall(data)
        return read_until_close(sock, timeout)


@dataclass
class Drip:
    """What a dripping client saw."""

    sent: int
    received: bytes
    closed_after: float | None  # seconds from the first byte to EOF/reset; None: never

    @property
    def response(self) -> Response:
        return final_response(self.received)


def drip(port: int, data: bytes, interval: float, *, limit: float = 10.0,
         prefix: bytes = b"") -> Drip:
    """Send ``prefix`` at once, then ``data`` one byte per ``interval``; stop when closed.

    The clock starts with the first byte (of ``prefix`` if any, else of ``data``).
    """
    with connect(port) as sock:
        sock.setblocking(False)
        started = time.monotonic()
        if prefix:
            sock.sendall(prefix)
        received = b""
        sent = 0
        next_send = started
        while time.monotonic() - started < limit:
            now = time.monotonic()
            if sent < len(data) and now >= next_send:
                try:
                    sock.send(data[sent:sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    pass
                else:
                    sent += 1
                next_send += interval
            wait = max(0.0, min(next_send - time.monotonic(), 0.05))
            readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return Drip(sent, received, time.monotonic() - started)
                received += chunk
        return Drip(sent, received, None)


@dataclass
class Upload:
    """What a streaming uploader saw when the server answered."""

    answered_after: float | None  # seconds from the request head to the answer's headers
    body_bytes_sent: int
    received: bytes

    @property
    def response(self) -> Response:
        return final_response(self.received)


def stream_upload(port: int, head: bytes, body_size: int | None, *, chunked: bool = False,
                  limit: float = 30.0) -> Upload:
    """Send ``head``, then stream zeros (``body_size`` bytes, or forever if ``None``) while
    watching for the answer; stop sending as soon as a final response's headers are in.

    The body is never built in memory: one 64 KiB buffer of zeros is sent over and over
    (each framed as one chunk if ``chunked``, then the last chunk once ``body_size`` is sent).
    """
    frame = (b"%x\r\n" % len(ZEROS)) + ZEROS + b"\r\n" if chunked else ZEROS
    with connect(port) as sock:
        sock.sendall(head)
        started = time.monotonic()
        sock.setblocking(False)
        sent = 0
        finished = False
        received = b""
        pending = memoryview(b"")
        while time.monotonic() - started < limit:
            want_write = not finished or len(pending) > 0
            readable, writable, _ = select.select([sock], [sock] if want_write else [], [],
                                                  0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                received += data
                if not data or any(r.status is not None and r.status >= 200
                                   for r in parse_responses(received)):
                    answered = time.monotonic() - started if received else None
                    return Upload(answered, sent, received)
            if writable and want_write:
                if not pending:
                    if body_size is not None and sent >= body_size:
                        pending = memoryview(b"0\r\n\r\n" if chunked else b"")
                        finished = True
                    elif chunked:
                        pending = memoryview(frame)
                        sent += len(ZEROS)
                    else:
                        size = len(ZEROS) if body_size is None else min(len(ZEROS),
                                                                        body_size - sent)
                        pending = memoryview(frame)[:size]
                        sent += size
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    pending = memoryview(b"")
                    finished = True
                    continue
                pending = pending[n:]
        return Upload(None, sent, received)


def is_open(sock: socket.socket) -> bool:
    """Whether the server still holds this connection (no EOF, no reset, nothing pending)."""
    sock.setblocking(False)
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return bool(data)


def open_idle_connections(port: int, count: int, settle: float
                          ) -> tuple[list[socket.socket], list[bool], float]:
    """Open ``count`` connections that send nothing; after ``settle`` seconds report which
    the server kept. Returns (sockets, kept flags, seconds until the last refused one was
    seen closed, measured from the last connect).

    A connection the server resets at once can fail in ``connect()`` itself (the reset
    beats the client's check of the handshake): it counts as refused, with no socket kept.
    """
    socks: list[socket.socket] = []
    reset_at_connect: list[int] = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        try:
            sock.connect((HOST, port))
        except ConnectionResetError:
            reset_at_connect.append(i)
        socks.append(sock)
    connected = time.monotonic()
    closed_seen = connected
    pending = set(range(count)) - set(reset_at_connect)
    end = connected + settle
    while time.monotonic() < end:
        for i in list(pending):
            if not is_open(socks[i]):
                pending.discard(i)
                closed_seen = time.monotonic()
        time.sleep(0.01)
    kept = [i not in reset_at_connect and is_open(s) for i, s in enumerate(socks)]
    return socks, kept, closed_seen - connected


def try_connect(port: int, timeout: float = 5.0) -> socket.socket | None:
    """A connection, or ``None`` if the server reset it before ``connect()`` returned."""
    try:
        return connect(port, timeout)
    except ConnectionResetError:
        return None
