"""A small soak in CI: random calls, random faults, kill/restart cycles and deliberate
identical repeats → all zeros."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chaos.py"


@pytest.mark.slow
def test_small_soak_reads_zeros(tmp_path: Path) -> None:
    """`scripts/chaos.py --calls 40 --kills 2` with a third of the successes repeated
    identically (second parcels, second returns) ends with 0 duplicates, 0 lost,
    0 swallowed, 0 discrepancies."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--calls", "40", "--kills", "2",
                             "--seed", "3", "--repeat-rate", "0.35", "--repeat-pause", "1.5",
                             "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last == "40 calls, 0 duplicates, 0 lost, 0 swallowed, 0 discrepancies", out
    assert result.returncode == 0
    repeats = re.search(r"# (\d+) deliberate repeats \((\d+) immediate, (\d+) after", out)
    assert repeats is not None, out
    assert int(repeats[1]) >= 3, out  # the run did repeat some operations...
    assert re.search(r"repeat ok: \d+", out), out  # ...and some repeats were new operations
    retries = re.search(r", (\d+) retries of the same operation", out)
    assert retries is not None and int(retries[1]) >= 1, out  # and retried some (9119, kill)


@pytest.mark.slow
@pytest.mark.postgres
def test_small_soak_with_database_restarts_reads_zeros(tmp_path: Path) -> None:
    """`scripts/chaos.py --db-restarts 2` on PostgreSQL, two processes: PostgreSQL stopped
    and started again mid-call (between a capture Klarna applied and its outcome, or before
    a call's intent); the calls it cut are answered 9119 and retried, and the run ends with
    all zeros."""
    from sqlalchemy import text

    from gateway.store.database import make_engine
    from tests.conftest import PG_DSN
    from tests.harness import pg_schema_url

    assert PG_DSN
    url, schema = pg_schema_url(PG_DSN)  # chaos.py creates it
    try:
        result = subprocess.run([sys.executable, str(SCRIPT), "--calls", "30", "--kills", "1",
                                 "--db-restarts", "2", "--processes", "2", "--seed", "5",
                                 "--db", url, "--workdir", str(tmp_path)],
                                capture_output=True, text=True, timeout=900)
    finally:
        engine = make_engine(PG_DSN)  # a connection made after the restarts
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
    out = result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last == "30 calls, 0 duplicates, 0 lost, 0 swallowed, 0 discrepancies", out
    restarts = re.search(r"2 database restarts \((\d+) cut a call", out)
    assert restarts is not None, out
    logs = "".join(p.read_text() for p in tmp_path.glob("gateway-*.log"))
    assert "database unavailable" in logs  # a restart met a call
    assert "outcome=-32603" not in logs
