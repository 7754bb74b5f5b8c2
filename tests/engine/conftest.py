"""The engine tests' world: one fake-clock gateway over an in-memory sandbox per test."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.world import World


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(str(tmp_path / "gw.db"))
    yield w
    w.close()
