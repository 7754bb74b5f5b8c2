"""Fixtures of the tests that drive the console script as real processes: a migrated SQLite
store and a sandbox process (Klarna) on loopback.

Import the ones a module uses (``from tests.process_fixtures import db, sandbox``), as
``tests/sandbox/conftest.py`` imports the in-process sandbox.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store.models import SCHEMA_HEAD
from gateway.testing.processes import SandboxProcess, run_cli


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite store migrated to the code's head by ``klarna-gateway db upgrade``."""
    url = f"sqlite:///{tmp_path}/store.db"
    result = run_cli("db", "upgrade", "--db", url)
    assert result.returncode == 0 and f"-> {SCHEMA_HEAD}" in result.stdout, result
    return url


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    """``klarna-gateway sandbox`` on a free loopback port, stopped after the test."""
    sb = SandboxProcess(log_path=tmp_path / "sandbox.log").start()
    yield sb
    sb.stop()
