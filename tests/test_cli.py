"""The console script's one-shot commands against a real SQLite store."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.store.models import SCHEMA_HEAD
from gateway.testing.processes import run_cli


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    result = run_cli("db", "upgrade", "--db", url)
    assert result.returncode == 0 and f"-> {SCHEMA_HEAD}" in result.stdout
    return url


def test_reservations_add_show_and_import(tmp_path: Path, db: str) -> None:
    """add issues or takes an rno; show prints the mapping; import has a dry run and a
    report that names each bad line, and changes nothing in dry-run mode."""
    added = run_cli("reservations", "add", "--db", db, "--eid", "1234", "--order-id", "o-1")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"eid": 1234, "rno": "8000000000", "order_id": "o-1"}
    shown = run_cli("reservations", "show", "--db", db, "--eid", "1234", "--rno", "8000000000")
    assert json.loads(shown.stdout)["order_id"] == "o-1"
    csv = tmp_path / "map.csv"
    csv.write_text("eid,rno,order_id\n1234,2400000001,o-2\n1234,2400000002,o-3\n"
                   "9999,1,o-4\n1234,2400000001,o-5\n1234,8000000000,o-1\n1234,3,o-1\n")
    dry = run_cli("reservations", "import", "--db", db, "--dry-run", str(csv))
    assert dry.returncode == 1
    assert "would add 2, unchanged 1, problems 3" in dry.stdout
    assert "line 4: eid '9999'" in dry.stdout and "line 5: rno 2400000001 repeats line 2" in dry.stdout
    assert "line 7: conflicts" in dry.stdout
    missing = run_cli("reservations", "show", "--db", db, "--eid", "1234", "--rno", "2400000001")
    assert missing.returncode == 1
    real = run_cli("reservations", "import", "--db", db, str(csv))
    assert "added 2" in real.stdout
    shown = run_cli("reservations", "show", "--db", db, "--eid", "1234", "--rno", "2400000002")
    assert json.loads(shown.stdout)["order_id"] == "o-3"


def test_serve_without_config_explains(tmp_path: Path) -> None:
    """`serve` with neither --config nor --sandbox says what to do."""
    result = run_cli("serve", "--db", f"sqlite:///{tmp_path}/x.db")
    assert result.returncode == 1 and "--config" in result.stderr
