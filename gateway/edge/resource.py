"""The XML-RPC endpoint: a ``twisted.web`` resource that turns each HTTP POST into one
``dispatch(method, params, client)`` call (:data:`Dispatch`; the gateway's is
:class:`gateway.edge.dispatch.LegacyDispatch`) and writes its reply.

This is the one place where failures become ``<fault>`` replies
(docs/legacy-protocol.md#where-faults-are-made):

* :class:`~gateway.errors.GatewayError` → its code and ``fault_string``;
* a leaked ``twisted.internet.defer.CancelledError`` (an upstream timeout nobody mapped) →
  9119 ``timeout``;
* anything else → logged with its traceback, answered -32603 ``internal_error: internal
  error``, never Python text. A reply value that is not XML-RPC-safe counts as "anything
  else" (``encode_response`` raises ``TypeError``).

Why not ``twisted.web.xmlrpc.XMLRPC``: it parses with the unhardened stdlib parser, turns
doubles into floats and cancels the handler's Deferred when the client disconnects. A legacy
money call (``activate``, ``credit_part``) must run to completion and be recorded even if the
client went away; its retry then finds the recorded outcome.

Bodies are bounded twice: :func:`make_site` builds a guarded ``Site`` (``gateway.web``) that
refuses an oversized declared ``Content-Length`` (or an oversized chunked body) before
buffering it, and :class:`LegacyResource` re-checks what it was handed, so it stays safe
under a plain ``Site`` too.
"""
from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from gateway.boundary import client_of
from gateway.errors import (
    FaultCode,
    GatewayError,
    ParseError,
    UpstreamUnavailableError,
)
from gateway.web import ListenerLimits, Refusal, RefusalReason, guarded_site
from gateway.wire.digest import redact
from gateway.wire.encode import encode_fault, encode_response
from gateway.wire.parse import DEFAULT_MAX_DEPTH, parse_method_call

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Reply",
    "CallRecord",
    "Dispatch",
    "Exchange",
    "LegacyResource",
    "make_site",
]

DEFAULT_MAX_BODY_BYTES: Final = 1 << 20
CONTENT_TYPE: Final = b"text/xml; charset=ISO-8859-1"
INTERNAL_ERROR_TEXT: Final = f"{FaultCode.INTERNAL_ERROR.symbol}: internal error"

#: ``dispatch(method, params, client)``: runs one legacy call (``client``: the peer's IP
#: address, ``None`` on a UNIX socket) and returns its XML-RPC-safe result, or a
#: :class:`Reply` wrapping it when its delivery must be recorded.
Dispatch = Callable[[str, list[Any], str | None], Awaitable[Any]]

#: The access line of every call, and the edge's own errors. The namespaces keep the names
#: they had before the module moved: operators filter and alert on them.
_log = Logger(namespace="gateway.legacy.access")
_errors = Logger(namespace="gateway.legacy.resource")


@dataclass(frozen=True)
class CallRecord:
    """One finished XML-RPC call, for the access log and the optional ``on_call`` hook.

    ``fault_code`` is ``None`` for a successful reply. ``client_gone`` is true when the
    client disconnected before the reply could be written (the call still completed).
    """

    method: str | None
    eid: int | None
    fault_code: int | None
    duration: float
    client_gone: bool = False
    #: What the call was about (journal_id, rno, invno, correlation_id, replayed).
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return "ok" if self.fault_code is None else str(self.fault_code)


@dataclass(frozen=True)
class Exchange:
    """One legacy exchange as it crossed the wire, for the optional ``on_exchange`` hook
    (``serve --record``): the request body as received (``None`` when it was over the size
    limit and never read), the reply payload as written (or as it would have been, when the
    client was gone), when it started (``clock`` seconds) and how long it took, and what the
    call was about. It carries the digest as sent: the hook's consumer must mask it.
    """

    request: bytes | None
    reply: bytes
    started: float
    duration: float
    path: str
    method: str | None
    eid: int | None
    fault_code: int | None
    client_gone: bool = False
    client: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    #: The HTTP status written (a recording proxy may pass on an upstream's 4xx/5xx).
    http_status: int = 200

    @property
    def outcome(self) -> str:
        return "ok" if self.fault_code is None else str(self.fault_code)


def _too_large_fault(limit: int) -> bytes:
    error = ParseError(f"request body larger than {limit} bytes")
    return encode_fault(error.fault_code, error.fault_string)


class LegacyResource(Resource):
    """POST on any path is an XML-RPC call; every other HTTP method gets 405.

    Args:
        dispatch: ``async (method, params, client) -> result`` (:data:`Dispatch`); raises
            ``GatewayError`` for faults.
        max_body_bytes: bodies above this are answered with a parse_error fault.
        max_depth: XML element nesting limit passed to ``parse_method_call``.
        on_call: optional hook called with a :class:`CallRecord` after each call (metrics).
        on_exchange: optional hook called with an :class:`Exchange` (bytes in and out) after
            each call (the recorder); it runs on the reactor thread and must return at once.
        clock: time source for durations (``reactor`` in production); ``time.monotonic``
            when omitted.
        eid_of: optional ``(method, params) -> eid | None`` for the access log (must not
            raise).
    """

    isLeaf = True
    allowedMethods = (b"POST",)

    def __init__(
        self,
        dispatch: Dispatch,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        on_call: Callable[[CallRecord], None] | None = None,
        clock: IReactorTime | None = None,
        eid_of: Callable[[str, list[Any]], int | None] | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
    ) -> None:
        super().__init__()
        self._dispatch = dispatch
        self._eid_of = eid_of
        self._in_flight = 0
        self._max_body_bytes = max_body_bytes
        self._max_depth = max_depth
        self._on_call = on_call
        self._on_exchange = on_exchange
        self._now: Callable[[], float] = clock.seconds if clock is not None else time.monotonic

    def render(self, request: server.Request) -> bytes | int:
        """POST is XML-RPC; anything else is 405 with ``Allow: POST``.

        Overridden (rather than relying on ``Resource.render``) because the default turns
        HEAD into a GET lookup and renders its 405 page with a deprecated helper.
        """
        if request.method == b"POST":
            return self.render_POST(request)
        request.setResponseCode(405)
        request.setHeader(b"Allow", b"POST")
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"405 Method Not Allowed: XML-RPC calls are POSTed\n"

    def render_POST(self, request: server.Request) -> int:  # noqa: N802 - Twisted API
        started = self._now()
        state = _RequestState()
        request.notifyFinish().addErrback(state.client_gone)
        body = self._read_body(request)
        self._in_flight += 1
        d = defer.ensureDeferred(self._answer(request, body, started, state))
        # _answer handles its own errors; this only guards against a bug in the guard.
        d.addErrback(lambda f: _errors.failure("legacy reply failed", f))
        d.addBoth(self._done)
        return server.NOT_DONE_YET

    def _done(self, _: Any) -> None:
        self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        """Calls being answered now (read, dispatched, reply not yet written)."""
        return self._in_flight

    async def drain(self, clock: Any, timeout: float) -> int:
        """Wait until no call is in flight, at most ``timeout`` seconds; the number left.

        Why: on shutdown a money call that has started should finish and answer rather than
        be cut off; its journal makes a cut-off call recoverable, but finishing is kinder.
        """
        deadline = clock.seconds() + timeout
        while self._in_flight and clock.seconds() < deadline:
            await task.deferLater(clock, 0.05, lambda: None)
        return self._in_flight

    def _read_body(self, request: server.Request) -> bytes | None:
        """The request body, or ``None`` when it exceeds the limit."""
        declared = request.getHeader(b"content-length")
        if declared is not None:
            try:
                if int(declared) > self._max_body_bytes:
                    return None
            except ValueError:
                return None
        content = request.content
        if content is None:
            return b""
        content.seek(0)
        body = content.read(self._max_body_bytes + 1)
        if len(body) > self._max_body_bytes:
            return None
        return body

    async def _answer(
        self, request: server.Request, body: bytes | None, started: float,
        state: _RequestState,
    ) -> None:
        """Compute the reply, write it (recording whether it was delivered), report it."""
        outcome = await self._outcome(request, body)
        self._deliver(request, state, outcome)
        self._report(request, body, started, state, outcome)

    async def _outcome(self, request: server.Request, body: bytes | None) -> _Outcome:
        """Parse, dispatch and encode: every failure becomes a fault payload, never a
        traceback."""
        out = _Outcome()
        try:
            if body is None:
                raise ParseError(f"request body larger than {self._max_body_bytes} bytes")
            out.method, params = parse_method_call(body, max_depth=self._max_depth)
            out.eid = self._eid_of(out.method, params) if self._eid_of is not None else None
            result = await defer.ensureDeferred(
                self._dispatch(out.method, params, client_of(request)))
            if isinstance(result, Reply):
                out.delivered, out.undelivered = result.delivered, result.undelivered
                out.context = dict(result.context)
                result = result.value
            out.payload = encode_response(result)
        except GatewayError as error:
            out.delivered, out.undelivered = error.delivered, error.undelivered
            out.context = dict(error.context)
            if error.correlation_id:
                out.context["correlation_id"] = error.correlation_id
            out.fault(error, debug=True)
        except defer.CancelledError:
            out.fault(UpstreamUnavailableError("upstream timeout"))
        except Exception:  # noqa: BLE001 - the one place that turns bugs into a fault
            _errors.failure("internal error in legacy call {method} (eid {eid})",
                            method=out.method, eid=out.eid)
            out.fault_code = int(FaultCode.INTERNAL_ERROR)
            out.payload = encode_fault(out.fault_code, INTERNAL_ERROR_TEXT)
        return out

    def _deliver(self, request: server.Request, state: _RequestState,
                 out: _Outcome) -> None:
        """Write the reply; record it delivered once the connection took it, undelivered
        when the client had gone (its identical retry then gets this reply at once)."""
        if state.gone or request.finished:
            if out.undelivered is not None:  # the client went away before its reply
                _record_delivery(out.undelivered, out.method)
            return
        # A close the reactor has not read yet happened before this write: the reply
        # cannot reach the client, so it must stay undelivered (bound to its retry).
        hung_up = peer_hung_up(request)
        written = request.notifyFinish()
        try:
            _write_reply(request, out.payload)
        except Exception:  # noqa: BLE001 - the connection died under us; call is done
            state.gone = True
            _errors.failure("could not write legacy reply for {method}", method=out.method)
        delivered, undelivered = out.delivered, out.undelivered
        if delivered is not None and hung_up:  # the reply went nowhere: the retry gets it
            written.addErrback(lambda _f: None)
            if undelivered is not None:
                _record_delivery(undelivered, out.method)
            return
        if delivered is not None:
            # Fires when the response was handed to the connection, errs if the connection
            # was lost first: only then does the reply count as delivered.
            written.addCallbacks(
                lambda _: _record_delivery(delivered, out.method),
                lambda _f: _record_delivery(undelivered, out.method) if undelivered else None)

    def _report(self, request: server.Request, body: bytes | None, started: float,
                state: _RequestState, out: _Outcome) -> None:
        """The access line with the call's context, then the metrics and recording hooks."""
        context = out.context
        record = CallRecord(method=out.method, eid=out.eid, fault_code=out.fault_code,
                            duration=self._now() - started, client_gone=state.gone,
                            context=context)
        _log.info(
            "legacy call method={method} eid={eid} outcome={outcome} "
            "duration_ms={duration_ms:.1f} journal_id={journal_id} rno={rno} invno={invno} "
            "correlation_id={correlation_id}{gone}",
            method=redact(record.method or "-"),
            eid=record.eid if record.eid is not None else "-",
            outcome=record.outcome, duration_ms=round(record.duration * 1000, 1),
            journal_id=context.get("journal_id"), rno=context.get("rno"),
            invno=context.get("invno"), correlation_id=context.get("correlation_id"),
            client=client_of(request), gone=" client_gone" if record.client_gone else "",
        )
        if self._on_call is not None:
            try:
                self._on_call(record)
            except Exception:  # noqa: BLE001 - a metrics bug must not break replies
                _errors.failure("on_call hook failed")
        if self._on_exchange is not None:
            try:
                self._on_exchange(Exchange(
                    request=body, reply=out.payload, started=started,
                    duration=record.duration, path=request.path.decode("latin-1"),
                    method=out.method, eid=out.eid, fault_code=out.fault_code,
                    client_gone=state.gone, client=client_of(request), context=context))
            except Exception:  # noqa: BLE001 - a recorder bug must not break replies
                _errors.failure("on_exchange hook failed")


@dataclass
class _Outcome:
    """What one request came to: the reply payload and what the access line needs."""

    method: str | None = None
    eid: int | None = None
    fault_code: int | None = None
    payload: bytes = b""
    delivered: Callable[[], Awaitable[None]] | None = None
    undelivered: Callable[[], Awaitable[None]] | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def fault(self, error: GatewayError, *, debug: bool = False) -> None:
        self.fault_code = int(error.fault_code)
        if debug and error.debug_context:
            _errors.debug("fault {code} on {method}: {context}", code=self.fault_code,
                          method=redact(self.method or "-"), context=error.debug_context)
        self.payload = encode_fault(self.fault_code, error.fault_string)


@dataclass(frozen=True)
class Reply:
    """A dispatch result whose delivery matters: ``delivered()`` is called once the reply
    has been written to the client's connection (never when the connection closed first).
    ``context`` says what the call was about, for the access log and metrics."""

    value: Any
    delivered: Callable[[], Awaitable[None]] | None = None
    #: Called instead of ``delivered`` when the connection closed first.
    undelivered: Callable[[], Awaitable[None]] | None = None
    context: Mapping[str, Any] = field(default_factory=dict)


def peer_hung_up(request: server.Request) -> bool:
    """Has the client already closed its end (an EOF or a reset waiting unread)? Peeks at
    the socket without consuming anything; False when it cannot tell (no socket)."""
    transport = getattr(request.channel, "transport", None)
    handle = getattr(transport, "getHandle", None)
    sock = handle() if handle is not None else None
    if not isinstance(sock, socket.socket):
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # open, nothing unread
    except OSError:
        return True  # reset


def _record_delivery(delivered: Callable[[], Awaitable[None]], method: str | None) -> None:
    d = defer.ensureDeferred(delivered())  # type: ignore[arg-type]
    d.addErrback(lambda f: _errors.failure("recording delivery of {method} failed", f,
                                           method=method))


class _RequestState:
    """Whether the client went away before we could reply."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        self.gone = False

    def client_gone(self, _failure: object) -> None:
        self.gone = True


def _write_reply(request: server.Request, payload: bytes) -> None:
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", CONTENT_TYPE)
    request.setHeader(b"Content-Length", str(len(payload)).encode("ascii"))
    request.write(payload)
    request.finish()


def make_site(resource: Resource, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, *,
              limits: ListenerLimits | None = None, reactor: Any = None) -> server.Site:
    """The legacy listener's ``Site``: bounded by ``gateway.web`` (a total deadline per
    request, an idle timeout, a connection cap), and a body above ``max_body_bytes`` is
    answered before it is buffered with what legacy clients can show their integrator:
    HTTP 200 and a ``parse_error`` fault, unless ``resource.refusal(reason, request)`` (the
    edge root's: another edge on the listener speaks JSON) gives its own answer. Form-body
    parsing is off (XML-RPC bodies are never forms)."""
    limits = replace(limits or ListenerLimits(), max_body_bytes=max_body_bytes)
    fault = Refusal(200, _too_large_fault(max_body_bytes), [(b"Content-Type", CONTENT_TYPE)])
    own = getattr(resource, "refusal", None)

    def refusal(reason: RefusalReason, request: Any) -> Refusal | None:
        answer = own(reason, request) if own is not None else None
        if answer is not None:
            return answer
        return fault if reason is RefusalReason.TOO_LARGE else None
    # Twisted's own access line would repeat ours (which names the call, its journal entry
    # and its outcome) for every call.
    return guarded_site(resource, limits, refusal=refusal, reactor=reactor, access_log=False)
