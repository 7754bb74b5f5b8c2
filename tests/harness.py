"""Test harness: a real gateway on loopback, its real sandbox, and the official Python SDK.

Nothing here is a mock. ``start_gateway`` runs :class:`gateway.service.Gateway` exactly as
``klarna-gateway serve --sandbox`` does (listeners on ``tcp:0``, SQLite in a temp dir or the
PostgreSQL of ``GATEWAY_TEST_PG_DSN``), with the OpenAPI conformance checker installed on
the sandbox so every REST response the gateway receives is validated. The SDK is
synchronous, so calls run in a thread (``deferToThread``) while the reactor serves them.
"""
from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import treq
from twisted.internet import reactor, threads

from gateway.config import Config, load_config, default_sandbox_config_path
from gateway.service import Gateway, GatewayOptions

socket.setdefaulttimeout(30)  # the SDK sets no timeout; a hung test must fail, not hang

SANDBOX_CONFIG = default_sandbox_config_path()
ADMIN = {"Authorization": "Bearer sandbox-admin"}
SECRETS = {1234: "sandbox-secret", 5678: "sandbox-secret-2"}
REST_AUTH = {1234: ("PK1234_sandbox", "sandbox-password"),
             5678: ("PK5678_sandbox", "sandbox-password-2")}


@dataclass
class Harness:
    gateway: Gateway
    violations: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.legacy_url

    @property
    def admin(self) -> str:
        return self.gateway.admin_url

    @property
    def sandbox(self) -> str:
        assert self.gateway.sandbox_url is not None
        return self.gateway.sandbox_url

    def sdk(self, eid: int = 1234, secret: str | None = None, uri: str | None = None) -> Any:
        """An official ``Klarna_API`` 3.1.0 client pointed at this gateway."""
        import klarna

        k = klarna.Klarna({
            "eid": eid, "secret": secret or SECRETS[eid], "country": "SE",
            "language": "SV", "currency": "SEK", "mode": "beta", "pcstorage": "json",
            "pcuri": "/tmp/klarna-gateway-test-pclasses.json", "uri": uri or self.url,
        })
        k.init()
        return k

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking SDK call in a thread while the reactor serves the gateway."""
        return await threads.deferToThread(fn, *args, **kwargs)

    async def create_order(self, eid: int = 1234, lines: list[dict[str, Any]] | None = None,
                           *, token: str | None = None, **extra: Any) -> dict[str, Any]:
        """Create an order through the admin API (sandbox Klarna Payments) → {order_id, rno}."""
        lines = lines or [order_line("ART-1", "Blåbärssylt", 2, 10000),
                          order_line("ART-2", "Lingon", 3, 5000)]
        body: dict[str, Any] = {
            "eid": eid, "purchase_country": "SE", "purchase_currency": "SEK",
            "locale": "sv-SE", "order_amount": sum(ln["total_amount"] for ln in lines),
            "order_tax_amount": sum(ln["total_tax_amount"] for ln in lines),
            "order_lines": lines, **extra}
        if token:
            body["authorization_token"] = token
        resp = await treq.post(self.admin + "/v1/sandbox/orders", json=body, headers=ADMIN)
        data = await resp.json()
        assert resp.code == 201, data
        return data

    async def create_unregistered_order(self, eid: int = 1234) -> str:
        """An order born in the sandbox that the gateway has never heard of."""
        line = order_line("ART-9", "Hjortron", 1, 20000)
        body = {"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
                "order_amount": 20000, "order_tax_amount": line["total_tax_amount"],
                "order_lines": [line]}
        resp = await treq.post(
            f"{self.sandbox}/payments/v1/authorizations/auth-{uuid.uuid4()}/order",
            json=body, auth=REST_AUTH[eid])
        data = await resp.json()
        assert resp.code == 200, data
        return str(data["order_id"])

    async def order(self, order_id: str, eid: int = 1234) -> dict[str, Any]:
        """Read an order straight from the sandbox (the REST truth)."""
        resp = await treq.get(f"{self.sandbox}/ordermanagement/v1/orders/{order_id}",
                              auth=REST_AUTH[eid])
        assert resp.code == 200
        return await resp.json()

    async def operations(self, order_id: str) -> list[dict[str, Any]]:
        """Every mutation the sandbox applied to the order (exactly-once evidence)."""
        resp = await treq.get(f"{self.sandbox}/sandbox/v1/orders/{order_id}/operations",
                              headers=ADMIN)
        assert resp.code == 200
        return await resp.json()

    async def requests(self, containing: str = "") -> list[dict[str, Any]]:
        """The sandbox's request log (what Klarna received), those whose path contains
        ``containing``."""
        resp = await treq.get(f"{self.sandbox}/sandbox/v1/requests", headers=ADMIN)
        assert resp.code == 200
        return [r for r in await resp.json() if containing in r["path"]]

    async def mapping(self, eid: int, rno: str) -> dict[str, Any]:
        resp = await treq.get(f"{self.admin}/v1/reservations/{eid}/{rno}", headers=ADMIN)
        assert resp.code == 200
        return await resp.json()

    async def fault(self, **spec: Any) -> str:
        """Install a sandbox fault (``POST /sandbox/v1/faults``)."""
        resp = await treq.post(f"{self.sandbox}/sandbox/v1/faults", json=spec, headers=ADMIN)
        data = await resp.json()
        assert resp.code == 201, data
        return str(data["id"])

    async def faults(self) -> list[dict[str, Any]]:
        resp = await treq.get(f"{self.sandbox}/sandbox/v1/faults", headers=ADMIN)
        assert resp.code == 200
        return await resp.json()

    async def clear_faults(self) -> None:
        resp = await treq.delete(f"{self.sandbox}/sandbox/v1/faults", headers=ADMIN)
        await resp.content()

    async def advance_clock(self, seconds: int) -> None:
        resp = await treq.post(f"{self.sandbox}/sandbox/v1/clock",
                               json={"advance_seconds": seconds}, headers=ADMIN)
        assert resp.code == 200
        await resp.content()


def order_line(reference: str, name: str, quantity: int, unit_price: int, *,
               tax_rate: int = 2500, discount: int = 0) -> dict[str, Any]:
    total = quantity * unit_price - discount
    tax = total - round(total * 10000 / (10000 + tax_rate))
    return {"type": "physical", "reference": reference, "name": name, "quantity": quantity,
            "unit_price": unit_price, "tax_rate": tax_rate, "total_amount": total,
            "total_discount_amount": discount, "total_tax_amount": tax}


def install_conformance(gateway: Gateway, violations: list[str]) -> None:
    from tests.conformance import default_checker

    assert gateway.sandbox_port is not None
    resource = gateway.sandbox_port.factory.resource  # type: ignore[attr-defined]
    checker = default_checker()

    def on_response(method: str, path: str, status: int, headers: Any, body: bytes) -> None:
        for problem in checker.check(method, path, status, headers, body):
            violations.append(f"{method} {path} -> {status}: {problem}")

    resource.on_response = on_response

    def on_admin_response(method: str, path: str, status: int, content_type: str,
                          body: bytes) -> None:
        from tests.admin_conformance import check

        for problem in check(method, path, status, content_type, body):
            violations.append(f"admin {method} {path} -> {status}: {problem}")

    gateway.admin_resource.on_response = on_admin_response


async def start_gateway(db_url: str, config: Config | None = None, **options: Any) -> Harness:
    config = config or load_config(SANDBOX_CONFIG)
    opts = GatewayOptions(listen="tcp:0:interface=127.0.0.1",
                          admin_listen="tcp:0:interface=127.0.0.1",
                          sandbox_listen="tcp:0:interface=127.0.0.1", db_url=db_url, **options)
    gw = Gateway(config, opts, reactor)
    await gw.start()
    h = Harness(gw)
    install_conformance(gw, h.violations)
    return h


def demo_config(source: str, **merchants: dict[str, Any]) -> Config:
    """The demo merchants with extra keys: ``demo_config("x", m1234={"console_token": …})``
    sets them in eid 1234's table (each ``m<eid>``)."""
    import tomllib

    from gateway.config import parse_config

    raw = tomllib.loads(SANDBOX_CONFIG.read_text(encoding="utf-8"))
    for merchant in raw["merchants"]:
        merchant.update(merchants.get(f"m{merchant['eid']}", {}))
    return parse_config(raw, source=source)


@asynccontextmanager
async def running(tmp_path: Any, config: Config) -> AsyncIterator[Harness]:
    """A gateway on SQLite in ``tmp_path`` with ``config``, stopped on the way out."""
    h = await start_gateway(f"sqlite:///{tmp_path}/gateway.db", config=config)
    try:
        yield h
    finally:
        await h.gateway.stop()


async def serving(db_url: str, config: Config | None = None, **options: Any
                  ) -> AsyncIterator[Harness]:
    """A fixture's body: the gateway for the test, stopped after it, and no sandbox
    response that broke the OpenAPI spec (``async for h in serving(...): yield h``)."""
    h = await start_gateway(db_url, config, **options)
    try:
        yield h
    finally:
        await h.gateway.stop()
    assert not h.violations, "\n".join(h.violations)


def pg_schema_url(dsn: str) -> tuple[str, str]:
    """A fresh PostgreSQL schema for one test: (url with search_path, schema name)."""
    name = "t_" + uuid.uuid4().hex[:12]
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options=-csearch_path%3D{name}", name


def dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True)
