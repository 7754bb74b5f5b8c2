"""``GET /v1/openapi.json`` against the real routes (issue 17): a valid OpenAPI 3.1
document, every route the admin resource dispatches on documented, every documented route
answering on a running gateway, and ``GET /v1/`` listing them. (Every admin response any
test provokes is also validated against the document: ``tests/admin_conformance.py``.)"""
from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq
from openapi_spec_validator import OpenAPIV31SpecValidator

from gateway.admin import ROUTES, openapi_document
from tests.admin_conformance import check
from tests.harness import ADMIN, Harness


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def test_the_document_is_openapi_3_1_and_covers_every_route() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    OpenAPIV31SpecValidator(doc).validate()  # raises on any violation of OpenAPI 3.1
    assert documented(doc) == {(r.method, r.path) for r in ROUTES}
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert op["summary"] == route.summary and op["responses"], route
        assert ("401" in op["responses"]) == route.auth, route
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


async def answer(gw: Harness, method: str, path: str, body: Any = None,
                 headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    kwargs: dict[str, Any] = {"headers": ADMIN if headers is None else headers}
    if body is not None:
        kwargs["data"] = json.dumps(body).encode()
    resp = await treq.request(method, gw.admin + path, **kwargs)
    raw = await resp.content()
    ctype = resp.headers.getRawHeaders("content-type", [""])[0].split(";")[0]
    return resp.code, ctype, raw


@pytest_twisted.ensureDeferred
async def test_every_documented_route_answers_as_documented(gw: Harness) -> None:
    """Each documented operation is called on a running gateway: it is routed (no "no such
    route"), and its answer validates against the document."""
    created = await gw.create_order()
    order_id = await gw.create_unregistered_order()
    examples: dict[tuple[str, str], tuple[str, Any]] = {
        ("GET", "/v1/reservations/{eid}/{rno}"): (f"/v1/reservations/1234/{created['rno']}",
                                                  None),
        ("GET", "/v1/journal/{eid}"): ("/v1/journal/1234", None),
        ("GET", "/v1/journal"): ("/v1/journal?eid=1234&limit=5", None),
        ("POST", "/v1/reservations"): ("/v1/reservations",
                                       {"eid": 1234, "order_id": order_id}),
        ("POST", "/v1/imports"): ("/v1/imports", {"reservations": [], "dry_run": True}),
        ("POST", "/v1/sandbox/orders"): ("/v1/sandbox/orders", {"eid": 1234}),
        ("POST", "/v1/recurring-tokens"): ("/v1/recurring-tokens", {
            "eid": 1234, "recurring_token": "v2-token", "customer_token": "no-such-token"}),
    }
    doc = openapi_document()
    for method, template in sorted(documented(doc)):
        path, body = examples.get((method, template), (template, None))
        status, ctype, raw = await answer(gw, method, path, body)
        assert str(status) in doc["paths"][template][method.lower()]["responses"], (
            method, path, status, raw[:200])
        assert b"no such route" not in raw, (method, path)
        assert check(method, path.split("?")[0], status, ctype, raw) == [], (method, path)


@pytest_twisted.ensureDeferred
async def test_v1_lists_the_routes_and_unknown_routes_point_there(gw: Harness) -> None:
    status, _, raw = await answer(gw, "GET", "/v1/")
    listing = json.loads(raw)
    assert status == 200 and listing["openapi"] == "/v1/openapi.json"
    assert [(r["method"], r["path"]) for r in listing["routes"]] == [
        (r.method, r.path) for r in ROUTES]
    status, _, raw = await answer(gw, "GET", "/v1/openapi.json")
    assert status == 200 and json.loads(raw) == json.loads(json.dumps(openapi_document()))
    status, _, raw = await answer(gw, "GET", "/v1/nothing")
    assert status == 404 and "GET /v1/ lists the routes" in json.loads(raw)["error"]
    status, _, _ = await answer(gw, "GET", "/v1/openapi.json", headers={})
    assert status == 401
