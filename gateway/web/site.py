"""A ``twisted.web`` Site whose listener is bounded in time, connections and body size.

``twisted.web`` on its own gives a client a lot for free: an idle timeout only, no cap on
connections, and the whole body buffered before any resource (and so any authentication)
runs. :func:`guarded_site` builds a :class:`GuardedSite` that closes those three holes with
the parts of this package:

* :class:`GuardedSite` (this module, a ``server.Site``) counts open connections and refuses
  those over the cap in ``buildProtocol``, before a channel exists;
* :class:`~gateway.web.channel.GuardedChannel` (an ``HTTPChannel``): the per-request
  deadline beside Twisted's idle timeout, and the refusal path;
* :class:`~gateway.web.admission.GuardedRequest` (a ``server.Request``): authorization and
  the body limit before a body byte is buffered;
* :class:`~gateway.web.stats.ListenerStats`: what the listener counted.

Why not ``twisted.protocols.policies.LimitTotalConnectionsFactory``: it wraps each protocol
in a ``ProtocolWrapper`` (see :mod:`gateway.web.channel` for what that costs). The cap here
follows its idea (decide in ``buildProtocol``) without the wrapper.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import IResource

from gateway.web.admission import GuardedRequest
from gateway.web.channel import GuardedChannel
from gateway.web.limits import ListenerLimits
from gateway.web.refusal import (
    Authorize,
    RefusalFactory,
    RefusalReason,
    default_refusal,
)
from gateway.web.stats import ListenerStats

__all__ = [
    "CAP_LOG_INTERVAL_SECONDS",
    "GuardedSite",
    "LogFormatter",
    "guarded_site",
]

log = Logger(namespace="gateway.web")

#: ``(timestamp, request) -> str``: one access log line (Twisted's ``logFormatter``).
LogFormatter = Callable[[str, Any], str]

#: Seconds between two "connections refused over the cap" log lines, so a flood of
#: connections does not become a flood of log lines.
CAP_LOG_INTERVAL_SECONDS = 10.0


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
