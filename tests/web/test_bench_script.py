"""``scripts/bench/listener_limits.py`` runs and prints its figures (small settings)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "listener_limits.py"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_bench_prints_every_figure() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--deadline", "1", "--attempts", "60",
         "--max-connections", "20"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    closed = re.search(r"answered 408 and closed after ([\d.]+) s", out)
    assert closed and 1.0 <= float(closed.group(1)) < 2.0, out
    assert re.search(r"60 connections attempted in [\d.]+ s, 20 kept after 1 s", out), out
    assert re.search(r"1 GiB unauthenticated upload: 401 after [\d.]+ ms", out), out
    assert "0 body bytes buffered" in out, out
