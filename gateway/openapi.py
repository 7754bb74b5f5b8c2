"""The admin API's reference: an OpenAPI 3.1 document built from the routes it serves.

:func:`document` walks :data:`gateway.admin.ROUTES` (the table the admin resource
dispatches on), so a route cannot be served without being documented, and each route's
operation here names its parameters, request body and responses. ``GET /v1/openapi.json``
serves the result; ``tests/test_admin_openapi.py`` checks it against the real routes, and
every admin response a test provokes is validated against it (``tests/harness.py``).

The schemas describe what the handlers write (``gateway.admin``, ``gateway.tools.journal``,
``gateway.tools.imports``); they are strict where a client relies on a field and open where
the value is Klarna's or the legacy call's own (REST bodies and results, call parameters).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

VERSION = "3.1.0"


class RouteLike(Protocol):
    method: str
    path: str
    summary: str
    auth: bool


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


STRING_OR_NULL = {"type": ["string", "null"]}
INT_OR_NULL = {"type": ["integer", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}
ANY: dict[str, Any] = {}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string", "description": "one line naming the bad value"}}},
    "RouteList": {"type": "object", "required": ["routes", "openapi"], "properties": {
        "openapi": {"type": "string"},
        "routes": {"type": "array", "items": {
            "type": "object", "required": ["method", "path", "summary", "auth"],
            "properties": {"method": {"type": "string"}, "path": {"type": "string"},
                           "summary": {"type": "string"}, "auth": {"type": "boolean"}}}}}},
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"const": "ok"}}},
    "Readiness": {"type": "object", "required": ["ready"], "properties": {
        "ready": {"type": "boolean"}, "draining": {"type": "boolean"},
        "database": {"type": "string"}, "recovery": {"type": "string"}}},
    "ReservationRequest": {
        "type": "object", "required": ["eid", "order_id"], "properties": {
            "eid": {"type": ["integer", "string"], "description": "a configured eid"},
            "order_id": {"type": "string", "description": "Klarna's order id; it must "
                                                          "exist for that eid"},
            "rno": {"type": ["string", "integer"],
                    "description": "the ERP's reservation number (default: issued)"}}},
    "Reservation": {"type": "object", "required": ["eid", "rno", "order_id"], "properties": {
        "eid": {"type": "integer"}, "rno": {"type": "string"},
        "order_id": {"type": "string"}}},
    "Credit": {"type": "object", "required": ["credno", "refund_id", "refunded_amount"],
               "properties": {"credno": STRING_OR_NULL, "refund_id": {"type": "string"},
                              "refunded_amount": {"type": "integer"},
                              "adopted": {"type": "boolean"},
                              "order_lines": {"type": ["array", "null"]}}},
    "Invoice": {"type": "object", "required": ["invno", "capture_id", "captured_amount",
                                               "refunded_amount", "credits"], "properties": {
        "invno": {"type": "string"}, "capture_id": {"type": "string"},
        "captured_amount": {"type": "integer"}, "refunded_amount": {"type": "integer"},
        "adopted": {"type": "boolean"}, "order_lines": {"type": ["array", "null"]},
        "refunded_quantities": {"type": ["object", "null"]},
        "credits": {"type": "array", "items": _ref("Credit")}}},
    "ReservationDetail": {"type": "object",
                          "required": ["eid", "rno", "order_id", "status", "origin",
                                       "invoices"], "properties": {
        "eid": {"type": "integer"}, "rno": {"type": "string"}, "order_id": {"type": "string"},
        "status": STRING_OR_NULL, "origin": {"type": "string"},
        "invoices": {"type": "array", "items": _ref("Invoice")}}},
    "ImportRequest": {"type": "object", "additionalProperties": False, "properties": {
        "reservations": {"type": "array", "items": {"type": "object", "properties": {
            "eid": ANY, "rno": ANY, "order_id": ANY}}},
        "invoices": {"type": "array", "items": {"type": "object", "properties": {
            "eid": ANY, "invno": ANY, "order_id": ANY, "capture_id": ANY}}},
        "credits": {"type": "array", "items": {"type": "object", "properties": {
            "eid": ANY, "invno": ANY, "credno": ANY, "refund_id": ANY}}},
        "dry_run": {"type": "boolean"}}},
    "ImportRow": {"type": "object", "required": ["row", "status", "message"], "properties": {
        "row": ANY, "status": {"enum": ["ok", "unchanged", "refused"]},
        "message": {"type": "string"}}},
    "ImportReport": {"type": "object",
                     "required": ["dry_run", "counts", "reservations", "invoices", "credits"],
                     "properties": {
        "dry_run": {"type": "boolean"},
        "counts": {"type": "object", "required": ["ok", "unchanged", "refused"],
                   "properties": {k: {"type": "integer"}
                                  for k in ("ok", "unchanged", "refused")}},
        "reservations": {"type": "array", "items": _ref("ImportRow")},
        "invoices": {"type": "array", "items": _ref("ImportRow")},
        "credits": {"type": "array", "items": _ref("ImportRow")}}},
    "SandboxOrderRequest": {
        "type": "object",
        "required": ["eid", "purchase_country", "purchase_currency", "locale",
                     "order_amount", "order_tax_amount", "order_lines"],
        "description": "a Klarna Payments order body, plus the eid (and optionally the rno "
                       "to register it under, and an authorization_token)",
        "properties": {"eid": {"type": ["integer", "string"]},
                       "rno": {"type": ["string", "integer"]},
                       "authorization_token": {"type": "string"},
                       "order_lines": {"type": "array"}}},
    "SandboxOrder": {"type": "object", "required": ["order_id", "rno"], "properties": {
        "order_id": {"type": "string"}, "rno": {"type": "string"},
        "fraud_status": STRING_OR_NULL}},
    "RecurringTokenRequest": {
        "type": "object", "required": ["eid", "recurring_token", "customer_token"],
        "properties": {"eid": {"type": ["integer", "string"]},
                       "recurring_token": {"type": "string"},
                       "customer_token": {"type": "string"}}},
    "RecurringToken": {"type": "object",
                       "required": ["eid", "recurring_token", "customer_token"],
                       "properties": {"eid": {"type": "integer"},
                                      "recurring_token": {"type": "string"},
                                      "customer_token": {"type": "string"}}},
    "RestStep": {"type": "object", "required": ["step", "method", "path", "state"],
                 "properties": {
        "step": {"type": "integer"}, "method": {"type": "string"}, "path": {"type": "string"},
        "body": ANY, "purpose": STRING_OR_NULL, "state": {"type": "string"},
        "money": {"type": "string"}, "idempotency_key": STRING_OR_NULL, "result": ANY,
        "updated_at": TIME}},
    "JournalRecord": {"type": "object",
                      "required": ["id", "eid", "method", "outcome", "state", "call",
                                   "rest_steps", "notes", "reply", "fault_code",
                                   "created_at", "delivered_at"], "properties": {
        "id": {"type": "integer"}, "eid": {"type": "integer"}, "method": {"type": "string"},
        "outcome": {"type": "string", "description": "ok, pending, fault or the fault code"},
        "state": {"type": "string"}, "rno": STRING_OR_NULL, "invno": STRING_OR_NULL,
        "order_id": STRING_OR_NULL, "call": {"type": "object"},
        "rest_steps": {"type": "array", "items": _ref("RestStep")},
        "notes": {"type": "array", "items": {"type": "string"}}, "reply": ANY,
        "fault_code": INT_OR_NULL, "fault_string": STRING_OR_NULL,
        "attempts": {"type": "integer"}, "created_at": TIME, "updated_at": TIME,
        "delivered_at": TIME}},
    "JournalPage": {"type": "object", "required": ["entries", "next_cursor"], "properties": {
        "entries": {"type": "array", "items": _ref("JournalRecord")},
        "next_cursor": {"type": ["string", "null"],
                        "description": "pass back as cursor for the next page"}}},
    "JournalCalls": {"type": "object", "required": ["eid", "calls"], "properties": {
        "eid": {"type": "integer"},
        "calls": {"type": "array", "items": {
            "type": "object", "required": ["id", "method", "state", "rest_steps"],
            "properties": {"id": {"type": "integer"}, "method": {"type": "string"},
                           "state": {"type": "string"}, "call": {"type": "object"},
                           "reply": ANY, "fault_code": INT_OR_NULL,
                           "fault_string": STRING_OR_NULL, "order_id": STRING_OR_NULL,
                           "notes": {"type": "array"}, "created_at": {"type": "number"},
                           "delivered_at": {"type": ["number", "null"]},
                           "rest_steps": {"type": "array"}}}}}},
}


def _query(name: str, description: str, schema: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _path(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


EID = _path("eid", "a configured eid", {"type": "integer"})
BAD = {"400": _error("a parameter or the body is unusable (the message names it)")}
UNCONFIGURED = {"404": _error("the eid is not configured")}
KLARNA = {"502": _error("Klarna did not answer, or refused the merchant's credentials"),
          "503": _error("the merchant may not send a REST request in time (its "
                        "rest_rate_limit, or Klarna's Retry-After): nothing was sent")}

JOURNAL_FILTERS = [
    _query("eid", "only this merchant (a configured eid)", {"type": "integer"}),
    _query("method", "a legacy method, e.g. activate"),
    _query("rno", "a reservation number: every call on that reservation, those naming one "
                  "of its invoices included"),
    _query("invno", "an invoice number"),
    _query("order_id", "Klarna's order id"),
    _query("merchant_order_id", "the call's orderid1/orderid2, exact"),
    _query("outcome", "ok, pending, fault or a fault code such as 9103"),
    _query("since", "ISO-8601, inclusive (UTC without an offset)"),
    _query("until", "ISO-8601, exclusive (UTC without an offset)"),
    _query("limit", "page size, 1 to 500 (default 50)", {"type": "integer"}),
    _query("cursor", "next_cursor of the previous page"),
    _query("format", "json (a page), jsonl or csv (every match, streamed)",
           {"enum": ["json", "jsonl", "csv"]}),
]

#: Per route (``METHOD /path``): the operation's parts besides its summary.
OPERATIONS: dict[str, dict[str, Any]] = {
    "GET /healthz": {"responses": {"200": _json(_ref("Health"), "the process answers (its "
                                                                "database may not: /readyz)")}},
    "GET /readyz": {"responses": {
        "200": _json(_ref("Readiness"), "ready: database migrated and reachable, recovery "
                                        "sweeping, not draining"),
        "503": _json(_ref("Readiness"), "not ready; the body says why")}},
    "GET /metrics": {"responses": {"200": {
        "description": "Prometheus text format",
        "content": {"text/plain": {"schema": {"type": "string"}}}}}},
    "GET /v1/": {"responses": {"200": _json(_ref("RouteList"), "every route of this API")}},
    "GET /v1/openapi.json": {"responses": {"200": _json(
        {"type": "object", "required": ["openapi", "paths"]}, "this document")}},
    "POST /v1/reservations": {
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("ReservationRequest")}}},
        "responses": {"201": _json(_ref("Reservation"), "registered"), **BAD, **UNCONFIGURED,
                      "409": _error("the rno or the order is already mapped otherwise"),
                      "422": _error("the order does not exist for that eid"), **KLARNA}},
    "GET /v1/reservations/{eid}/{rno}": {
        "parameters": [EID, _path("rno", "the reservation number", {"type": "string"})],
        "responses": {"200": _json(_ref("ReservationDetail"),
                                   "the mapping, its invoices and their credits"),
                      **BAD, "404": _error("the eid is not configured, or the rno is "
                                           "unknown for it")}},
    "POST /v1/imports": {
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("ImportRequest")}}},
        "responses": {"200": _json(_ref("ImportReport"),
                                   "one entry per row, in the order given"), **BAD}},
    "POST /v1/sandbox/orders": {
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("SandboxOrderRequest")}}},
        "responses": {"201": _json(_ref("SandboxOrder"), "created and registered"), **BAD,
                      "404": _error("the eid is not configured, or the gateway runs no "
                                    "sandbox (serve --sandbox)"),
                      "409": _error("the rno is already registered"),
                      "422": _error("the sandbox refused the order"), **KLARNA}},
    "GET /v1/journal": {
        "parameters": JOURNAL_FILTERS,
        "responses": {"200": {"description": "a page (json), or every match (jsonl, csv)",
                              "content": {
                                  "application/json": {"schema": _ref("JournalPage")},
                                  "application/x-ndjson": {"schema": {"type": "string"}},
                                  "text/csv": {"schema": {"type": "string"}}}},
                      **BAD, **UNCONFIGURED}},
    "GET /v1/journal/{eid}": {
        "parameters": [EID],
        "responses": {"200": _json(_ref("JournalCalls"), "the latest calls of the eid"),
                      **BAD, **UNCONFIGURED}},
    "POST /v1/recurring-tokens": {
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": _ref("RecurringTokenRequest")}}},
        "responses": {"201": _json(_ref("RecurringToken"), "mapped"),
                      "200": _json(_ref("RecurringToken"), "already mapped so"), **BAD,
                      **UNCONFIGURED,
                      "409": _error("the recurring token is mapped to another token"),
                      "422": _error("the customer token does not exist for that eid"),
                      **KLARNA}},
}


def document(routes: Iterable[RouteLike], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (every one must have an operation here)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        key = f"{route.method} {route.path}"
        operation = {"summary": route.summary, "operationId": _operation_id(route),
                     **OPERATIONS[key]}
        if route.auth:
            operation["responses"] = {
                **operation["responses"],
                "401": _error("missing or wrong bearer token")}
        else:
            operation["security"] = []
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": VERSION,
        "info": {"title": "klarna-gateway admin API", "version": version,
                 "description": "The admin listener of klarna-gateway (default "
                                "127.0.0.1:8081): reservations, imports, journal search, "
                                "sandbox orders, recurring tokens, health and metrics. "
                                "Every route but /healthz, /readyz and /metrics needs "
                                "`Authorization: Bearer <admin token>`. Errors are "
                                "`{\"error\": \"…\"}` naming the bad value."},
        "servers": [{"url": "http://127.0.0.1:8081"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "the [gateway] admin token (sandbox-admin with "
                                      "serve --sandbox)"}}},
    }


def _operation_id(route: RouteLike) -> str:
    words = [w.strip("{}") for w in route.path.replace(".", "/").replace("-", "_").split("/")
             if w]
    return route.method.lower() + "_" + "_".join(words or ["index"])
