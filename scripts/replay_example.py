#!/usr/bin/env python3
"""Regenerate docs/replay-report-example.html and docs/replay-report-example.json.

Records a short session of the official Python SDK (``tests/replay/scenario.py``: update,
partial activate, email_invoice, credit_part, extend_expiry_date, two faults, a full
activation and invoice_amount) against a local gateway with its sandbox (seeded) and
``--record``, then replays the recording with ``klarna-gateway replay`` against a fresh
gateway and sandbox whose invoice numbers start elsewhere: the report shows the seeded
reservations, the invoice numbers mapped, the REST requests from the target's journal and
every call ``same``. Needs the ``test`` extra (the SDK).

    python scripts/replay_example.py [--out docs]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def record_and_replay(reactor: Any, out: Path, status: dict[str, int]) -> None:
    from twisted.internet import utils

    from gateway.config import load_config
    from tests.harness import SANDBOX_CONFIG, start_gateway
    from tests.replay.scenario import run_session

    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "recording"
        a = await start_gateway(f"sqlite:///{tmp}/a.db", sandbox_seed=7,
                                record_dir=str(recording))
        try:
            await run_session(a)
        finally:
            await a.gateway.stop()
        config = load_config(SANDBOX_CONFIG)
        fresh = replace(config, gateway=replace(config.gateway, invno_start=9100000000))
        b = await start_gateway(f"sqlite:///{tmp}/b.db", config=fresh, sandbox_seed=7)
        try:
            stdout, stderr, code = await utils.getProcessOutputAndValue(
                sys.executable,
                ["-m", "gateway.cli", "replay", "recording", "--target", b.url,
                 "--admin", b.admin, "--admin-token", "sandbox-admin",
                 "--report", str(out / "replay-report-example.html"),
                 "--summary", str(out / "replay-report-example.json"), "--no-progress"],
                env={**os.environ, "PYTHONPATH": str(ROOT)}, path=tmp)
        finally:
            await b.gateway.stop()
    sys.stdout.write(stdout.decode())
    sys.stderr.write(stderr.decode())
    status["code"] = code


def main() -> int:
    from twisted.internet import defer, task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    status = {"code": 1}
    try:
        task.react(lambda reactor: defer.ensureDeferred(
            record_and_replay(reactor, out, status)))
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    for name in ("replay-report-example.html", "replay-report-example.json"):
        path = out / name
        if path.exists():
            print(f"{path}: {path.stat().st_size} bytes")
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
