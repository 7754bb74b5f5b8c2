"""The admin HTTP API (its own listener, bearer token from config).

Routes (exact, other tools depend on them):
- ``POST /v1/reservations`` ``{"eid", "order_id", "rno"?}`` → 201 ``{"eid", "rno", "order_id"}``
- ``GET /v1/reservations/{eid}/{rno}`` → the mapping with its invoices and credits
- ``POST /v1/imports`` ``{"reservations": [...], "invoices": [...], "credits": [...],
  "dry_run"?}`` → 200 the per-row report (``gateway.tools.imports``)
- ``POST /v1/sandbox/orders`` (sandbox mode) → 201 ``{"order_id", "rno"}`` (``"rno"`` in the
  body registers the order under that number: ``klarna-gateway replay`` seeds recorded
  reservations so; 409 when it is taken)
- ``GET /v1/journal/{eid}`` → the latest calls with the REST steps they became
- ``POST /v1/recurring-tokens`` ``{"eid", "recurring_token", "customer_token"}`` → 201 (KCO v2
  recurring token → Customer Token API token, checked at Klarna)
- ``GET /v1/journal?eid=&method=&rno=&invno=&order_id=&merchant_order_id=&outcome=&since=
  &until=&limit=&cursor=&format=json|jsonl|csv`` → search (``gateway.tools.journal``):
  pages ``{"entries", "next_cursor"}``, or every match streamed as JSON lines / CSV
- ``GET /healthz`` (no token): liveness, the process answers (whatever its database
  does: a database outage is readiness's to report, and restarting the gateway over it
  would not help)
- ``GET /readyz`` (no token): 200 while the database is reachable and migrated, recovery
  runs and the process is not draining; 503 otherwise (take it out of the load balancer)
- ``GET /metrics`` (no token): Prometheus text
- ``GET /v1/`` lists these routes (:data:`ROUTES`); ``GET /v1/openapi.json`` is their
  OpenAPI 3.1 document (:mod:`gateway.openapi`)

Input is checked by :mod:`gateway.tools.inputs`, the same code the command line uses: an
``InputError`` answers its ``status`` (400, 404 an eid not configured, 422 an order that
does not exist for the eid), an ``Unreachable`` 502.
"""
from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource

from gateway.config import Config
from gateway.metrics import CONTENT_TYPE_LATEST, NO_METRICS, Metrics
from gateway.om.client import (
    DeadlineExceededError, OmClient, RateLimitedError, RestResponseError, RestTransportError,
)
from gateway.model import Invoice, JournalEntry, Origin
from gateway.store.recurring import TokenConflictError
from gateway.store.store import ReservationConflictError, Store
from gateway.tools import inputs
from gateway.tools.imports import ImportFormatError, lines_from_json, run_import
from gateway.tools import journal as journal_search
from gateway.web import json_body

log = Logger()


#: A handler's body when it wrote (streamed) the response itself.
STREAMED = object()


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def invoice_json(inv: Invoice) -> dict[str, Any]:
    return {
        "invno": inv.invno, "capture_id": inv.capture_id,
        "captured_amount": inv.captured_amount, "refunded_amount": inv.refunded_amount,
        "adopted": inv.adopted, "order_lines": inv.lines, "refunded_quantities": inv.refunded_qty,
        "credits": [{"credno": c.credno, "refund_id": c.refund_id,
                     "refunded_amount": c.refunded_amount, "adopted": c.adopted,
                     "order_lines": c.lines} for c in inv.credits],
    }


def entry_json(e: JournalEntry) -> dict[str, Any]:
    return {
        "id": e.id, "method": e.method, "state": e.state.value, "call": e.call, "reply": e.reply,
        "fault_code": e.fault_code, "fault_string": e.fault_string, "order_id": e.order_id,
        "notes": e.notes, "created_at": e.created_at, "delivered_at": e.delivered_at,
        "rest_steps": [{"step": s.step, "method": s.http_method, "path": s.path,
                        "body": s.body, "purpose": s.purpose, "state": s.state.value,
                        "idempotency_key": s.idempotency_key, "result": s.result}
                       for s in e.steps],
    }


@dataclass(frozen=True)
class Route:
    """One route: ``path`` is an OpenAPI template (``{name}`` is one path segment),
    ``handler`` the :class:`AdminResource` method serving it."""

    method: str
    path: str
    handler: str
    summary: str
    auth: bool = True

    def matches(self, method: str, parts: list[str]) -> bool:
        template = [p for p in self.path.split("/") if p]
        return method == self.method and len(parts) == len(template) and all(
            t.startswith("{") or t == p for t, p in zip(template, parts))


#: Every route of the admin API: what it dispatches on, what ``GET /v1/`` lists and what
#: ``GET /v1/openapi.json`` documents (:mod:`gateway.openapi`).
ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", "_healthz", "liveness: the process answers",
          auth=False),
    Route("GET", "/readyz", "_readyz", "readiness for a load balancer (503 with the reason)",
          auth=False),
    Route("GET", "/metrics", "_metrics", "Prometheus metrics", auth=False),
    Route("GET", "/v1/", "_index", "this list of routes"),
    Route("GET", "/v1/openapi.json", "_openapi", "the OpenAPI 3.1 document of this API"),
    Route("POST", "/v1/reservations", "_add_reservation",
          "register a Klarna order as a reservation (the order must exist for the eid)"),
    Route("GET", "/v1/reservations/{eid}/{rno}", "_show_reservation",
          "a reservation with its invoices and credits"),
    Route("POST", "/v1/imports", "_import",
          "import reservations, invoices and credits from before the migration"),
    Route("POST", "/v1/sandbox/orders", "_sandbox_order",
          "create a sandbox order and register it (serve --sandbox only)"),
    Route("GET", "/v1/journal", "_search_journal", "search the call journal"),
    Route("GET", "/v1/journal/{eid}", "_journal", "the latest calls of one eid"),
    Route("POST", "/v1/recurring-tokens", "_map_recurring_token",
          "map a KCO v2 recurring token to a Customer Token API token"),
)


def openapi_document() -> dict[str, Any]:
    from gateway import openapi

    try:
        from importlib.metadata import version
        release = version("klarna-gateway")
    except Exception:  # noqa: BLE001 - not installed: the document still serves
        release = "unknown"
    return openapi.document(ROUTES, release)


class AdminResource(Resource):
    isLeaf = True

    def __init__(self, config: Config, store: Store, om: OmClient, *,
                 sandbox_mode: bool = False, metrics: Metrics = NO_METRICS,
                 readiness: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                 on_response: Callable[[str, str, int, str, bytes], None] | None = None,
                 ) -> None:
        super().__init__()
        #: ``on_response(method, path, status, content_type, body)`` sees every JSON answer
        #: (tests validate them against the OpenAPI document).
        self.on_response = on_response
        self.config = config
        self.store = store
        self.om = om
        self.sandbox_mode = sandbox_mode
        self.metrics = metrics
        self.readiness = readiness

    def render(self, request: server.Request) -> Any:
        if request.postpath == [b"metrics"] and request.method == b"GET":
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
            body = self.metrics.render()
            self._observe(request, 200, CONTENT_TYPE_LATEST, body)
            return body
        d = defer.ensureDeferred(self._handle(request))
        d.addErrback(lambda f: log.failure("admin request failed", f))
        return server.NOT_DONE_YET

    async def _handle(self, request: server.Request) -> None:
        status, body = 500, {"error": "internal error"}
        try:
            status, body = await self._route(request)
        except HttpError as e:
            status, body = e.status, {"error": e.message}
        except (inputs.InputError, inputs.Unreachable) as e:
            status, body = e.status, {"error": str(e)}
        except Exception:
            log.failure("admin handler crashed")
        if body is STREAMED:
            return
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        if request.finished or getattr(request, "_disconnected", False):
            return
        self._observe(request, status, "application/json", data)
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Content-Length", str(len(data)).encode())
        request.write(data)
        request.finish()

    def _observe(self, request: server.Request, status: int, content_type: str,
                 body: bytes) -> None:
        if self.on_response is not None:
            self.on_response(request.method.decode(), request.path.decode("utf-8", "replace"),
                             status, content_type, body)

    def _authorize(self, request: server.Request) -> None:
        got = request.getHeader(b"Authorization") or b""
        want = f"Bearer {self.config.gateway.admin_token}".encode()
        if not hmac.compare_digest(got, want):
            raise HttpError(401, "missing or wrong bearer token")

    async def _route(self, request: server.Request) -> tuple[int, Any]:
        method = request.method.decode("latin-1")
        try:
            parts = [p.decode("utf-8") for p in request.postpath if p]
        except UnicodeDecodeError:
            raise HttpError(400, "the path does not percent-decode to UTF-8") from None
        for route in ROUTES:
            if route.matches(method, parts):
                if route.auth:
                    self._authorize(request)
                handler: Callable[..., Awaitable[tuple[int, Any]]] = getattr(self,
                                                                             route.handler)
                return await handler(request, parts)
        self._authorize(request)
        raise HttpError(404, f"no such route: {method} /{'/'.join(parts)} (GET /v1/ lists "
                             "the routes)")

    async def _healthz(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        return 200, {"status": "ok"}

    async def _readyz(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        state = await self.readiness() if self.readiness else {"ready": True}
        return (200 if state.get("ready") else 503), state

    async def _metrics(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        raise HttpError(405, "GET /metrics is served as Prometheus text")  # see render()

    async def _index(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        return 200, {"openapi": "/v1/openapi.json",
                     "routes": [{"method": r.method, "path": r.path, "summary": r.summary,
                                 "auth": r.auth} for r in ROUTES]}

    async def _openapi(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        return 200, openapi_document()

    @staticmethod
    def _json_body(request: server.Request) -> dict[str, Any]:
        raw = request.content.read(1 << 20) if request.content else b""
        try:
            body = json_body.loads(raw or b"{}")
        except json_body.JsonBodyError as e:
            raise HttpError(400, f"body is {e}") from None
        if not isinstance(body, dict):
            raise HttpError(400, "body must be a JSON object")
        return body

    def _eid(self, value: Any) -> int:
        """A configured eid (:func:`gateway.tools.inputs.merchant`: the CLI's check)."""
        return inputs.merchant(self.config, value).eid

    async def _add_reservation(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        """The same checks as ``reservations add`` (:func:`inputs.register_reservation`)."""
        body = self._json_body(request)
        try:
            res = await inputs.register_reservation(self.config, self.store, self.om,
                                                    body.get("eid"), body.get("order_id"),
                                                    body.get("rno"), Origin.ADMIN.value)
        except ReservationConflictError as e:
            raise HttpError(409, str(e)) from None
        return 201, {"eid": res.eid, "rno": res.rno, "order_id": res.order_id}

    async def _map_recurring_token(self, request: server.Request, parts: list[str]
                                   ) -> tuple[int, Any]:
        """KCO v2 recurring token → the merchant's Customer Token API token (checked)."""
        body = self._json_body(request)
        eid = self._eid(body.get("eid"))
        v2_token, token = body.get("recurring_token"), body.get("customer_token")
        for name, value in (("recurring_token", v2_token), ("customer_token", token)):
            if not isinstance(value, str) or not value or len(value) > 255:
                raise HttpError(400, f"{name} must be a non-empty string")
        merchant = self.config.merchant(eid)
        assert merchant is not None
        try:
            await self.om.request(merchant, "GET", f"/customer-token/v1/tokens/{token}")
        except RestResponseError as e:
            if e.status == 404:
                raise HttpError(422, f"customer token {token} does not exist for eid "
                                     f"{eid}") from None
            raise HttpError(502, f"Klarna answered {e.status} {e.error_code}") from None
        except (RestTransportError, DeadlineExceededError) as e:
            raise _no_answer(e) from None
        try:
            new = await self.store.map_recurring_token(eid, str(v2_token), str(token),
                                                       Origin.IMPORT.value)
        except TokenConflictError as e:
            raise HttpError(409, str(e)) from None
        return (201 if new else 200), {"eid": eid, "recurring_token": v2_token,
                                       "customer_token": token}
    async def _import(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        """Numbers the ERP holds from before the migration, each row checked against its
        order over REST. 200 with the report whatever the rows' outcomes (a refused row
        changed nothing); 400 only when the body as a whole is unusable."""
        body = self._json_body(request)
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise HttpError(400, "dry_run must be true or false")
        try:
            lines = lines_from_json(body, self.config)
        except ImportFormatError as e:
            raise HttpError(400, str(e)) from None
        report = await run_import(self.config, self.store, self.om, self.store.clock, lines,
                                  dry_run=dry_run)
        return 200, report.to_json()

    async def _show_reservation(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        eid = self._eid(parts[2])
        res = await self.store.get_reservation(eid, parts[3])
        if res is None:
            raise HttpError(404, f"rno {parts[3]} is unknown for eid {eid}")
        invoices = await self.store.invoices_for(res.id)
        return 200, {"eid": res.eid, "rno": res.rno, "order_id": res.order_id,
                     "status": res.status, "origin": res.origin,
                     "invoices": [invoice_json(i) for i in invoices]}

    async def _journal(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        eid = self._eid(parts[2])
        entries = await self.store.journal_for(eid)
        return 200, {"eid": eid, "calls": [entry_json(e) for e in entries]}

    async def _search_journal(self, request: server.Request, parts: list[str],
                              ) -> tuple[int, Any]:
        try:
            search = journal_search.parse_query(query_params(request))
        except journal_search.FilterError as e:
            raise HttpError(400, str(e)) from None
        if search.query.eid is not None:
            self._eid(search.query.eid)
        if search.format == "json":
            page = await self.store.search_journal(search.query)
            return 200, journal_search.page_json(page.entries, page.next_before)
        await stream_export(request, self.store, search)
        return 200, STREAMED

    async def _sandbox_order(self, request: server.Request, parts: list[str]) -> tuple[int, Any]:
        if not self.sandbox_mode:
            raise HttpError(404, "only available with serve --sandbox")
        body = self._json_body(request)
        eid = self._eid(body.get("eid"))
        merchant = self.config.merchant(eid)
        assert merchant is not None
        fields = ("purchase_country", "purchase_currency", "locale", "order_amount",
                  "order_tax_amount", "order_lines")
        missing = [f for f in fields if f not in body]
        if missing:
            raise HttpError(400, f"missing {', '.join(missing)}")
        rno = inputs.reservation_number(body.get("rno"))
        if rno is not None and await self.store.get_reservation(eid, rno) is not None:
            raise HttpError(409, f"rno {rno} already registered for eid {eid}")
        payload = {k: v for k, v in body.items() if k not in ("eid", "rno")}
        token = str(body.get("authorization_token") or f"auth-{uuid.uuid4()}")
        payload.pop("authorization_token", None)
        try:
            created = await self.om.create_order(merchant, token, payload)
        except RestResponseError as e:
            raise HttpError(e.status if 400 <= e.status < 500 else 502,
                            "; ".join(e.messages) or str(e.error_code)) from None
        except DeadlineExceededError as e:
            raise _no_answer(e) from None
        order_id = str(created["order_id"])
        try:
            res = await self.store.register_reservation(
                eid, order_id, rno, Origin.SANDBOX.value, status="AUTHORIZED")
        except ReservationConflictError as e:
            raise HttpError(409, str(e)) from None
        return 201, {"order_id": order_id, "rno": res.rno,
                     "fraud_status": created.get("fraud_status")}


def _no_answer(e: RestTransportError | DeadlineExceededError) -> HttpError:
    """Klarna did not answer, or the merchant may not send yet (its ``rest_rate_limit``, or
    a pause Klarna asked for): then nothing was sent, and the client may retry later."""
    if isinstance(e, RateLimitedError):
        return HttpError(503, "no REST request slot for this merchant in time (its "
                              "rest_rate_limit, or Klarna's Retry-After): nothing was sent, "
                              "retry later")
    return HttpError(502, "Klarna did not answer")


def query_params(request: server.Request) -> dict[str, str]:
    """The query string as ``{name: value}``; a repeated or undecodable parameter is a 400."""
    params: dict[str, str] = {}
    args: dict[bytes, list[bytes]] = request.args or {}
    for raw_key, values in args.items():
        try:
            key = raw_key.decode("utf-8")
            decoded = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError:
            raise HttpError(400, "query string is not UTF-8") from None
        if len(decoded) != 1:
            raise HttpError(400, f"{key}: given {len(decoded)} times")
        params[key] = decoded[0]
    return params


async def stream_export(request: server.Request, store: Store,
                        search: journal_search.Search) -> None:
    """Write every matching entry as JSON lines or CSV, a store page at a time.

    The first page is read before the status line is sent, so a failing query is still a
    clean 500; a failure later aborts the connection (the chunked body then has no final
    chunk), so a client can never take a cut-short export for a complete one.
    """
    gone: list[bool] = []
    request.notifyFinish().addBoth(lambda _: gone.append(True))
    pages = journal_search.pages(store, search.query)
    first = await _next_page(pages)
    csv_out = search.format == "csv"
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", b"text/csv; charset=utf-8" if csv_out
                      else b"application/x-ndjson; charset=utf-8")
    request.setHeader(b"Content-Disposition",
                      f"attachment; filename=journal.{search.format}".encode())
    line = journal_search.csv_line if csv_out else journal_search.jsonl_line
    try:
        if csv_out:
            request.write(journal_search.csv_header().encode("utf-8"))
        entries = first or ()
        while True:
            if gone:
                return
            if entries:
                request.write("".join(line(e) for e in entries).encode("utf-8"))
            entries = await _next_page(pages)
            if entries is None:
                break
    except Exception:
        log.failure("journal export failed part-way; aborting the response")
        transport: Any = request.channel.transport
        if not gone and transport is not None:
            transport.abortConnection()
        return
    if not gone:
        request.finish()


async def _next_page(pages: Any) -> Any:
    """The next page, or None at the end (``anext(it, default)`` misbehaves when its
    awaitable is driven by ``ensureDeferred`` on CPython 3.11)."""
    try:
        return await pages.__anext__()
    except StopAsyncIteration:
        return None
