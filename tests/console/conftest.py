"""A real gateway + sandbox whose merchants have console tokens (``gwc``)."""
from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted

from gateway.config import parse_config
from tests.harness import SANDBOX_CONFIG, Harness, start_gateway

#: Read-only console tokens of the demo merchants in these tests.
CONSOLE_TOKENS = {1234: "console-1234-token-abcdef", 5678: "console-5678-token-uvwxyz"}


def console_config() -> Any:
    raw = tomllib.loads(SANDBOX_CONFIG.read_text(encoding="utf-8"))
    for merchant in raw["merchants"]:
        merchant["console_token"] = CONSOLE_TOKENS[merchant["eid"]]
    return parse_config(raw, source="console-test")


@pytest_twisted.async_yield_fixture
async def gwc(tmp_path: Any) -> AsyncIterator[Harness]:
    h = await start_gateway(f"sqlite:///{tmp_path}/gateway.db", config=console_config())
    try:
        yield h
    finally:
        await h.gateway.stop()
    assert not h.violations, "\n".join(h.violations)
