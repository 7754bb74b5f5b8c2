"""The README's "Five minutes with the Python SDK", run as written, twice.

A newcomer copies the shell blocks one after another into a terminal while `serve --sandbox`
runs. This test does the same with bash against a real ``serve --sandbox`` process (its
ports moved to free ones, nothing else changed) and runs the whole walkthrough a second
time on the same store: the second run must work too (new numbers, no fixed ones).
"""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
import urllib.request
from pathlib import Path

import pytest

from gateway.testing.processes import _cli, free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Five minutes with the Python SDK"


def _blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [textwrap.dedent(b) for b in re.findall(r"```sh\n(.*?)^\s*```", section, re.S | re.M)]


def test_the_sdk_install_step_names_the_pinned_sdk() -> None:
    install = _blocks()[0]
    pinned = [d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
              ["optional-dependencies"]["test"] if d.startswith("Klarna_API")]
    assert install.strip() == f".venv/bin/pip install -q {pinned[0]}"


@pytest.mark.slow
def test_the_walkthrough_works_twice(tmp_path: Path) -> None:
    legacy, admin, sandbox = free_port(), free_port(), free_port()
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    python = venv / "python"  # the README's `.venv/bin/python`: this environment's
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    proc = subprocess.Popen(
        _cli() + ["serve", "--sandbox", "--db", f"sqlite:///{tmp_path}/gateway.db",
                  "--listen", f"tcp:{legacy}:interface=127.0.0.1",
                  "--admin-listen", f"tcp:{admin}:interface=127.0.0.1",
                  "--sandbox-listen", f"tcp:{sandbox}:interface=127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        _wait_healthy(admin, proc)
        script = "set -euo pipefail\n" + "\n".join(_blocks()[1:])
        script = (script.replace("127.0.0.1:8081", f"127.0.0.1:{admin}")
                  .replace("127.0.0.1:8080", f"127.0.0.1:{legacy}")
                  .replace("/tmp/pclasses.json", str(tmp_path / "pclasses.json")))
        outputs = [subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True,
                                  text=True, timeout=120) for _ in range(2)]
    finally:
        proc.terminate()
        proc.wait(15)
    for run, out in enumerate(outputs):
        assert out.returncode == 0, f"run {run + 1}: {out.stderr}"
    first, second = (o.stdout for o in outputs)
    assert "reservation 8000000000" in first and "reservation 8000000001" in second
    assert "activated: ok 9000000000" in first and "activated: ok 9000000001" in second
    for out in (first, second):
        assert "credited: " in out and "e-mailed: " in out and "cancelled: True" in out
        assert '"rno": "80000000' in out  # the reservation as the admin API shows it
        assert '"method": "activate"' in out  # the journal of the calls


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    def healthy() -> bool:
        assert proc.poll() is None, "serve --sandbox exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return True
        except OSError:
            return False
    wait_until(healthy, "serve --sandbox became healthy", timeout=timeout, every=0.1)
