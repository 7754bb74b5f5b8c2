"""``SandboxResource``: the twisted.web face of the emulator.

Request pipeline for the Klarna APIs (control paths go straight to :class:`ControlApi`):

1. fault selection (``faults.py``) -- infrastructure failures happen before anything else
   (a fault may be scoped to the merchant whose credentials the request carries); the
   request is logged (``traffic.py``, ``GET /sandbox/v1/requests``);
2. HTTP Basic auth against the configured merchants (401 otherwise);
3. the 1 MB body limit (413 REQUEST_TOO_LARGE);
4. routing (404 NOT_FOUND for unknown paths, 405 for a wrong method);
5. idempotent replay of a stored first response for ``Klarna-Idempotency-Key``;
6. the handler; its final answer is stored under the idempotency key (if any) and, when it
   changed an order, appended to that order's operations log.

The HTTP ``Date`` header of every answer is the sandbox's own time, seeded or not, moved or
not: Klarna's ``Date`` is Klarna's clock, and the gateway judges time rules (the v2-strict
activation delay, expiring authorizations) on it. Seeded mode (``seed``): ids come from
reproducible streams and the clock starts frozen at
:data:`~gateway.sandbox.clock.SEEDED_EPOCH`, so two runs of one suite give byte-identical
responses.

Responses are always written asynchronously (``NOT_DONE_YET``) so latency, hangs and
connection resets are expressed with ``reactor.callLater`` and transport aborts -- never by
blocking. Requests whose client went away are forgotten, so hung requests do not leak.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from gateway.config import Config, Merchant
from gateway.sandbox.clock import SEEDED_EPOCH, SandboxClock, http_date
from gateway.sandbox.control import ControlApi
from gateway.sandbox.errors import OmError
from gateway.sandbox.faults import Fault, FaultRegistry
from gateway.sandbox.handlers import Call, Outcome, match_route
from gateway.sandbox.idempotency import IdempotencyStore
from gateway.sandbox.ids import IdSource, check_seed, configured_seed
from gateway.sandbox.orders import Operation, OrderBook
from gateway.sandbox.response import (
    SandboxResponse,
    error_response,
    status_error_response,
)
from gateway.sandbox.state import SandboxState
from gateway.sandbox.tokens import TokenBook
from gateway.sandbox.traffic import Arrival, RequestLog

MAX_BODY_BYTES = 1024 * 1024
CONTROL_PREFIX = "/sandbox/"
IDEMPOTENCY_HEADER = b"klarna-idempotency-key"

ResponseHook = Callable[[str, str, int, dict[str, str], bytes], None]
"""``on_response(method, path, status, headers, body)`` for every Klarna-API response sent."""


class SandboxResource(Resource):
    """Root resource of the sandbox listener.

    Args:
        config: supplies the merchants (``rest_username``/``rest_password``) and
            ``[sandbox] admin_token``.
        reactor: used for ``callLater`` (latency) and as the clock's time source.
        clock: the sandbox clock; default a ticking :class:`SandboxClock` on ``reactor``, or,
            when seeded, one frozen at :data:`SEEDED_EPOCH`.
        seed: makes ids and time reproducible; ``None`` falls back to ``[sandbox] seed`` of
            ``config`` (unset means not seeded). Must be a non-negative integer.

    Attributes:
        clock: the :class:`SandboxClock` every time-dependent rule reads.
        seed: the effective seed, or ``None``.
        ids: the :class:`IdSource` every generated id comes from.
        state: orders (``book``) and customer tokens (``tokens``).
        on_response: optional :data:`ResponseHook`, e.g. a conformance checker in tests.

    Raises:
        ValueError: ``seed`` is negative or not an integer.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, config: Config, reactor: IReactorTime,
                 clock: SandboxClock | None = None, *, seed: int | None = None) -> None:
        super().__init__()
        self._reactor = reactor
        self.seed = check_seed(seed) if seed is not None else configured_seed(config.sandbox)
        if clock is None:
            clock = (SandboxClock(reactor.seconds) if self.seed is None
                     else SandboxClock(reactor.seconds, SEEDED_EPOCH, frozen=True))
        self.clock = clock
        self.on_response: ResponseHook | None = None
        self.ids = IdSource(self.seed)
        self.state = SandboxState(self.ids)
        self.faults = FaultRegistry()
        self.idempotency = IdempotencyStore()
        self.requests = RequestLog()
        self._merchants = {m.rest_username: m for m in config.merchants}
        self.control = ControlApi(admin_token=config.sandbox.admin_token, clock=self.clock,
                                  faults=self.faults, state=self.state,
                                  merchant_eids=[m.eid for m in config.merchants],
                                  reset=self.reset, correlation_id=self.ids.correlation_id,
                                  requests=self.requests)
        self._hanging: set[Request] = set()
        self._delayed: dict[Request, IDelayedCall] = {}

    @property
    def book(self) -> OrderBook:
        """The order book (``state.book``)."""
        return self.state.book

    @property
    def tokens(self) -> TokenBook:
        """The customer tokens (``state.tokens``)."""
        return self.state.tokens

    def reset(self) -> None:
        """Forget orders, tokens, idempotency records and faults (``POST /sandbox/v1/reset``).

        When seeded, also start every id stream and the fault numbering again and put the
        clock back, frozen, at :data:`SEEDED_EPOCH`: a reset sandbox is indistinguishable
        from a freshly started one. Unseeded, the clock is kept.
        """
        self.state.clear()
        self.idempotency.clear()
        self.faults.clear()
        self.requests.clear()
        if self.seed is not None:
            self.ids.restart()
            self.faults.restart_numbering()
            self.clock.restart(SEEDED_EPOCH, frozen=True)

    def _error(self, error: OmError,
               headers: tuple[tuple[str, str], ...] = ()) -> SandboxResponse:
        return error_response(error, self.ids.correlation_id(), headers)

    # --- twisted.web entry point ---

    def render(self, request: Request) -> Any:
        method = request.method.decode("ascii", "replace").upper()
        path = request.path.decode("utf-8", "replace")
        request.notifyFinish().addErrback(self._client_gone, request)
        if path.startswith(CONTROL_PREFIX):
            body = request.content.read() if request.content is not None else b""
            response = self.control.handle(method, path, _header(request, b"authorization"),
                                           body)
            self._write(request, response)
            return NOT_DONE_YET
        merchant = self._authenticate(request)
        eid = merchant.eid if merchant is not None else None
        now = self._reactor.seconds()
        fault = self.faults.select(method, path, eid, now)
        self.requests.record(Arrival(now, eid, method, path, fault.id if fault else None))
        if fault is None:
            self._deliver(request, method, path,
                          self._process(request, method, path, merchant))
        else:
            self._inject(request, method, path, fault, merchant)
        return NOT_DONE_YET

    # --- faults ---

    def _inject(self, request: Request, method: str, path: str, fault: Fault,
                merchant: Merchant | None) -> None:
        self.log.info("sandbox fault {fault_id} ({action}) on {method} {path}",
                      fault_id=fault.id, action=fault.action, method=method, path=path)
        delay = fault.delay_ms / 1000.0
        if fault.action == "hang":
            self._hanging.add(request)
            return
        if fault.action == "reset":
            self._later(request, delay, lambda: _abort(request))
            return
        if fault.action == "latency":
            response = self._process(request, method, path, merchant)
            self._later(request, delay, lambda: self._deliver(request, method, path, response))
            return
        if fault.action == "apply_then_fail":
            self._process(request, method, path, merchant)
            if fault.status == 0:
                self._later(request, delay, lambda: _abort(request))
                return
        injected = status_error_response(fault.status, self.ids.correlation_id())
        if fault.retry_after is not None:
            injected = replace(injected, headers=(*injected.headers,
                                                  ("Retry-After", str(fault.retry_after))))
        self._later(request, delay, lambda: self._deliver(request, method, path, injected))

    def _later(self, request: Request, delay: float, action: Callable[[], None]) -> None:
        if delay <= 0:
            action()
            return

        def fire() -> None:
            self._delayed.pop(request, None)
            action()

        self._delayed[request] = self._reactor.callLater(delay, fire)  # type: ignore[attr-defined]

    def _client_gone(self, reason: Failure, request: Request) -> None:
        """The connection closed before we answered: forget the request."""
        self._hanging.discard(request)
        delayed = self._delayed.pop(request, None)
        if delayed is not None and delayed.active():
            delayed.cancel()

    def shutdown(self) -> None:
        """Abort every hung or delayed request (used when the listener stops)."""
        for delayed in list(self._delayed.values()):
            if delayed.active():
                delayed.cancel()
        pending = list(self._hanging) + list(self._delayed)
        self._delayed.clear()
        self._hanging.clear()
        for request in pending:
            _abort(request)

    @property
    def pending_requests(self) -> int:
        """Requests held open by ``hang`` or waiting for a delayed answer."""
        return len(self._hanging) + len(self._delayed)

    # --- the Klarna APIs ---

    def _process(self, request: Request, method: str, path: str,
                 merchant: Merchant | None) -> SandboxResponse:
        """Route, replay or run the handler for an authenticated ``merchant`` (None: 401);
        return the final answer."""
        if merchant is None:
            return self._error(OmError(401, "UNAUTHORIZED", "Unauthorized"),
                               (("WWW-Authenticate", 'Basic realm="Klarna"'),))
        body = request.content.read(MAX_BODY_BYTES + 1) if request.content is not None else b""
        if len(body) > MAX_BODY_BYTES:
            return self._error(OmError(413, "REQUEST_TOO_LARGE", "Request is too large"))
        matched = match_route(path)
        if matched is None:
            return self._error(OmError(404, "NOT_FOUND", f"No resource at {path}"))
        route, params = matched
        handler = route.handlers.get(method)
        if handler is None:
            allow = ", ".join(sorted(route.handlers))
            return self._error(OmError(405, "METHOD_NOT_ALLOWED", "Method not allowed"),
                               (("Allow", allow),))
        now = self.clock.now()
        key = _header(request, IDEMPOTENCY_HEADER) if method in ("POST", "PATCH") else None
        scope = (merchant.eid, method, path, key) if key else None
        if scope is not None:
            stored = self.idempotency.lookup(scope, now)
            if stored is not None:
                return stored
        call = Call(method=method, path=path, params=params, body=body,
                    merchant_eid=merchant.eid, host=_host(request), now=now)
        try:
            outcome = handler(self.state, call)
        except OmError as e:
            outcome = Outcome(self._error(e))
        except Exception:
            self.log.failure("sandbox handler crashed on {method} {path}", method=method,
                             path=path)
            return self._error(OmError(500, "INTERNAL_SERVER_ERROR", "Unexpected server error"))
        if scope is not None:
            self.idempotency.store(scope, outcome.response, now)
        if outcome.applied_order_id is not None:
            order = self.book.orders.get(outcome.applied_order_id)
            if order is not None:
                order.operations.append(Operation(method, path, key,
                                                  outcome.response.status, now))
        return outcome.response

    def _authenticate(self, request: Request) -> Merchant | None:
        username = request.getUser().decode("utf-8", "replace")
        password = request.getPassword().decode("utf-8", "replace")
        merchant = self._merchants.get(username)
        if merchant is None or not hmac.compare_digest(password.encode(),
                                                       merchant.rest_password.encode()):
            return None
        return merchant

    # --- delivery ---

    def _deliver(self, request: Request, method: str, path: str,
                 response: SandboxResponse) -> None:
        if not self._write(request, response):
            return
        hook = self.on_response
        if hook is not None:
            try:
                hook(method, path, response.status, dict(response.headers), response.body)
            except Exception:
                self.log.failure("sandbox on_response hook raised")

    def _write(self, request: Request, response: SandboxResponse) -> bool:
        if request.finished or getattr(request, "_disconnected", False):
            return False
        request.defaultContentType = None  # empty 201/204 answers carry no Content-Type
        request.setResponseCode(response.status)
        request.setHeader("Date", http_date(self.clock))  # Klarna's clock: the sandbox's
        for name, value in response.headers:
            request.setHeader(name, value)
        if response.status != 204:
            request.setHeader("Content-Length", str(len(response.body)))
        if response.body:
            request.write(response.body)
        request.finish()
        return True


def _header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _host(request: Request) -> str:
    host = _header(request, b"host")
    if host:
        return host
    address = request.getHost()
    return f"{getattr(address, 'host', 'localhost')}:{getattr(address, 'port', 80)}"


def _abort(request: Request) -> None:
    transport = getattr(request.channel, "transport", None)
    if transport is None:
        return
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        transport.loseConnection()
