"""The rate-limit demo, small: two gateway processes on PostgreSQL, a batch of activations
of two merchants, 20 requests/s for one of them (and Klarna's own 20/s emulated by the
sandbox's ``rate_limit`` fault)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_DSN, make_pg_schema

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ratelimit_demo.py"


@pytest.mark.slow
@pytest.mark.postgres
def test_the_limited_merchant_stays_under_its_limit_and_the_other_is_not_slowed(
        tmp_path: Path) -> None:
    """`scripts/ratelimit_demo.py --orders 200 --limit 20`: merchant 1234 never exceeds 20
    REST requests/s over any 5 s window (as the sandbox received them), 5678 never waits
    for a request slot and finishes its half far sooner, every order is captured once."""
    assert PG_DSN
    db, drop = make_pg_schema()
    try:
        result = subprocess.run([sys.executable, str(SCRIPT), "--orders", "200", "--limit",
                                 "20", "--db", db, "--workdir", str(tmp_path)],
                                capture_output=True, text=True, timeout=600)
    finally:
        drop()
    out = result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    found = re.fullmatch(r"1234: at most ([\d.]+) requests/s over any 5 s \(limit 20\); "
                         r"5678: 0 waits, 0 throttled; 200/200 activated, each captured once",
                         last)
    assert found and float(found[1]) <= 20.0, out
    assert result.returncode == 0, out
    [limited, other] = [float(s) for s in re.findall(r"100/100 activated in ([\d.]+) s", out)]
    assert other < limited / 3, out  # 5678 is not held back with 1234
    assert "2 gateway process(es)" in out
