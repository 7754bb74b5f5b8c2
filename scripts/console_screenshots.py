#!/usr/bin/env python3
"""Regenerate docs/screenshots/console-*.png: the browser test, with its screenshots kept.

Runs ``tests/console/test_browser.py::test_console_in_a_real_browser`` (a real gateway and
sandbox on loopback, a reservation made through the official Python SDK, Chromium driven by
Playwright with JavaScript off) with ``KGW_CONSOLE_SCREENSHOTS`` pointing at the target
directory. Needs Playwright (the ``test`` extra) and Chromium (``apt-get install chromium``,
or ``KGW_CHROMIUM=/path/to/chrome``).

    python scripts/console_screenshots.py [--out docs/screenshots]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    env = {**os.environ, "KGW_CONSOLE_SCREENSHOTS": str(out), "CI": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q",
         "tests/console/test_browser.py::test_console_in_a_real_browser"],
        cwd=ROOT, env=env)
    if result.returncode == 0:
        for png in sorted(out.glob("console-*.png")):
            print(f"{png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}: "
                  f"{png.stat().st_size} bytes")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
