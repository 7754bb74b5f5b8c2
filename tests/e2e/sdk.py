"""Small helpers shared by the SDK-driven end-to-end tests."""
from __future__ import annotations

import xmlrpc.client
from typing import Any

from tests.harness import Harness


async def fault_of(gw: Harness, fn: Any, *args: Any, **kwargs: Any) -> xmlrpc.client.Fault:
    """Run an SDK call that must fail with an XML-RPC fault; return the fault."""
    try:
        result = await gw.call(fn, *args, **kwargs)
    except xmlrpc.client.Fault as f:
        assert isinstance(f.faultCode, int)
        assert "Traceback" not in f.faultString and "Error(" not in f.faultString
        return f
    raise AssertionError(f"expected a fault, got {result!r}")


def mutations(ops: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """Applied Order Management mutations whose path ends with ``suffix``."""
    return [op for op in ops if op["path"].startswith("/ordermanagement/")
            and op["path"].endswith(suffix)]
