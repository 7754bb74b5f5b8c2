"""pytest fixtures for other projects' regression suites: a Klarna sandbox and a
klarna-gateway in front of it, started in-process on loopback (``docs/pytest-plugin.md``).

Installed with the package as the ``pytest11`` entry point ``klarna_gateway``: a suite
whose environment has ``klarna-gateway`` installed gets the fixtures without any conftest
line (``-p no:klarna_gateway`` turns them off).

Fixtures (function scope; the ``_session`` variants are one instance for the session):

- ``klarna_sandbox`` / ``klarna_sandbox_session``: a started, seeded sandbox
  (:class:`~gateway.testing.inprocess.KlarnaSandbox`): ``url``, ``admin_token``,
  ``merchants``, ``create_order(...)``, ``fault(...)``, ``clear_faults()``,
  ``advance_clock(seconds)``, ``operations(order_id)``...
- ``klarna_gateway`` / ``klarna_gateway_session``: a started gateway in front of that
  sandbox (:class:`~gateway.testing.inprocess.KlarnaGateway`), SQLite in a temp dir:
  ``url`` (legacy XML-RPC), ``admin_url``, ``sandbox``, ``create_order(...)`` (placed and
  registered), ``merchant(eid)``, ``sdk(eid)`` (an official ``klarna.Klarna`` client).

The seed: ``--klarna-sandbox-seed N``, else the ini option ``klarna_sandbox_seed``, else 0.

Synchronous and pytest-twisted suites alike: the servers run on a private reactor on a
background thread (:mod:`gateway.testing.reactor_thread`), never on the suite's reactor,
and every helper blocks; so the official (synchronous) SDK can be called straight from a
test, ``def`` or ``async def``. Nothing needs detecting.

This module imports nothing heavy (no Twisted, no reactor) until a fixture is used: it is
loaded into every pytest run of an environment that has the package.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from gateway.testing.inprocess import KlarnaGateway, KlarnaSandbox

SEED_OPTION = "--klarna-sandbox-seed"
SEED_INI = "klarna_sandbox_seed"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("klarna_gateway", "klarna-gateway fixtures")
    group.addoption(SEED_OPTION, dest="klarna_sandbox_seed", type=int, default=None,
                    metavar="N", help="seed of the klarna_sandbox fixtures: reproducible "
                                      "ids, clock frozen at 2026-01-01T12:00:00Z (default: "
                                      f"ini {SEED_INI}, else 0)")
    parser.addini(SEED_INI, "seed of the klarna_sandbox fixtures (default 0)", default="0")


def sandbox_seed(config: pytest.Config) -> int:
    """The seed: the command line's, else the ini file's, else 0."""
    value: Any = config.getoption("klarna_sandbox_seed")
    where = SEED_OPTION
    if value is None:
        value, where = config.getini(SEED_INI), SEED_INI
        try:
            value = int(str(value).strip())
        except ValueError:
            raise pytest.UsageError(f"{SEED_INI}: not an integer: {value!r}") from None
    if value < 0:
        raise pytest.UsageError(f"{where}: must be 0 or more, got {value}")
    return int(value)


def pytest_report_header(config: pytest.Config) -> str | None:
    try:
        seed = sandbox_seed(config)
    except pytest.UsageError:
        return None
    return f"klarna-gateway fixtures: sandbox seed {seed}"


def _sandbox(config: pytest.Config) -> Iterator[KlarnaSandbox]:
    from gateway.testing.inprocess import KlarnaSandbox

    sandbox = KlarnaSandbox.start(seed=sandbox_seed(config))
    try:
        yield sandbox
    finally:
        sandbox.stop()


def _gateway(sandbox: KlarnaSandbox, factory: pytest.TempPathFactory,
             ) -> Iterator[KlarnaGateway]:
    from gateway.testing.inprocess import KlarnaGateway

    gateway = KlarnaGateway.start(sandbox, factory.mktemp("klarna-gateway"))
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def klarna_sandbox(pytestconfig: pytest.Config) -> Iterator[KlarnaSandbox]:
    """A fresh seeded sandbox on a free loopback port, stopped after the test."""
    yield from _sandbox(pytestconfig)


@pytest.fixture(scope="session")
def klarna_sandbox_session(pytestconfig: pytest.Config) -> Iterator[KlarnaSandbox]:
    """One seeded sandbox for the whole session (``reset()`` it to start over)."""
    yield from _sandbox(pytestconfig)


@pytest.fixture
def klarna_gateway(klarna_sandbox: KlarnaSandbox, tmp_path_factory: pytest.TempPathFactory,
                   ) -> Iterator[KlarnaGateway]:
    """A fresh gateway (empty SQLite store) in front of this test's ``klarna_sandbox``."""
    yield from _gateway(klarna_sandbox, tmp_path_factory)


@pytest.fixture(scope="session")
def klarna_gateway_session(klarna_sandbox_session: KlarnaSandbox,
                           tmp_path_factory: pytest.TempPathFactory,
                           ) -> Iterator[KlarnaGateway]:
    """One gateway for the whole session, in front of ``klarna_sandbox_session``."""
    yield from _gateway(klarna_sandbox_session, tmp_path_factory)
