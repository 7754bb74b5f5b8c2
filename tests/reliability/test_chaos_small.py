"""A small soak in CI: random calls, random faults, kill/restart cycles → all zeros."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "chaos.py"


@pytest.mark.slow
def test_small_soak_reads_zeros(tmp_path: Path) -> None:
    """`scripts/chaos.py --calls 40 --kills 2` ends with 0 duplicates, 0 lost, 0 discrepancies."""
    result = subprocess.run([sys.executable, str(SCRIPT), "--calls", "40", "--kills", "2",
                             "--seed", "3", "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    last = result.stdout.strip().splitlines()[-1]
    assert last == "40 calls, 0 duplicates, 0 lost, 0 discrepancies", result.stdout + result.stderr
    assert result.returncode == 0
