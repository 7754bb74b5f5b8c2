"""The official PY SDK wired to a capturing transport (helpers for the XML-RPC edge tests).

The SDK (``Klarna_API`` 3.1.0) is run unmodified; only its ``ServerProxy`` gets a
``Transport`` whose ``request()`` records the exact body bytes the SDK would put on the wire
and returns a canned reply, so the tests check the gateway against what a real client sends.
"""
from __future__ import annotations

import functools
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import klarna


class CaptureTransport(xmlrpc.client.Transport):
    """Records every request body and answers with ``reply`` (unmarshalled as a 1-tuple)."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []
        self.handlers: list[str] = []
        self.reply: Any = "ok"

    def request(self, host: Any, handler: str, request_body: bytes, verbose: bool = False
                ) -> tuple[Any, ...]:
        self.handlers.append(handler)
        self.bodies.append(request_body)
        return (self.reply,)


@dataclass
class CapturedSdk:
    """A ready ``klarna.Klarna`` plus the transport that captures its requests."""

    client: klarna.Klarna
    transport: CaptureTransport
    secret: bytes
    extra: dict[str, Any] = field(default_factory=dict)

    def call(self, reply: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        """Run one SDK method with ``reply`` as the server's answer; return the body sent."""
        self.transport.reply = reply
        fn(*args, **kwargs)
        return self.transport.bodies[-1]


def make_sdk(*, eid: int | str = 1234, secret: str = "s3cr3t",
             uri: str = "http://127.0.0.1:1/") -> CapturedSdk:
    transport = CaptureTransport()
    config = klarna.Config(eid=eid, secret=secret, country="SE", language="SV",
                           currency="SEK", pcstorage="json", pcuri="/dev/null", uri=uri,
                           mode="beta")
    client = klarna.Klarna(config)
    client.ServerProxy = functools.partial(xmlrpc.client.ServerProxy, transport=transport)
    client.init()
    return CapturedSdk(client=client, transport=transport, secret=secret.encode("latin-1"))
