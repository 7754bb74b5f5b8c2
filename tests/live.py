"""A real gateway and sandbox on a reactor thread of their own, for synchronous property
tests (hypothesis drives plain ``def`` tests): raw HTTP over loopback sockets, so any bytes
can be sent as a path or a body, and every log event captured as it is emitted.
"""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.logger import eventAsJSON, formatEvent, globalLogPublisher

from gateway.config import Config
from gateway.testing.inprocess import LOOPBACK, KlarnaSandbox


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    @property
    def content_type(self) -> bytes:
        return self.headers.get(b"content-type", b"")


@dataclass
class LiveGateway:
    """``request()`` sends one HTTP/1.1 request (``Connection: close``) to a listener."""

    sandbox: KlarnaSandbox
    gateway: Any
    directory: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, directory: Path, config: Config | None = None, **options: Any
              ) -> LiveGateway:
        from gateway.service import Gateway, GatewayOptions

        sandbox = KlarnaSandbox.start(seed=0, config=config)
        try:
            gateway = Gateway((config or sandbox.config).with_base_url(sandbox.url),
                              GatewayOptions(listen=LOOPBACK, admin_listen=LOOPBACK,
                                             db_url=f"sqlite:///{directory}/gateway.db",
                                             **options), sandbox.runner.reactor)
            sandbox.runner.call(gateway.start)
        except BaseException:
            sandbox.stop()
            raise
        live = cls(sandbox, gateway, directory)
        globalLogPublisher.addObserver(live._observe)
        return live

    def stop(self) -> None:
        globalLogPublisher.removeObserver(self._observe)
        try:
            self.sandbox.runner.call(self.gateway.stop)
        finally:
            self.sandbox.stop()

    def _observe(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    def take_events(self) -> list[dict[str, Any]]:
        """The events captured since the last call (and forget them)."""
        with self._lock:
            taken, self.events[:] = list(self.events), []
        return taken

    def call(self, fn: Any, *args: Any) -> Any:
        return self.sandbox.runner.call(fn, *args)

    def address(self, listener: str) -> tuple[str, int]:
        port = self.gateway.legacy_port if listener == "legacy" else self.gateway.admin_port
        host = port.getHost()
        return host.host, host.port

    def request(self, listener: str, method: bytes, path: bytes, body: bytes = b"",
                headers: dict[bytes, bytes] | None = None, timeout: float = 20.0
                ) -> Response:
        head = [method + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1",
                b"Connection: close", b"Content-Length: %d" % len(body)]
        head += [k + b": " + v for k, v in (headers or {}).items()]
        raw = b""
        with socket.create_connection(self.address(listener), timeout=timeout) as sock:
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
            while chunk := sock.recv(65536):
                raw += chunk
        return parse_response(raw)


def parse_response(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise AssertionError(f"no HTTP response: {raw[:200]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding") == b"chunked":
        body = dechunk(body)
    return Response(int(parts[1]), headers, body)


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


def tracebacks(events: list[dict[str, Any]]) -> list[str]:
    """The failures (tracebacks) among ``events``, as text."""
    return [str(formatEvent(e)) + "\n" + e["log_failure"].getTraceback()
            for e in events if e.get("log_failure") is not None]


def event_text(event: dict[str, Any]) -> str:
    """An event as the text log shows it and as the JSON log writes it (every field)."""
    try:
        as_json = eventAsJSON(event)
    except Exception:  # noqa: BLE001 - an unserialisable field: its text still counts
        as_json = repr(event)
    return f"{formatEvent(event)}\n{as_json}"
