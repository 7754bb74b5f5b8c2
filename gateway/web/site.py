"""A ``twisted.web`` Site whose listener is bounded in time, connections and body size.

``twisted.web`` on its own gives a client a lot for free: ``HTTPChannel.timeOut`` is an
*idle* timeout, reset by every byte, so a client dripping one byte every few seconds holds
its connection forever; there is no cap on connections; and ``Request`` buffers the whole
body (to a temp file above 100 kB) before any resource, and so any authentication, runs.
This module closes those three holes with three small subclasses:

* :class:`GuardedChannel` (an ``HTTPChannel``) keeps Twisted's idle timeout and adds a total
  *deadline* per request, started by the request's first byte and stopped by its last body
  byte. It also owns the refusal path: write the refusal, half-close, drain and discard for
  a bounded time, abort.
* :class:`GuardedRequest` (a ``server.Request``) runs ``authorize`` and the declared-length
  check in ``gotLength``, which Twisted calls the moment the headers are complete, before it
  opens the body buffer and before it sends ``100 Continue``; it also keeps a running total
  of the body so a chunked body is cut off as soon as it passes the limit.
* :class:`GuardedSite` (a ``server.Site``) counts open connections and refuses those over
  the cap in ``buildProtocol``, before a channel exists.

Why not ``twisted.protocols.policies``: ``LimitTotalConnectionsFactory`` and
``TimeoutFactory`` wrap each protocol in a ``ProtocolWrapper``, which hides the TCP
transport from ``HTTPChannel`` (no ``TCP_NODELAY``, no producer registration, no
half-close) and bypasses ``HTTPFactory.buildProtocol`` (the reactor and timeout it sets);
``TimeoutMixin`` is an idle timeout (already what ``HTTPChannel`` uses). The cap here follows
``LimitTotalConnectionsFactory``'s idea (decide in ``buildProtocol``) without the wrapper.

The channel is a plain ``HTTPChannel``, not Twisted's ALPN-switching wrapper: a guarded
listener speaks HTTP/1.x only, so no HTTP/2 connection escapes the bounds.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import IResource

from gateway.web.limits import ListenerLimits
from gateway.web.refusal import (
    Authorize,
    RefusalFactory,
    RefusalReason,
    default_refusal,
)

__all__ = [
    "GuardedChannel",
    "GuardedRequest",
    "GuardedSite",
    "ListenerStats",
    "guarded_site",
]

log = Logger(namespace="gateway.web")

#: ``(timestamp, request) -> str``: one access log line (Twisted's ``logFormatter``).
LogFormatter = Callable[[str, Any], str]

#: Seconds between two "connections refused over the cap" log lines, so a flood of
#: connections does not become a flood of log lines.
CAP_LOG_INTERVAL_SECONDS = 10.0


@dataclass
class ListenerStats:
    """Counters of one guarded listener, for metrics and tests.

    Attributes:
        open_connections: connections currently open (what the cap is compared with).
        accepted_connections: connections accepted under the cap since the site was built.
        refused_connections: connections closed at once because the cap was reached.
        refused_requests: refusals written, per reason.
        body_bytes_buffered: request-body bytes handed to ``request.content`` (what the
            listener stored). A refused request adds nothing beyond ``max_body_bytes``.
        discarded_bytes: bytes read and thrown away after a refusal (the lingering drain).
    """

    open_connections: int = 0
    accepted_connections: int = 0
    refused_connections: int = 0
    refused_requests: Counter[RefusalReason] = field(default_factory=Counter)
    body_bytes_buffered: int = 0
    discarded_bytes: int = 0


class GuardedRequest(server.Request):
    """A ``Request`` that is admitted (authorized, size-checked) before its body is read.

    On a :class:`GuardedChannel` it asks the channel to admit it in ``gotLength`` and counts
    its body in ``handleContentChunk``; a refused request never reaches ``requestReceived``,
    so no resource sees it. On any other channel it behaves like ``server.Request``.
    """

    _guard_refused: bool = False
    _guard_body_bytes: int = 0

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted API
        channel = self.channel
        if isinstance(channel, GuardedChannel):
            reason = channel.admit(self, length)
            if reason is not None:
                self._guard_refused = True
                channel.refuse(reason, self)
                return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        if self._guard_refused:
            return
        channel = self.channel
        if isinstance(channel, GuardedChannel):
            self._guard_body_bytes += len(data)
            if self._guard_body_bytes > channel.limits.max_body_bytes:
                self._guard_refused = True
                channel.refuse(RefusalReason.TOO_LARGE, self)
                return
            channel.stats.body_bytes_buffered += len(data)
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        if self._guard_refused:
            return  # already answered; the connection is closing
        super().requestReceived(command, path, version)


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


class _OverCapacity(Protocol):
    """Stands in for a channel over the cap: aborts the connection as soon as it is made.

    Aborting (a reset) rather than closing gracefully: the client learns at once that it was
    turned away, and the server keeps no ``TIME_WAIT`` state for it. A protocol rather than
    ``None`` from ``buildProtocol`` so the cap also works under wrapping factories (TLS).
    """

    def connectionMade(self) -> None:  # noqa: N802 - Twisted API
        transport: Any = self.transport
        transport.abortConnection()


class GuardedSite(server.Site):
    """A ``server.Site`` bounded by :class:`ListenerLimits`; build it with :func:`guarded_site`.

    Attributes:
        limits: the listener's bounds.
        authorize: the pre-body authorization hook, or ``None`` (every request admitted).
        refusal: the listener's refusal factory, or ``None`` (:func:`default_refusal`).
        stats: the listener's :class:`ListenerStats`.
    """

    protocol = GuardedChannel  # type: ignore[assignment]
    #: No "Starting factory <…GuardedSite object at 0x…>" lines: the gateway logs what
    #: listens where itself.
    noisy = False

    def __init__(
        self,
        resource: IResource,
        limits: ListenerLimits,
        *,
        authorize: Authorize | None = None,
        refusal: RefusalFactory | None = None,
        request_class: type[server.Request] = GuardedRequest,
        parse_form_bodies: bool = False,
        reactor: IReactorTime | None = None,
        log_formatter: LogFormatter | None = None,
        access_log: bool = True,
    ) -> None:
        factory_kwargs: dict[str, Any] = {"timeout": limits.idle_timeout_seconds}
        if reactor is not None:
            factory_kwargs["reactor"] = reactor
        if log_formatter is not None:
            factory_kwargs["logFormatter"] = log_formatter
        super().__init__(resource, requestFactory=_guarded_request_class(request_class),
                         parsePOSTFormSubmission=parse_form_bodies, **factory_kwargs)
        self.limits = limits
        self.authorize = authorize
        self.refusal = refusal
        self.access_log = access_log
        self.stats = ListenerStats()
        self._cap_log_at: float | None = None
        self._cap_refused_since_log = 0

    def log(self, request: Any) -> None:
        """Twisted's access line, unless the listener writes its own (``access_log``)."""
        if self.access_log:
            super().log(request)

    def buildProtocol(self, addr: IAddress | None) -> Any:  # noqa: N802 - Twisted API
        if self.stats.open_connections >= self.limits.max_connections:
            self._note_refused_connection()
            refuser = _OverCapacity()
            refuser.factory = self
            return refuser
        return super().buildProtocol(addr)

    def connection_opened(self) -> None:
        self.stats.open_connections += 1
        self.stats.accepted_connections += 1

    def connection_closed(self) -> None:
        self.stats.open_connections -= 1

    def refusal_bytes(self, reason: RefusalReason, request: server.Request | None) -> bytes:
        """The encoded refusal for ``reason``: the listener's own, else the default.

        A refusal factory that raises is logged and replaced by the default, so a bug in a
        listener's error page never leaves a client without an answer.
        """
        refusal = None
        if self.refusal is not None:
            try:
                refusal = self.refusal(reason, request)
            except Exception:  # noqa: BLE001 - fall back to the default refusal
                log.failure("refusal factory raised for {reason}", reason=reason.name)
        if refusal is None:
            refusal = default_refusal(reason, request)
        return refusal.encode()

    def _note_refused_connection(self) -> None:
        self.stats.refused_connections += 1
        self._cap_refused_since_log += 1
        now = self.reactor.seconds()
        if self._cap_log_at is None or now - self._cap_log_at >= CAP_LOG_INTERVAL_SECONDS:
            log.warn("listener at its cap of {cap} open connections: refused {count} "
                     "connection(s) since the last report ({total} in all)",
                     cap=self.limits.max_connections, count=self._cap_refused_since_log,
                     total=self.stats.refused_connections)
            self._cap_log_at = now
            self._cap_refused_since_log = 0


def _guarded_request_class(request_class: type[server.Request]) -> type[server.Request]:
    """``request_class`` itself if it is a :class:`GuardedRequest`, else one mixed with it."""
    if issubclass(request_class, GuardedRequest):
        return request_class
    if not issubclass(request_class, server.Request):
        raise TypeError(f"request_class must be a twisted.web.server.Request subclass, "
                        f"got {request_class!r}")
    return type(f"Guarded{request_class.__name__}", (GuardedRequest, request_class), {})


def guarded_site(
    resource: IResource,
    limits: ListenerLimits | None = None,
    *,
    authorize: Authorize | None = None,
    refusal: RefusalFactory | None = None,
    request_class: type[server.Request] = GuardedRequest,
    parse_form_bodies: bool = False,
    reactor: IReactorTime | None = None,
    log_formatter: LogFormatter | None = None,
    access_log: bool = True,
) -> GuardedSite:
    """A ``Site`` serving ``resource`` within ``limits``; listen on it as on any ``Site``.

    Args:
        resource: the root resource, exactly as for ``server.Site``.
        limits: the listener's bounds; production defaults when omitted.
        authorize: ``authorize(request) -> bool``, checked once the headers are complete and
            before any body byte is read (see :data:`~gateway.web.Authorize` for what the
            request holds then). ``None`` admits every request.
        refusal: ``refusal(reason, request) -> Refusal | None``, the answer per
            :class:`RefusalReason`; ``None`` (or a ``None`` answer) uses
            :func:`~gateway.web.default_refusal`.
        request_class: the request class; a ``server.Request`` subclass that is not a
            :class:`GuardedRequest` is mixed with it.
        parse_form_bodies: Twisted's ``parsePOSTFormSubmission``. Off by default: none of
            these listeners takes form posts, and parsing copies the body into
            ``request.args``.
        reactor: the reactor for timeouts (tests may pass a ``Clock``); the global one when
            omitted.
        log_formatter: ``(timestamp, request) -> str``, the access log line (Twisted's
            ``logFormatter``: e.g. to keep credentials a query may carry out of the log);
            Twisted's combined log format when omitted.
        access_log: False when the resource writes its own access line (the legacy
            listener's names the call, its journal entry and its outcome).
    """
    limits = limits if limits is not None else ListenerLimits()
    _warn_if_fd_limit_is_low(limits)
    return GuardedSite(resource, limits, authorize=authorize, refusal=refusal,
                       request_class=request_class, parse_form_bodies=parse_form_bodies,
                       reactor=reactor, log_formatter=log_formatter, access_log=access_log)


def _warn_if_fd_limit_is_low(limits: ListenerLimits) -> None:
    """The cap means nothing if the process runs out of descriptors first; say so."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and limits.max_connections >= soft:
        log.warn("max_connections={cap} is not below the open-file limit ({soft}): the "
                 "process may run out of descriptors before the cap refuses anything",
                 cap=limits.max_connections, soft=soft)


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
