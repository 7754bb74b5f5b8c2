"""The ``sandbox`` pytest fixture: a real sandbox on loopback, checked against the OpenAPI spec.

Import it into a conftest (``from tests.sandbox_fixtures import sandbox  # noqa: F401``).
Each test gets a fresh sandbox listening on ``tcp:0:interface=127.0.0.1`` with the demo
merchants of ``config/sandbox.toml``, on the real reactor (pytest-twisted). Every Klarna-API
response it sends is checked by :class:`tests.conformance.OpenApiChecker`; at teardown the
test fails if any response violated the spec.

The yielded :class:`RunningSandbox` has ``url``, ``resource``, ``clock``, ``admin_token``,
``config`` and ``violations``, plus small async helpers (``request``, ``create_order``,
``control``, ``add_fault``, ``get_order``) built on a non-persistent treq client so that no
connection outlives the test.
"""
from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet.interfaces import IListeningPort
from twisted.web.client import Agent, HTTPConnectionPool

from gateway.config import Config, default_sandbox_config_path, load_config
from gateway.sandbox.clock import SandboxClock
from gateway.sandbox.resource import SandboxResource
from gateway.sandbox.service import listen_sandbox
from tests.conformance import default_checker

def basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def sample_lines(amount: int = 10000, reference: str = "SKU-1") -> list[dict[str, Any]]:
    """One physical order line worth ``amount`` (25% VAT included)."""
    return [{
        "type": "physical", "reference": reference, "name": "Sandbox item", "quantity": 1,
        "unit_price": amount, "tax_rate": 2500, "total_amount": amount,
        "total_discount_amount": 0, "total_tax_amount": amount - amount * 10000 // 12500,
    }]


def order_body(amount: int = 10000, lines: list[dict[str, Any]] | None = None,
               **fields: Any) -> dict[str, Any]:
    """A valid Klarna Payments create-order body."""
    lines = lines if lines is not None else sample_lines(amount)
    body: dict[str, Any] = {
        "purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
        "order_amount": amount,
        "order_tax_amount": sum(line.get("total_tax_amount", 0) for line in lines),
        "order_lines": lines,
        "billing_address": {"given_name": "Testperson", "family_name": "Approved",
                            "street_address": "Sveavägen 44", "postal_code": "11134",
                            "city": "Stockholm", "country": "SE",
                            "email": "customer@example.com"},
        "shipping_address": {"given_name": "Testperson", "family_name": "Approved",
                             "street_address": "Sveavägen 44", "postal_code": "11134",
                             "city": "Stockholm", "country": "SE"},
        "merchant_reference1": "ON-1",
    }
    body.update(fields)
    return body


@dataclass
class Reply:
    """A response read completely: status, headers (first value, lower-case keys), body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunningSandbox:
    url: str
    resource: SandboxResource
    config: Config
    port: IListeningPort
    http: HTTPClient
    pool: HTTPConnectionPool
    violations: list[str] = field(default_factory=list)

    @property
    def clock(self) -> SandboxClock:
        return self.resource.clock

    @property
    def admin_token(self) -> str:
        return self.config.sandbox.admin_token

    def auth_header(self, eid: int = 1234) -> str:
        merchant = self.config.merchant(eid)
        assert merchant is not None
        return basic_auth(merchant.rest_username, merchant.rest_password)

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      data: bytes | None = None, merchant: int | None = 1234,
                      authorization: str | None = None, idempotency_key: str | None = None,
                      headers: dict[str, str] | None = None,
                      timeout: float | None = 10.0) -> Reply:
        """One request to the sandbox; ``merchant=None`` sends no credentials."""
        sent: dict[str, str] = dict(headers or {})
        if authorization is not None:
            sent["Authorization"] = authorization
        elif merchant is not None:
            sent["Authorization"] = self.auth_header(merchant)
        if idempotency_key is not None:
            sent["Klarna-Idempotency-Key"] = idempotency_key
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            sent.setdefault("Content-Type", "application/json")
        response = await self.http.request(method, self.url + path, data=data,
                                           headers=sent, timeout=timeout)
        body = await response.content()
        flat = {k.decode().lower(): v[0].decode()
                for k, v in response.headers.getAllRawHeaders()}
        return Reply(response.code, flat, body)

    async def create_order(self, merchant: int = 1234, token: str | None = None,
                           amount: int = 10000, **fields: Any) -> str:
        """Place an order through the Klarna Payments endpoint; returns its order_id."""
        token = token or f"auth-{uuid.uuid4()}"
        reply = await self.request("POST", f"/payments/v1/authorizations/{token}/order",
                                   json_body=order_body(amount, **fields), merchant=merchant)
        assert reply.status == 200, reply.body
        order_id: str = reply.json()["order_id"]
        return order_id

    async def get_order(self, order_id: str, merchant: int = 1234) -> dict[str, Any]:
        reply = await self.request("GET", f"/ordermanagement/v1/orders/{order_id}",
                                   merchant=merchant)
        assert reply.status == 200, reply.body
        document: dict[str, Any] = reply.json()
        return document

    async def control(self, method: str, path: str, json_body: Any = None,
                      token: str | None = None) -> Reply:
        """Call the control API (``/sandbox/v1/...``) with the admin bearer token."""
        return await self.request(
            method, path, json_body=json_body, merchant=None,
            authorization=f"Bearer {token if token is not None else self.admin_token}")

    async def add_fault(self, **spec: Any) -> str:
        reply = await self.control("POST", "/sandbox/v1/faults", spec)
        assert reply.status == 201, reply.body
        fault_id: str = reply.json()["id"]
        return fault_id

    async def advance(self, seconds: float) -> None:
        reply = await self.control("POST", "/sandbox/v1/clock", {"advance_seconds": seconds})
        assert reply.status == 200, reply.body


async def start_sandbox(config: Config | None = None) -> RunningSandbox:
    """Start a sandbox on an ephemeral loopback port with the conformance hook installed."""
    from twisted.internet import reactor

    config = config or load_config(default_sandbox_config_path())
    port = await listen_sandbox(reactor, config, "tcp:0:interface=127.0.0.1")
    resource = port.factory.resource  # type: ignore[attr-defined]
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool))
    address = port.getHost()
    running = RunningSandbox(url=f"http://127.0.0.1:{address.port}", resource=resource,
                             config=config, port=port, http=http, pool=pool)
    checker = default_checker()

    def on_response(method: str, path: str, status: int, headers: dict[str, str],
                    body: bytes) -> None:
        running.violations.extend(checker.check(method, path, status, headers, body))

    resource.on_response = on_response
    return running


async def stop_sandbox(running: RunningSandbox) -> None:
    """Free hung requests, stop listening and close client connections."""
    running.resource.shutdown()
    await running.port.stopListening()
    await running.pool.closeCachedConnections()


@pytest_twisted.async_yield_fixture
async def sandbox() -> Any:
    """A fresh sandbox per test; fails the test if any response broke the OpenAPI contract."""
    running = await start_sandbox()
    try:
        yield running
    finally:
        await stop_sandbox(running)
    if running.violations:
        pytest.fail("sandbox responses violated the OpenAPI spec:\n" +
                    "\n".join(running.violations), pytrace=False)


__all__ = ["Reply", "RunningSandbox", "basic_auth", "order_body", "sample_lines", "sandbox",
           "start_sandbox", "stop_sandbox"]
