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
