"""``klarna-gateway record --upstream URL``: a transparent recording proxy.

Stands in front of another XML-RPC endpoint (the legacy platform while it still answers):
every POST is forwarded unchanged (same body, same path and query, the headers that matter:
everything but hop-by-hop headers, ``Host``, ``Content-Length`` and ``Accept-Encoding`` so
the answer comes back uncompressed and readable), the upstream's answer is written back
unchanged (status, body, its headers but hop-by-hop ones), and both are recorded through the
same :class:`~gateway.replay.recording.RecordingWriter` ``serve --record`` uses (digest
masked there, on the writer thread). Headers are never recorded: they may carry credentials.

An upstream that does not answer gets the client a 502 (recorded as ``http-502``, with the
reason in the context); the proxy never invents an XML-RPC reply.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import treq
from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.web import server
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from gateway.edge.resource import DEFAULT_MAX_BODY_BYTES, Exchange
from gateway.replay.recording import RecordingWriter
from gateway.web import ListenerLimits, guarded_site

log = Logger()

#: Never forwarded in either direction (RFC 9110 §7.6.1 hop-by-hop, plus what the HTTP
#: client sets itself).
_HOP_BY_HOP: Final = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host", b"content-length",
})
_NOT_FORWARDED: Final = _HOP_BY_HOP | {b"accept-encoding"}
_MAX_REPLY_BYTES: Final = 64 << 20


def upstream_url(upstream: str, uri: bytes) -> str:
    """The upstream URL for a request URI: the upstream as given for ``/``, else the
    upstream with the request's path and query appended."""
    text = uri.decode("latin-1") or "/"
    if text == "/":
        return upstream
    return upstream.rstrip("/") + text


def forwarded_headers(request: server.Request) -> Headers:
    out = Headers()
    for name, values in request.requestHeaders.getAllRawHeaders():
        if name.lower() not in _NOT_FORWARDED:
            out.setRawHeaders(name, values)
    return out


class RecordingProxy(Resource):
    """POST → upstream, answer back unchanged, exchange recorded; other methods 405."""

    isLeaf = True

    def __init__(self, upstream: str, record: Callable[[Exchange], None], *,
                 http: HTTPClient | None = None, clock: Any = None, timeout: float = 60.0,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        super().__init__()
        self.upstream = upstream
        self._record = record
        self._http = http
        self._now: Callable[[], float] = clock.seconds if clock is not None else time.time
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        self.in_flight = 0

    def render(self, request: server.Request) -> bytes | int:
        if request.method != b"POST":
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"POST")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"405 Method Not Allowed: XML-RPC calls are POSTed\n"
        started = self._now()
        content = request.content
        body = b""
        if content is not None:
            content.seek(0)
            body = content.read(self._max_body_bytes + 1)
        self.in_flight += 1
        d = defer.ensureDeferred(self._forward(request, body, started))
        d.addErrback(lambda f: log.failure("recording proxy failed", f))
        d.addBoth(self._done)
        return server.NOT_DONE_YET

    def _done(self, _: Any) -> None:
        self.in_flight -= 1

    async def _forward(self, request: server.Request, body: bytes, started: float) -> None:
        status, headers, reply, context = 502, [], b"", {}
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        if len(body) > self._max_body_bytes:
            context = {"error": f"request body larger than {self._max_body_bytes} bytes"}
            status, reply = 413, b""
        else:
            try:
                status, headers, reply = await self._upstream(request, body)
            except Exception as e:  # noqa: BLE001 - any upstream failure is a 502
                context = {"error": f"upstream did not answer: {type(e).__name__}: {e}"[:300]}
                reply = b"502 Bad Gateway: the upstream did not answer\n"
                headers = [(b"Content-Type", [b"text/plain; charset=utf-8"])]
        if not gone and not request.finished:
            request.setResponseCode(status)
            for name, values in headers:
                request.responseHeaders.setRawHeaders(name, values)
            request.setHeader(b"Content-Length", str(len(reply)).encode("ascii"))
            request.write(reply)
            request.finish()
        peer = request.getClientAddress()
        self._record(Exchange(
            request=body if len(body) <= self._max_body_bytes else None, reply=reply,
            started=started, duration=self._now() - started,
            path=request.uri.decode("latin-1"), method=None, eid=None, fault_code=None,
            client_gone=bool(gone), client=getattr(peer, "host", None), context=context,
            http_status=status))

    async def _upstream(self, request: server.Request, body: bytes
                        ) -> tuple[int, list[tuple[bytes, list[bytes]]], bytes]:
        http: Any = self._http or treq
        response = await http.request(
            "POST", upstream_url(self.upstream, request.uri), data=body,
            headers=forwarded_headers(request), timeout=self._timeout)
        reply = await response.content()
        if len(reply) > _MAX_REPLY_BYTES:
            raise ValueError(f"upstream reply larger than {_MAX_REPLY_BYTES} bytes")
        headers = [(name, values) for name, values in response.headers.getAllRawHeaders()
                   if name.lower() not in _HOP_BY_HOP]
        return response.code, headers, reply


class ProxyService:
    """``klarna-gateway record``: the proxy listening, its writer running; ``stop()`` stops
    accepting, lets forwarded calls finish (up to ``drain_seconds``) and writes everything."""

    def __init__(self, reactor: Any, upstream: str, listen: str, out: str, *,
                 max_bytes: int, limits: Any = None, timeout: float = 60.0,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.reactor = reactor
        self.listen = listen
        self.writer = RecordingWriter(out, max_bytes=max_bytes, source="proxy",
                                      upstream=upstream)
        self.resource = RecordingProxy(upstream, self.writer.submit, clock=reactor,
                                       timeout=timeout, max_body_bytes=max_body_bytes)
        self.limits = limits
        self.port: Any = None

    async def start(self) -> None:
        self.writer.start()
        site = guarded_site(self.resource, self.limits or ListenerLimits(),
                            reactor=self.reactor)
        self.port = await serverFromString(self.reactor, self.listen).listen(site)

    @property
    def url(self) -> str:
        host = self.port.getHost()
        addr = "127.0.0.1" if host.host in ("0.0.0.0", "::", "") else host.host
        return f"http://{addr}:{host.port}/"

    async def stop(self, drain_seconds: float = 30.0) -> None:
        if self.port is not None:
            await self.port.stopListening()
            self.port = None
        deadline = self.reactor.seconds() + drain_seconds
        while self.resource.in_flight and self.reactor.seconds() < deadline:
            await task.deferLater(self.reactor, 0.05, lambda: None)
        await self.writer.close(self.reactor)
