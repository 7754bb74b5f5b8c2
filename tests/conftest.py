"""Suite-wide fixtures. ``gw``: a real gateway + sandbox on loopback with a real store.

The store is SQLite in the test's temp dir; with ``GATEWAY_TEST_PG_DSN`` set, tests marked
``postgres`` (and the ``gw_pg`` fixture) use a fresh PostgreSQL schema per test.
"""
from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from hypothesis import settings

from tests.harness import Harness, pg_schema_url, start_gateway

PG_DSN = os.environ.get("GATEWAY_TEST_PG_DSN")

# Property tests pin behaviour, not speed (speed lives in scripts/bench/): no per-example
# deadline, which a loaded 2-core machine would trip at random.
settings.register_profile("gateway", deadline=None)
settings.load_profile("gateway")


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (CI=true does too)")


def runs_slow(config: Any) -> bool:
    """Whether this run includes the ``slow`` tests: in CI (``CI=true``, as ``.ci/run``
    sets), with ``--run-slow``, when a ``-m`` expression names them, or when a test is
    named by its node id (``path::test``). Otherwise they are deselected, so the default
    run stays short on a 2-core machine (docs/architecture.md#tests)."""
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        return True
    if config.getoption("--run-slow") or "slow" in (config.option.markexpr or ""):
        return True
    return any("::" in str(arg) for arg in config.args)


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    skip = pytest.mark.skip(reason="GATEWAY_TEST_PG_DSN is not set")
    for item in items:
        if "postgres" in item.keywords and not PG_DSN:
            item.add_marker(skip)
    if runs_slow(config):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]
        config.stash[_SLOW_DESELECTED] = len(slow)


_SLOW_DESELECTED = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    deselected = config.stash.get(_SLOW_DESELECTED, 0)
    why = ("(processes killed or restarted, soaks, a browser, the command line as a child "
           "process): --run-slow runs them, as CI (CI=true) does")
    if deselected:
        terminalreporter.write_line(f"{deselected} slow tests deselected {why}")
    elif not runs_slow(config) and getattr(config.option, "numprocesses", None):
        # pytest-xdist: the workers collect and deselect; the controller only reports
        terminalreporter.write_line(f"the tests marked slow were deselected {why}")


@pytest_twisted.async_yield_fixture
async def gw(tmp_path: Any) -> AsyncIterator[Harness]:
    h = await start_gateway(f"sqlite:///{tmp_path}/gateway.db")
    try:
        yield h
    finally:
        await h.gateway.stop()
    assert not h.violations, "sandbox responses violating the OpenAPI spec:\n" + "\n".join(
        h.violations)


def make_pg_schema(*, migrated: bool = False) -> tuple[str, Any]:
    """Create a fresh schema (at the code's head when ``migrated``); returns (url, drop
    function)."""
    from sqlalchemy import create_engine, text

    from gateway.store.database import normalise_url

    assert PG_DSN
    url, name = pg_schema_url(PG_DSN)
    admin = create_engine(normalise_url(PG_DSN))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()
    if migrated:
        from gateway.store import schema
        from gateway.store.database import make_engine

        engine = make_engine(url)
        schema.upgrade(engine)
        engine.dispose()
    return url, drop


@pytest_twisted.async_yield_fixture
async def gw_pg() -> AsyncIterator[Harness]:
    if not PG_DSN:
        pytest.skip("GATEWAY_TEST_PG_DSN is not set")
    url, drop = make_pg_schema(migrated=True)
    h = await start_gateway(url, upgrade_sqlite=False)
    try:
        yield h
    finally:
        await h.gateway.stop()
        drop()
    assert not h.violations, "\n".join(h.violations)
