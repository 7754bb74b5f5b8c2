"""``replay`` without ``--admin`` against a target that lacks the recording's orders.

Real processes: gateway A (``serve --sandbox --record``) records an SDK session; gateway B
(another ``serve --sandbox``, its own store and sandbox) has never seen its reservation.
Without ``--admin`` the replay cannot seed it: it stops at the first "unknown reservation",
says which reservations the target must hold and how to seed them (exit 2, no traceback,
no report); with ``--admin`` the same recording replays ``same`` (docs/cli.md, replay).
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.testing.processes import (
    ADMIN_TOKEN, GatewayProcess, _cli, _wait_http, free_port, http, run_cli,
)

ORDER = {"eid": 1234, "purchase_country": "SE", "purchase_currency": "SEK",
         "locale": "sv-SE", "order_amount": 20000, "order_tax_amount": 4000,
         "order_lines": [{"type": "physical", "reference": "ART-1", "name": "Shoes",
                          "quantity": 2, "unit_price": 10000, "tax_rate": 2500,
                          "total_amount": 20000, "total_tax_amount": 4000}]}


@dataclass
class Demo:
    """A running ``serve --sandbox`` (demo merchants, token ``sandbox-admin``)."""

    gw: GatewayProcess

    @property
    def admin(self) -> str:
        return self.gw.admin_url


@contextmanager
def demo(tmp_path: Path, name: str, *extra: str) -> Iterator[Demo]:
    legacy, admin = free_port(), free_port()
    db = f"sqlite:///{tmp_path}/{name}.db"
    proc = subprocess.Popen(
        _cli() + ["serve", "--sandbox", "--db", db,
                  "--listen", f"tcp:{legacy}:interface=127.0.0.1",
                  "--admin-listen", f"tcp:{admin}:interface=127.0.0.1",
                  "--sandbox-listen", f"tcp:{free_port()}:interface=127.0.0.1", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        _wait_http(f"http://127.0.0.1:{admin}/healthz", proc)
        yield Demo(GatewayProcess(tmp_path / "unused.toml", db, port=legacy,
                                  admin_port=admin, proc=proc))
    finally:
        proc.terminate()
        proc.wait(15)


def test_replay_without_admin_explains_how_to_seed(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    with demo(tmp_path, "a", "--record", str(rec)) as a:
        status, _, created = http("POST", a.admin + "/v1/sandbox/orders", ORDER,
                                  bearer=ADMIN_TOKEN)
        assert status == 201, created
        rno = created["rno"]
        k = a.gw.sdk()
        k.add_art_no(qty=1, artno="ART-1")
        k.activate(rno)
        assert k.check_order_status(rno, 0) is not None
    assert list(rec.glob("recording-*.jsonl"))

    report = tmp_path / "report.html"
    with demo(tmp_path, "b") as b:
        unseeded = run_cli("replay", str(rec), "--target", b.gw.url, "--report", str(report),
                           "--no-progress")
        assert unseeded.returncode == 2, unseeded.stderr
        assert "Traceback" not in unseeded.stdout + unseeded.stderr
        lines = unseeded.stderr.splitlines()
        assert all(line.startswith("klarna-gateway: replay: ") for line in lines), lines
        text = unseeded.stderr
        assert f"does not hold reservation {rno} (eid 1234)" in text
        assert "fault 9109" in text and "stopped after 1 call(s)" in text
        assert f"1 reservation(s) the target must hold: {rno} (eid 1234)" in text
        assert "--admin http://127.0.0.1:8081 --admin-token TOKEN" in text
        assert "sandbox-admin" in text and "POST /v1/sandbox/orders" in text
        assert "reservations add" in text
        assert not report.exists()
        # Nothing was changed on B: the one call sent was refused before any REST request.
        status, _, journal = http("GET", b.admin + "/v1/journal?eid=1234", bearer=ADMIN_TOKEN)
        assert status == 200
        assert [(e["method"], e["outcome"], e["rest_steps"]) for e in journal["entries"]] == [
            ("activate", "9109", [])]

        seeded = run_cli("replay", str(rec), "--target", b.gw.url, "--report", str(report),
                         "--summary", str(tmp_path / "summary.json"), "--no-progress",
                         "--admin", b.admin, "--admin-token", ADMIN_TOKEN)
        assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        summary = json.loads((tmp_path / "summary.json").read_text())
        assert [s["rno"] for s in summary["seeded"]] == [rno]
