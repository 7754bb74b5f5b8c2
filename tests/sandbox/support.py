"""Helpers for customer-token and seeded-mode tests, on top of ``tests/sandbox_fixtures.py``."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor

from gateway.config import default_sandbox_config_path, load_config
from tests.sandbox_fixtures import RunningSandbox, order_body, start_sandbox

TOKENS = "/sandbox/v1/tokens"
TOKEN = "/customer-token/v1/tokens/{}"
TOKEN_ORDER = "/customer-token/v1/tokens/{}/order"
TOKEN_STATUS = "/customer-token/v1/tokens/{}/status"
PAY_TOKEN = "/payments/v1/authorizations/{}/customer-token"


async def make_token(sandbox: RunningSandbox, token_id: str | None = None, *, eid: int = 1234,
                     **fields: Any) -> str:
    """Create a customer token through the control API; returns its id."""
    body: dict[str, Any] = {"eid": eid, **fields}
    if token_id is not None:
        body["token_id"] = token_id
    reply = await sandbox.control("POST", TOKENS, body)
    assert reply.status == 201, reply.body
    created: str = reply.json()["token_id"]
    return created


def token_order_body(amount: int = 10000, lines: list[dict[str, Any]] | None = None,
                     **fields: Any) -> dict[str, Any]:
    """A valid ``customer_token_order`` body: no country, locale or billing address (those
    belong to the token)."""
    body = order_body(amount, lines)
    for key in ("purchase_country", "locale", "billing_address"):
        body.pop(key)
    body.update(fields)
    return body


def token_creation_body(**fields: Any) -> dict[str, Any]:
    """A valid Klarna Payments ``customer_token_creation_request``."""
    body: dict[str, Any] = {
        "purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
        "description": "Monthly coffee subscription", "intended_use": "SUBSCRIPTION",
        "billing_address": {"given_name": "Testperson", "family_name": "Approved",
                            "street_address": "Sveavägen 44", "postal_code": "11134",
                            "city": "Stockholm", "country": "SE",
                            "email": "customer@example.com"},
    }
    body.update(fields)
    return body


async def start_seeded_sandbox(seed: int) -> RunningSandbox:
    """A fresh sandbox seeded through ``[sandbox] seed`` (the conformance hook installed)."""
    config = load_config(default_sandbox_config_path())
    return await start_sandbox(replace(config, sandbox=replace(config.sandbox, seed=seed)))


REPO = Path(__file__).resolve().parents[2]


class SandboxRunner(protocol.ProcessProtocol):
    """A sandbox in its own Python process (``code`` run with ``python -c``): ``url`` fires
    with the address it logs it listens on, ``ended`` with its exit code."""

    def __init__(self, code: str, **env: str) -> None:
        self.stderr = b""
        self.url: defer.Deferred[str] = defer.Deferred()
        self.ended: defer.Deferred[int] = defer.Deferred()
        self.process = reactor.spawnProcess(  # type: ignore[attr-defined]
            self, sys.executable, [sys.executable, "-c", code],
            env={**os.environ, "PYTHONPATH": str(REPO), **env}, path=str(REPO))

    def errReceived(self, data: bytes) -> None:
        self.stderr += data
        found = re.search(rb"listening on (http://[0-9.:]+)", self.stderr)
        if found and not self.url.called:
            self.url.callback(found.group(1).decode())

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)

    async def stop(self) -> int:
        """SIGTERM unless it has ended; its exit code."""
        if not self.ended.called:
            self.process.signalProcess("TERM")
        code: int = await self.ended.addTimeout(15, reactor)
        return code
