"""Per-connection time bounds and the refusal path of a bounded listener.

``HTTPChannel.timeOut`` is an *idle* timeout, reset by every byte, so a client dripping one
byte every few seconds holds its connection forever. :class:`GuardedChannel` keeps Twisted's
idle timeout and adds a total *deadline* per request, started by the request's first byte
and stopped by its last body byte. It also owns the refusal path: write the refusal,
half-close, drain and discard for a bounded time, abort.

Why not ``twisted.protocols.policies``: ``TimeoutFactory`` wraps each protocol in a
``ProtocolWrapper``, which hides the TCP transport from ``HTTPChannel`` (no
``TCP_NODELAY``, no producer registration, no half-close) and bypasses
``HTTPFactory.buildProtocol`` (the reactor and timeout it sets); ``TimeoutMixin`` is an
idle timeout (already what ``HTTPChannel`` uses).

The channel is a plain ``HTTPChannel``, not Twisted's ALPN-switching wrapper: a bounded
listener speaks HTTP/1.x only, so no HTTP/2 connection escapes the bounds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server

from gateway.web.limits import ListenerLimits
from gateway.web.refusal import RefusalReason
from gateway.web.stats import ListenerStats

if TYPE_CHECKING:
    from gateway.web.site import GuardedSite

__all__ = ["GuardedChannel"]

log = Logger(namespace="gateway.web")


class GuardedChannel(http.HTTPChannel):
    """An ``HTTPChannel`` with a total per-request deadline and an early-refusal path.

    Timers (all on the site's reactor, via ``callLater``):

    * Twisted's idle timeout (``timeOut`` = ``idle_timeout_seconds``) runs while no request is
      being handled and is reset by every byte. Fired with no request under way it closes
      the connection silently; fired half-way through a request it refuses with
      :attr:`RefusalReason.TIMEOUT`.
    * The deadline (``request_deadline_seconds``) starts at the first byte of a request and
      is cancelled when its last body byte arrives; it is never reset. When it fires the
      request is refused with :attr:`RefusalReason.TIMEOUT`.
    * After a refusal, the linger timer (``refusal_linger_seconds``) aborts the connection
      if the client has not closed it by then.

    After a refusal every byte the client still sends is discarded unparsed, up to
    ``refusal_drain_bytes``; past that the connection is aborted.
    """

    site: GuardedSite  # set by Site.buildProtocol before the connection is made

    def __init__(self) -> None:
        super().__init__()
        self._refused = False
        self._counted = False
        self._deadline: IDelayedCall | None = None
        self._linger: IDelayedCall | None = None
        self._drained = 0

    # --- what the request and the tests use ---

    @property
    def limits(self) -> ListenerLimits:
        return self.site.limits

    @property
    def stats(self) -> ListenerStats:
        return self.site.stats

    @property
    def refused(self) -> bool:
        """Whether this connection has been refused (and is closing)."""
        return self._refused

    def admit(self, request: server.Request, length: int | None) -> RefusalReason | None:
        """Decide, from the request head alone, whether its body may be read.

        Called from ``request.gotLength``, i.e. right after the last header line. Fills in
        the request line fields ``authorize`` needs (Twisted sets them only once the body is
        in), then checks ``authorize`` (401 before 413, so an unauthenticated client learns
        nothing about the limits) and the declared length. A chunked body (``length`` is
        ``None``) is checked chunk by chunk in :meth:`GuardedRequest.handleContentChunk`.
        """
        self._fill_request_line(request)
        authorize = self.site.authorize
        if authorize is not None:
            try:
                allowed = bool(authorize(request))
            except Exception:  # noqa: BLE001 - fail closed; a bug must not open the door
                log.failure("authorize hook raised; refusing {method} {path}",
                            method=request.method, path=request.path)
                allowed = False
            if not allowed:
                return RefusalReason.UNAUTHORIZED
        if length is not None and length > self.limits.max_body_bytes:
            return RefusalReason.TOO_LARGE
        return None

    def refuse(self, reason: RefusalReason, request: server.Request | None) -> None:
        """Answer with the listener's refusal for ``reason`` and close the connection.

        The refusal is written straight to the transport: the request never reaches the
        resource. ``Expect`` is removed from the request first, because ``HTTPChannel``
        sends ``100 Continue`` right after ``gotLength`` returns: a refused client must never
        be invited to send its body.
        """
        if self._refused or self.transport is None:
            return
        self._refused = True
        self._cancel_deadline()
        self.setTimeout(None)
        self.persistent = False
        self.clearLineBuffer()  # the rest of this read is never parsed
        if request is not None:
            request.requestHeaders.removeHeader(b"Expect")
        self.stats.refused_requests[reason] += 1
        log.info("refused request ({reason}) from {peer}: {method} {path}",
                 reason=reason.name, peer=_peer(self.transport),
                 method=_text(getattr(request, "method", None)),
                 path=_text(getattr(request, "path", None)))
        self.transport.write(self.site.refusal_bytes(reason, request))
        self._close_after_refusal()

    # --- HTTPChannel overrides ---

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        self.site.connection_opened()
        self._counted = True
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        self._cancel_deadline()
        if self._linger is not None:
            if self._linger.active():
                self._linger.cancel()
            self._linger = None
        if self._counted:
            self._counted = False
            self.site.connection_closed()
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        if self._refused:
            self._discard(data)
            return
        if self._deadline is None and not self._handlingRequest:
            # The first byte of a request (pipelined bytes buffered while a request was being
            # handled come back through here when it is done, and start theirs then).
            self._deadline = self.callLater(self.limits.request_deadline_seconds,
                                            self._deadline_expired)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 - Twisted API
        if self._refused:
            return
        super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        if self._refused:
            self._discard(data)
            return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:  # noqa: N802 - Twisted API
        if self._refused:
            return  # the request was refused; it must not reach the resource
        self._cancel_deadline()
        super().allContentReceived()

    def timeoutConnection(self) -> None:  # noqa: N802 - Twisted API
        if self._refused:
            return
        if self._deadline is not None:
            # A request stalled half-way: answer it rather than vanish.
            self.refuse(RefusalReason.TIMEOUT, self._request_in_progress())
            return
        super().timeoutConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:  # noqa: N802 - Twisted API
        # The chunked decoder may still be chewing on the read that caused a refusal; a
        # "400 Bad Request" must not follow the refusal already written.
        if self._refused:
            return
        self._cancel_deadline()
        super()._respondToBadRequestAndDisconnect()

    # --- internals ---

    def _fill_request_line(self, request: server.Request) -> None:
        """Set ``method``/``uri``/``path``/``clientproto`` from the parsed request line.

        ``HTTPChannel`` keeps them in ``_command``/``_path``/``_version`` until the body is
        complete; ``requestReceived`` later sets the very same values again.
        """
        command = getattr(self, "_command", None)
        uri = getattr(self, "_path", None)
        version = getattr(self, "_version", None)
        if command is None or uri is None or version is None:
            return
        request.method, request.uri, request.clientproto = command, uri, version
        request.path = uri.split(b"?", 1)[0]

    def _request_in_progress(self) -> server.Request | None:
        if self.requests and not self._handlingRequest:
            request: server.Request = self.requests[-1]
            self._fill_request_line(request)
            return request
        return None

    def _deadline_expired(self) -> None:
        self._deadline = None
        if not self._refused:
            self.refuse(RefusalReason.TIMEOUT, self._request_in_progress())

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _close_after_refusal(self) -> None:
        """FIN after the refusal, drain and discard (within the linger time and the drain
        allowance), then abort.

        Without the drain, closing a socket with unread request bytes makes the kernel send
        a reset, and a client still writing its body may never read the refusal.
        """
        transport: Any = self.transport
        unregister = getattr(transport, "unregisterProducer", None)
        if unregister is not None:
            unregister()  # the channel was its producer; a closing transport needs none
        linger = self.limits.refusal_linger_seconds
        half_close = getattr(transport, "loseWriteConnection", None)
        if linger > 0 and half_close is not None:
            half_close()
            resume = getattr(transport, "resumeProducing", None)
            if resume is not None:
                resume()  # keep reading (and discarding) even if reads had been paused
            self._linger = self.callLater(linger, self._abort)
        else:
            transport.loseConnection()
            self._linger = self.callLater(self.abortTimeout or 1, self._abort)

    def _discard(self, data: bytes) -> None:
        """Throw away bytes after a refusal; abort once the drain allowance is spent."""
        self._drained += len(data)
        self.stats.discarded_bytes += len(data)
        if self._drained > self.limits.refusal_drain_bytes and self._linger is not None:
            if self._linger.active():
                self._linger.cancel()
            self._abort()

    def _abort(self) -> None:
        self._linger = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()


def _peer(transport: Any) -> str:
    try:
        address = transport.getPeer()
    except Exception:  # noqa: BLE001 - only for the log line
        return "?"
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "-" if value is None else str(value)
