"""Every merchant-facing edge of the legacy listener runs the one boundary check.

The edges are found by walking the served site's resource tree (``Site.resource``, its
``children`` and every resource a resource holds), never from a list kept here. Each edge
found must have probes below (requests it would serve, signed for a merchant); each probe
is sent four times against a real gateway:

- for a merchant with no network restriction and the right secret: not refused by the
  boundary (so the probe is a real request, and the refusals below mean something);
- for a merchant whose ``allowed_networks`` exclude the loopback client: refused, reason
  ``network``;
- for an eid no merchant has: refused, reason ``unknown_merchant``;
- with a wrong secret: refused (``credential``; an edge that finds its merchant by the
  credential itself refuses it as ``unknown_merchant``).

"Refused by the boundary" means the boundary's log event (namespace ``gateway.boundary``)
was emitted for the request and the answer is a refusal in the edge's own dialect. An edge
without probes, or one that serves a probe without that event, fails the test; the last
tests doctor the tree to show both are caught.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import pytest_twisted
import treq
from twisted.internet import reactor, threads
from twisted.logger import globalLogPublisher
from twisted.web import server
from twisted.web.resource import IResource, Resource

from gateway.edge.resource import LegacyResource, make_site
from gateway.recurring.resource import RecurringResource
from tests.e2e.test_recurring import make_token
from tests.harness import ADMIN, SECRETS, Harness, demo_config, running
from tests.legacy.legacy_sdk_capture import make_sdk

#: Calls from loopback are not accepted for this eid; OPEN has no list.
RESTRICTED, OPEN, UNKNOWN = 1234, 5678, 4242


@pytest_twisted.async_yield_fixture
async def gwb(tmp_path: Any) -> AsyncIterator[Harness]:
    config = demo_config("boundary-test",
                         **{f"m{RESTRICTED}": {"allowed_networks": ["192.0.2.0/28"]}})
    async with running(tmp_path, config) as h:
        yield h


# -- the walk ------------------------------------------------------------------------------


def edges_of(root: Any) -> list[Any]:
    """The leaf resources reachable from ``root``: through ``children`` and through any
    attribute holding a resource (or a list, tuple or dict of them)."""
    leaves: list[Any] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        resource = stack.pop()
        if id(resource) in seen:
            continue
        seen.add(id(resource))
        held: list[Any] = list(getattr(resource, "children", {}).values())
        for value in vars(resource).values():
            values = value.values() if isinstance(value, dict) else \
                value if isinstance(value, (list, tuple)) else [value]
            held.extend(v for v in values if IResource.providedBy(v))
        held = [r for r in held if id(r) not in seen]
        if held:
            stack.extend(held)
        elif IResource.providedBy(resource):
            leaves.append(resource)
    return leaves


# -- probes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    events: list[dict[str, Any]]

    @property
    def boundary(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("log_namespace") == "gateway.boundary"]


def xmlrpc_probes(eid: int, secret: str) -> list[Probe]:
    sdk = make_sdk(eid=eid, secret=secret)
    body = sdk.call(1, sdk.client.check_order_status, "8000000000", 0)
    return [Probe("check_order_status", "POST", "/", body, {"Content-Type": "text/xml"})]


def kco_digest(body: bytes, secret: str) -> str:
    return base64.b64encode(hashlib.sha256(body + secret.encode()).digest()).decode()


def kco_order(eid: int, activate: bool = True) -> bytes:
    return json.dumps({
        "purchase_country": "se", "purchase_currency": "sek", "locale": "sv-se",
        "merchant": {"id": str(eid)}, "activate": activate,
        "cart": {"items": [{"reference": "SUB-1", "name": "Box", "quantity": 1,
                            "unit_price": 29900, "tax_rate": 2500}]}}).encode()


def kco_probes(eid: int, secret: str) -> list[Probe]:
    body = kco_order(eid)
    return [
        Probe("recurring order", "POST", "/checkout/recurring/ct-boundary/orders", body,
              {"Content-Type": "application/vnd.klarna.checkout.recurring-order-v1+json",
               "Authorization": f"Klarna {kco_digest(body, secret)}"}),
        Probe("recurring status", "GET", "/checkout/recurring/ct-boundary", b"",
              {"Authorization": f"Klarna {kco_digest(b'', secret)}"}),
    ]


def xmlrpc_refused(answer: Answer, reason: str) -> bool:
    codes = {"network": 1999, "unknown_merchant": 9113, "credential": 9114}
    found = re.search(rb"<name>faultCode</name>\s*<value><int>(-?\d+)</int>", answer.body)
    return answer.status == 200 and "text/xml" in answer.content_type and \
        found is not None and int(found.group(1)) == codes[reason]


def kco_refused(answer: Answer, reason: str) -> bool:
    statuses = {"network": {403}, "unknown_merchant": {400, 401, 404},
                "credential": {401}}
    try:
        document = json.loads(answer.body)
    except ValueError:
        return False
    return answer.status in statuses[reason] and "json" in answer.content_type and \
        document.get("http_status_code") == answer.status


@dataclass(frozen=True)
class EdgeProbes:
    build: Callable[[int, str], list[Probe]]
    refused: Callable[[Answer, str], bool]
    #: The edge finds its merchant by the credential itself (a wrong one names nobody).
    merchant_by_credential: frozenset[str] = frozenset()


PROBES: dict[type, EdgeProbes] = {
    LegacyResource: EdgeProbes(xmlrpc_probes, xmlrpc_refused),
    RecurringResource: EdgeProbes(kco_probes, kco_refused,
                                  merchant_by_credential=frozenset({"recurring status"})),
}


async def send(base: str, probe: Probe) -> Answer:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        resp = await treq.request(probe.method, base.rstrip("/") + probe.path,
                                  data=probe.body or None, headers=probe.headers)
        body = await resp.content()
    finally:
        globalLogPublisher.removeObserver(events.append)
    content_type = (resp.headers.getRawHeaders("content-type") or [""])[0]
    return Answer(resp.code, content_type, body, events)


async def boundary_problems(root: Any, base: str, probes: dict[type, EdgeProbes]
                            ) -> list[str]:
    """What is wrong with the boundary of every edge under ``root`` (served at ``base``)."""
    problems: list[str] = []
    edges = edges_of(root)
    for edge in edges:
        kind = type(edge)
        table = probes.get(kind)
        if table is None:
            problems.append(f"{kind.__name__}: an edge with no boundary probes (add them to "
                            f"PROBES in {__name__})")
            continue
        for good in table.build(OPEN, SECRETS[OPEN]):
            answer = await send(base, good)
            if answer.boundary:
                problems.append(f"{kind.__name__} {good.name}: a valid request was refused "
                                f"by the boundary: {answer.boundary}")
        attempts = [("network", table.build(RESTRICTED, SECRETS[RESTRICTED])),
                    ("unknown_merchant", table.build(UNKNOWN, "no-such-secret")),
                    ("credential", table.build(OPEN, "wrong-secret"))]
        for reason, built in attempts:
            for probe in built:
                answer = await send(base, probe)
                want = reason
                if reason == "credential" and probe.name in table.merchant_by_credential:
                    want = "unknown_merchant"
                reasons = [e.get("reason") for e in answer.boundary]
                if reasons != [want]:
                    problems.append(f"{kind.__name__} {probe.name} ({reason}): boundary "
                                    f"events {reasons}, expected [{want!r}]; answered "
                                    f"{answer.status} {answer.body[:120]!r}")
                elif not table.refused(answer, want):
                    problems.append(f"{kind.__name__} {probe.name} ({reason}): not a refusal "
                                    f"in the edge's dialect: {answer.status} "
                                    f"{answer.content_type} {answer.body[:120]!r}")
    if not edges:
        problems.append("no edge found under the site's root")
    return problems


@pytest_twisted.ensureDeferred
async def test_every_edge_of_the_site_runs_the_boundary_check(gwb: Harness) -> None:
    assert gwb.gateway.legacy_port is not None
    root = gwb.gateway.legacy_port.factory.resource  # type: ignore[attr-defined]
    kinds = {type(e) for e in edges_of(root)}
    assert {LegacyResource, RecurringResource} <= kinds
    assert await boundary_problems(root, gwb.url, PROBES) == []
    resp = await treq.get(f"{gwb.admin}/v1/journal?eid={RESTRICTED}", headers=ADMIN)
    assert (await resp.json())["entries"] == []  # nothing ran for the excluded network


# -- the test catches an edge that skips the check ------------------------------------------


class BypassEdge(Resource):
    """A new edge that answers 200 without the boundary check."""

    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        return b'{"ok": true}'


class Doctored(Resource):
    """The gateway's real edge root, plus ``/extra/`` served by ``extra``."""

    isLeaf = True

    def __init__(self, real: Any, extra: Resource) -> None:
        super().__init__()
        self.real = real
        self.extra = extra

    def render(self, request: server.Request) -> Any:
        if request.path.startswith(b"/extra/"):
            return self.extra.render(request)
        return self.real.render(request)


@pytest_twisted.ensureDeferred
async def test_an_edge_that_skips_the_check_is_caught(gwb: Harness) -> None:
    assert gwb.gateway.legacy_port is not None
    real = gwb.gateway.legacy_port.factory.resource  # type: ignore[attr-defined]
    doctored = Doctored(real, BypassEdge())
    port = reactor.listenTCP(0, make_site(doctored), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}/"
    try:
        problems = await boundary_problems(doctored, base, PROBES)
        assert problems == ["BypassEdge: an edge with no boundary probes (add them to PROBES "
                            f"in {__name__})"]

        def bypass_probes(eid: int, secret: str) -> list[Probe]:
            return [Probe("extra", "POST", "/extra/orders", kco_order(eid),
                          {"Authorization": f"Klarna {kco_digest(kco_order(eid), secret)}"})]
        table = {**PROBES, BypassEdge: EdgeProbes(bypass_probes, kco_refused)}
        problems = await boundary_problems(doctored, base, table)
        assert len(problems) == 3 and all(p.startswith("BypassEdge extra") for p in problems)
    finally:
        await port.stopListening()


# -- the KCO edge: networks, dialect, hostile bodies ----------------------------------------


def raw_request(url: str, head: bytes, body: bytes) -> bytes:
    """Send ``head`` + ``body`` over a plain socket; the answer (whatever came)."""
    u = urlparse(url)
    answer = b""
    with socket.create_connection((u.hostname, u.port), timeout=20) as sock:
        try:
            sock.sendall(head + body)
        except OSError:
            pass
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    return answer


def failures(events: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("log_format")) for e in events if "log_failure" in e]


@pytest_twisted.ensureDeferred
async def test_kco_edge_refuses_an_excluded_network_before_anything_runs(gwb: Harness
                                                                          ) -> None:
    """The attack of the review: a valid digest and ``activate: true`` from a network
    eid 1234 excludes. Before: 200 with a reservation and an invoice. Now: JSON 403, and
    the status GET too; no order at Klarna, nothing journaled."""
    await make_token(gwb, "ct-boundary", eid=RESTRICTED)
    [order, status] = kco_probes(RESTRICTED, SECRETS[RESTRICTED])
    answer = await send(gwb.url, order)
    assert answer.status == 403, answer.body
    assert json.loads(answer.body)["http_status_code"] == 403
    assert b"reservation" not in answer.body
    answer = await send(gwb.url, status)
    assert answer.status == 403 and "json" in answer.content_type
    resp = await treq.get(f"{gwb.admin}/v1/journal?eid={RESTRICTED}", headers=ADMIN)
    assert (await resp.json())["entries"] == []


@pytest_twisted.ensureDeferred
async def test_kco_edge_answers_hostile_bodies_in_json(gwb: Harness) -> None:
    """100,000 ``[`` then ``]``: a JSON 400 naming the nesting, no traceback (before: 500
    and a RecursionError per request). 2 MiB: a JSON 413 (before: an XML-RPC fault)."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        deep = b"[" * 100_000 + b"]" * 100_000
        resp = await treq.post(gwb.url + "checkout/recurring/ct-1/orders", data=deep,
                               headers={"Authorization": "Klarna x"})
        body = await resp.json()
        assert resp.code == 400 and "nest" in body["internal_message"], body
        head = (b"POST /checkout/recurring/ct-1/orders HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (2 << 20))
        answer = await threads.deferToThread(raw_request, gwb.url, head, b"{" * (2 << 20))
        status, _, rest = answer.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"application/vnd.klarna.error-v1+json" in rest.split(b"\r\n\r\n")[0]
        assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["http_status_code"] == 413
        resp = await treq.get(gwb.url + "checkout/recurring/ct%ff")
        assert resp.code == 400 and (await resp.json())["http_status_code"] == 400
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert failures(events) == []


@pytest_twisted.ensureDeferred
async def test_every_json_edge_bounds_nesting(gwb: Harness) -> None:
    """The admin API and the sandbox answer deep JSON with a clear 400, no traceback."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    deep = b'{"eid": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    try:
        for path in ("/v1/reservations", "/v1/imports", "/v1/recurring-tokens",
                     "/v1/sandbox/orders"):
            resp = await treq.post(gwb.admin + path, data=deep, headers=ADMIN)
            body = await resp.json()
            assert resp.code == 400 and "nest" in body["error"], (path, body)
        resp = await treq.post(f"{gwb.sandbox}/sandbox/v1/clock", data=deep, headers=ADMIN)
        assert resp.code == 400, await resp.text()
        await resp.content()
        resp = await treq.post(
            f"{gwb.sandbox}/payments/v1/authorizations/auth-deep/order", data=deep,
            auth=("PK1234_sandbox", "sandbox-password"))
        assert resp.code == 400, await resp.text()
        await resp.content()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert failures(events) == []
