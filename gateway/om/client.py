"""The Order Management REST client (treq on Twisted).

One persistent connection pool for the process; HTTP Basic per merchant; every request has
a timeout; every POST/PATCH carries the ``Klarna-Idempotency-Key`` its caller journaled
before calling. Retries follow Klarna's policy (docs/order-management.md#retries): GETs and keyed
mutations are retried on 5xx, 429, timeouts and connection loss, with backoff, inside a
deadline the caller sets; a 4xx is never retried. Success is only a documented 2xx, and
the ids of created captures and refunds are read from the response headers.

Every attempt first takes a request slot of its merchant from the injected
:class:`~gateway.om.ratelimit.RateLimiter` (``rest_rate_limit``, and the pause a 429's
``Retry-After`` imposed on the merchant): it waits for the slot, or, when none comes in
time to finish before its deadline, sends nothing and raises :class:`RateLimitedError`.
"""
from __future__ import annotations

import base64
from http.cookiejar import CookieJar
import json
import random
from urllib.parse import quote
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, error as ierror
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.client import (
    Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool, ResponseFailed,
    _StandardEndpointFactory,
)
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer
from twisted.web.http_headers import Headers

from gateway.config import Merchant
from gateway.metrics import NO_METRICS, Metrics
from gateway.om.ratelimit import MAX_PAUSE_SECONDS, Limit, LocalRateLimiter, RateLimiter
from gateway.model import KlarnaOrder

log = Logger()

USER_AGENT = "Library/klarna-gateway_0.1.0 Language/Python_3.11"
#: A pause ending within this many seconds of a slot is the one the slot already honoured
#: (the store's clock and this process's may differ by a few milliseconds).
_PAUSE_SLACK = 0.01


@dataclass(frozen=True)
class OmResponse:
    status: int
    headers: dict[str, str]
    body: Any  # decoded JSON, or None for empty bodies

    @property
    def klarna_time(self) -> float | None:
        """Klarna's clock when it answered: the ``Date`` header, or None."""
        return http_date_seconds(self.headers.get("date"))


def http_date_seconds(value: str | None) -> float | None:
    """An HTTP ``Date`` (``Thu, 01 Jan 2026 12:00:00 GMT``) in epoch seconds; None when
    missing or unreadable (a zone-less date is read as UTC, HTTP's zone)."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


class OmError(Exception):
    """Base of REST client errors."""


class RestResponseError(OmError):
    """Klarna answered with a non-2xx status; ``error_code`` from its JSON error body."""

    def __init__(self, status: int, error_code: str | None, messages: list[str],
                 correlation_id: str | None, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {error_code}: {'; '.join(messages)}")
        self.status = status
        self.error_code = error_code
        self.messages = messages
        self.correlation_id = correlation_id
        #: Seconds Klarna asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """5xx, 429, and 409 (Klarna still processing the same idempotency key)."""
        return self.status >= 500 or self.status in (409, 429)


class RestTransportError(OmError):
    """No answer: timeout, connection refused, reset, or a truncated response."""

    retryable = True


class DeadlineExceededError(OmError):
    """The retry budget ran out; ``last`` is the last failure seen."""

    def __init__(self, last: OmError) -> None:
        super().__init__(f"retry budget exhausted; last error: {last}")
        self.last = last


class RateLimitedError(DeadlineExceededError):
    """No request slot of the merchant within the call's budget (its ``rest_rate_limit``,
    or a pause Klarna asked for): this attempt was not sent. A deadline error, so the
    engine answers 9119 and keeps the call resumable."""

    def __init__(self, eid: int, last: OmError | None = None) -> None:
        why = RestTransportError(f"no REST request slot for eid {eid} within the budget "
                                 "(rest_rate_limit or Klarna's Retry-After)")
        super().__init__(last if last is not None else why)
        self.args = (f"{why}; last error: {last}" if last is not None else str(why),)


def _auth_header(merchant: Merchant) -> bytes:
    raw = f"{merchant.rest_username}:{merchant.rest_password}".encode()
    return b"Basic " + base64.b64encode(raw)


class OmClient:
    """Speaks Order Management for any configured merchant.

    Args:
        reactor: provides ``seconds()``/``callLater`` (injected, so tests can drive time).
        timeout: per-attempt timeout in seconds.
        http: the treq ``HTTPClient`` to send with. Default: one over a persistent
            connection pool with TCP_NODELAY (one per process). Tests inject one over
            ``treq.testing.RequestTraversalAgent`` (the sandbox resource in memory).
    """

    def __init__(self, reactor: Any, *, timeout: float = 3.0, http: HTTPClient | None = None,
                 max_per_host: int = 16, metrics: Metrics = NO_METRICS,
                 limiter: RateLimiter | None = None, slot_wait: float = 7.5) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.metrics = metrics
        #: Request slots per merchant (default: this process's own, in memory).
        self.limiter: RateLimiter = limiter if limiter is not None else \
            LocalRateLimiter(reactor)
        #: The longest wait for a slot of a request sent without a deadline.
        self.slot_wait = slot_wait
        self.pool: HTTPConnectionPool | None = None
        if http is None:
            self.pool = HTTPConnectionPool(reactor, persistent=True)
            self.pool.maxPersistentPerHost = max_per_host
            self.pool.cachedConnectionTimeout = 60
            http = HTTPClient(Agent.usingEndpointFactory(
                reactor, _NoDelayEndpointFactory(reactor), pool=self.pool),
                cookiejar=_NoCookies(),
                data_to_body_producer=BytesProducer)  # type: ignore[arg-type] # zope
        self.http = http
        self._rng = random.Random()

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.closeCachedConnections()

    async def request_once(self, merchant: Merchant, method: str, path: str,
                           body: Any = None, *, idempotency_key: str | None = None,
                           timeout: float | None = None) -> OmResponse:
        """One attempt. Raises RestResponseError (non-2xx) or RestTransportError."""
        headers = {b"Authorization": [_auth_header(merchant)],
                   b"User-Agent": [USER_AGENT.encode()],
                   b"Accept": [b"application/json"]}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers[b"Content-Type"] = [b"application/json"]
        if idempotency_key is not None:
            headers[b"Klarna-Idempotency-Key"] = [idempotency_key.encode()]
        started = self.reactor.seconds()
        try:
            resp, raw = await self._exchange(method, merchant.base_url + path, data,
                                             Headers(headers), timeout or self.timeout)
        except RestTransportError as e:
            self.metrics.rest_request(method, path, "timeout" if "timeout" in str(e)
                                      else "error", self.reactor.seconds() - started)
            raise
        elapsed = self.reactor.seconds() - started
        self.metrics.rest_request(method, path, resp.code, elapsed)
        hdrs = {k.decode().lower(): v[-1].decode("latin-1")
                for k, v in resp.headers.getAllRawHeaders()}
        log.debug("OM {method} {path} -> {status} in {ms:.1f} ms", method=method, path=path,
                  status=resp.code, ms=elapsed * 1000)
        return _interpret(resp.code, hdrs, raw)

    async def _exchange(self, method: str, url: str, data: bytes | None, headers: Headers,
                        limit: float) -> tuple[Any, bytes]:
        """Request and whole body under one timer: treq's own timeout stops at the headers,
        and a body that stalls must not keep a call past its budget (or its journal lease)."""
        async def exchange() -> tuple[Any, bytes]:
            # Order Management never redirects an API call: a redirect is answered as it is
            # (a non-2xx), not followed with the merchant's credentials.
            resp = await self.http.request(method, url, data=data, headers=headers,
                                           unbuffered=True, reactor=self.reactor,
                                           allow_redirects=False)
            return resp, await _read_body(resp)

        attempt = defer.ensureDeferred(exchange())
        timed_out: list[bool] = []

        def expire() -> None:
            timed_out.append(True)
            attempt.cancel()
        timer = self.reactor.callLater(limit, expire)
        try:
            return await attempt
        except (CancelledError, defer.TimeoutError, ierror.TimeoutError,
                ierror.ConnectingCancelledError) as e:
            # ConnectingCancelledError: the timer cancelled an attempt still connecting.
            if isinstance(e, (CancelledError, ierror.ConnectingCancelledError)) \
                    and not timed_out:
                raise  # cancelled from outside (shutdown): not a timeout, do not retry
            log.info("OM {method} {url} timed out", method=method, url=url)
            raise RestTransportError(f"timeout after {limit}s") from e
        except (ierror.ConnectError, ierror.ConnectionLost, ierror.ConnectionDone,
                ResponseFailed, ierror.ConnectionRefusedError, ierror.DNSLookupError) as e:
            log.info("OM {method} {url} failed: {err}", method=method, url=url,
                     err=type(e).__name__)
            raise RestTransportError(type(e).__name__) from e
        finally:
            if timer.active():
                timer.cancel()

    async def request(self, merchant: Merchant, method: str, path: str, body: Any = None, *,
                      idempotency_key: str | None = None, deadline: float | None = None,
                      ) -> OmResponse:
        """Send with retries until ``deadline`` (reactor seconds).

        Raises:
            RestResponseError: a 4xx (never retried), or a 5xx/429 on an unkeyed mutation.
            DeadlineExceededError: retryable failures until the budget ran out.
            RateLimitedError: no request slot of the merchant in time (nothing sent).
        """
        retry_allowed = method == "GET" or idempotency_key is not None
        # A mutation started with almost no time left would be cut off mid-flight: its
        # outcome unknown, for nothing. Do not start one without a fair chance to finish.
        min_attempt = 0.05 if method == "GET" else max(0.5, self.timeout / 3)
        attempt = 0
        last: OmError = RestTransportError("no time left")
        while True:
            attempt += 1
            if self._per_try(deadline) < min_attempt:
                raise DeadlineExceededError(last)
            await self._slot(merchant, deadline, min_attempt, None if attempt == 1 else last)
            per_try = self._per_try(deadline)
            if per_try < min_attempt:  # the slot came, but the database's answer was slow
                raise RateLimitedError(merchant.eid, last)
            try:
                return await self.request_once(merchant, method, path, body,
                                               idempotency_key=idempotency_key,
                                               timeout=per_try)
            except (RestResponseError, RestTransportError) as e:
                pause = await self._paused(merchant, e)
                if not (retry_allowed and e.retryable):
                    raise
                last = e
                # Klarna said when: the next slot waits for it (with the merchant's other
                # calls); else back off. Neither is worth starting if the budget ends first.
                delay = 0.0 if pause is not None else \
                    min(2.0, 0.1 * (2 ** (attempt - 1))) * (0.5 + self._rng.random())
                if deadline is not None and \
                        self.reactor.seconds() + max(delay, pause or 0.0) + min_attempt > deadline:
                    raise DeadlineExceededError(e) from e
                log.info("OM {method} {path} attempt {n} failed ({err}); retrying in {d:.2f}s",
                         method=method, path=path, n=attempt, err=e,
                         d=pause if pause is not None else delay)
                self.metrics.rest_retry(method, path)
                if delay:
                    await _sleep(self.reactor, delay)

    def _per_try(self, deadline: float | None) -> float:
        if deadline is None:
            return self.timeout
        return min(self.timeout, deadline - self.reactor.seconds())

    async def _slot(self, merchant: Merchant, deadline: float | None, min_attempt: float,
                    last: OmError | None) -> None:
        """Wait for a request slot of ``merchant`` (its rate limit, any pause Klarna asked
        for), or raise :class:`RateLimitedError` when none comes early enough for the
        attempt to finish before ``deadline``: then nothing is taken and nothing is sent.
        A pause that began while the request waited takes its slot with it: it takes a new
        one after the pause (never sending into it, nor all at once when it ends)."""
        while True:
            await self._take_slot(merchant, deadline, min_attempt, last)
            if self.limiter.paused_for(merchant.eid) <= _PAUSE_SLACK:
                return

    async def _take_slot(self, merchant: Merchant, deadline: float | None,
                         min_attempt: float, last: OmError | None) -> None:
        max_wait = self.slot_wait if deadline is None else \
            deadline - self.reactor.seconds() - min_attempt
        try:
            wait = await self.limiter.acquire(
                merchant.eid, Limit.of(merchant.rest_rate_limit, merchant.rest_rate_burst),
                max(0.0, max_wait))
        except CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the limiter's store failed: send nothing
            log.warn("no request slot for eid {eid}: the rate limiter failed ({error})",
                     eid=merchant.eid, error=type(e).__name__)
            raise RateLimitedError(merchant.eid, RestTransportError(
                f"rate limiter unavailable: {type(e).__name__}")) from e
        if wait is None:
            self.metrics.throttled(merchant.eid)
            raise RateLimitedError(merchant.eid, last)
        if wait > 0:
            self.metrics.rate_limit_wait(merchant.eid, wait)
            await _sleep(self.reactor, wait)

    async def _paused(self, merchant: Merchant, e: OmError) -> float | None:
        """A 429: counted; with ``Retry-After``, the merchant is paused that long (for every
        call, in every process sharing the limiter). Returns the pause, if any."""
        if not isinstance(e, RestResponseError) or e.status != 429:
            return None
        self.metrics.rate_limited(merchant.eid)
        if e.retry_after is None:
            return None
        await self.limiter.pause(merchant.eid, e.retry_after)
        return e.retry_after

    # -- typed helpers (paths per docs/order-management.md#endpoints-the-gateway-uses) --------

    async def get_order(self, merchant: Merchant, order_id: str, *,
                        deadline: float | None = None) -> KlarnaOrder:
        """The order, with the time of Klarna's answer (its ``Date``) as ``klarna_time``:
        the clock the order's own timestamps are compared with."""
        resp = await self.request(merchant, "GET", order_path(order_id), deadline=deadline)
        return order_of(resp)

    async def list_captures(self, merchant: Merchant, order_id: str, *,
                            deadline: float | None = None) -> list[dict[str, Any]]:
        resp = await self.request(merchant, "GET", order_path(order_id) + "/captures",
                                  deadline=deadline)
        return list(resp.body or [])

    async def create_order(self, merchant: Merchant, authorization_token: str,
                           body: dict[str, Any]) -> dict[str, Any]:
        """Klarna Payments order creation (used by the sandbox admin route only)."""
        resp = await self.request(merchant, "POST",
                                  f"/payments/v1/authorizations/{authorization_token}/order",
                                  body, idempotency_key=f"create-{authorization_token}")
        return dict(resp.body or {})


@implementer(IBodyProducer)
class BytesProducer:
    """A request body written at once. treq's default (``FileBodyProducer``) writes
    through the global reactor's ``Cooperator``: a hidden use of the global reactor, which
    stalls every POST of a client on another reactor (the in-process test fixtures run the
    gateway on a private one) and costs a reactor turn per request anyway."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:  # noqa: N802
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted API
        pass

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted API
        pass

    def stopProducing(self) -> None:  # noqa: N802 - Twisted API
        pass


@implementer(IAgentEndpointFactory)
class _NoDelayEndpointFactory:
    """Agent endpoints with TCP_NODELAY: treq writes a request's headers and body
    separately, and Nagle + delayed ACKs would add milliseconds to every POST."""

    def __init__(self, reactor: Any) -> None:
        self._inner = _StandardEndpointFactory(reactor, BrowserLikePolicyForHTTPS(), None,
                                               None)

    def endpointForURI(self, uri: Any) -> Any:
        return _NoDelayEndpoint(self._inner.endpointForURI(uri))


class _NoDelayEndpoint:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        def nodelay(proto: Any) -> Any:
            transport = proto.transport
            while transport is not None and not hasattr(transport, "setTcpNoDelay"):
                transport = getattr(transport, "transport", None)  # unwrap TLS
            if transport is not None:
                transport.setTcpNoDelay(True)
            return proto
        return self._inner.connect(factory).addCallback(nodelay)


class _BodyCollector(Protocol):
    """Reads a response body into memory; cancelling its Deferred aborts the connection
    (treq's collector cannot be cancelled, which leaked the socket of a stalled body)."""

    def __init__(self, done: defer.Deferred[bytes]) -> None:
        self.done = done
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


def _read_body(response: Any) -> defer.Deferred[bytes]:
    collector: _BodyCollector | None = None

    def cancel(_: defer.Deferred[bytes]) -> None:
        if collector is not None and collector.transport is not None:
            collector.transport.stopProducing()

    done: defer.Deferred[bytes] = defer.Deferred(canceller=cancel)
    collector = _BodyCollector(done)
    response.deliverBody(collector)
    return done


def _interpret(status: int, headers: dict[str, str], raw: bytes) -> OmResponse:
    """A documented 2xx is a success; anything else is a typed refusal with Klarna's
    ``error_code``, messages and ``correlation_id``."""
    decoded: Any = None
    if raw:
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = None
    if 200 <= status < 300:
        if raw and decoded is None and "json" in headers.get("content-type", ""):
            raise RestTransportError("2xx with an unreadable JSON body")
        return OmResponse(status, headers, decoded)
    err = decoded if isinstance(decoded, dict) else {}
    messages = err.get("error_messages") or ([err["error_message"]]
                                             if err.get("error_message") else [])
    pause = retry_after_seconds(headers["retry-after"], headers.get("date"), None) \
        if "retry-after" in headers else None
    raise RestResponseError(status, err.get("error_code"), [str(x) for x in messages],
                            err.get("correlation_id"), retry_after=pause)


def retry_after_seconds(value: str, date: str | None, now: float | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds, or an HTTP date read against the answer's
    own ``Date`` (Klarna's clock), else ``now``. Capped at
    :data:`~gateway.om.ratelimit.MAX_PAUSE_SECONDS`; None when unreadable."""
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_PAUSE_SECONDS)
    at = http_date_seconds(value)
    base = http_date_seconds(date) if date else now
    if at is None or base is None:
        return None
    return min(max(0.0, at - base), MAX_PAUSE_SECONDS)


def order_of(resp: OmResponse) -> KlarnaOrder:
    """The order a GET answered, stamped with Klarna's time of the answer."""
    if not isinstance(resp.body, dict):
        raise RestTransportError("order body is not a JSON object")
    return KlarnaOrder(resp.body, resp.klarna_time)


class _NoCookies(CookieJar):
    """Order Management sets no cookies and needs none: a jar that keeps nothing (treq
    would otherwise match every request and response against the standard library's
    cookie policy, for nothing)."""

    def add_cookie_header(self, request: Any) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


def order_path(order_id: str) -> str:
    return f"/ordermanagement/v1/orders/{quote(order_id, safe='')}"


def created_id(resp: OmResponse, kind: str) -> str:
    """The id of a created capture/refund: its ``Capture-Id``/``Refund-Id`` header, else the
    last segment of ``Location``. A 201 without either is not a success we can record."""
    header = {"capture": "capture-id", "refund": "refund-id"}[kind]
    value = resp.headers.get(header)
    if not value and resp.headers.get("location"):
        value = resp.headers["location"].rstrip("/").rsplit("/", 1)[-1]
    if not value:
        raise RestTransportError(f"{resp.status} without {header} or Location header")
    return value


def created_order(resp: OmResponse) -> dict[str, Any]:
    """The order a purchase created (``order_id``, ``fraud_status``); a 2xx without an
    order id is not a success we can record."""
    body = resp.body if isinstance(resp.body, dict) else {}
    if not body.get("order_id"):
        raise RestTransportError(f"{resp.status} without an order_id")
    return {"order_id": str(body["order_id"]), "fraud_status": body.get("fraud_status"),
            "status": "AUTHORIZED"}


def _sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d
