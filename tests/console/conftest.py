"""A real gateway + sandbox whose merchants have console tokens (``gwc``)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted

from tests.harness import Harness, demo_config, running

#: Read-only console tokens of the demo merchants in these tests.
CONSOLE_TOKENS = {1234: "console-1234-token-abcdef", 5678: "console-5678-token-uvwxyz"}


def console_config() -> Any:
    return demo_config("console-test",
                       **{f"m{eid}": {"console_token": t} for eid, t in CONSOLE_TOKENS.items()})


@pytest_twisted.async_yield_fixture
async def gwc(tmp_path: Any) -> AsyncIterator[Harness]:
    async with running(tmp_path, console_config()) as h:
        yield h
    assert not h.violations, "\n".join(h.violations)
