"""``--log-format json``: every line the process writes is JSON, on stdout and stderr.

A log shipper reads both streams of ``serve`` (systemd, a container runtime); one line of
plain text among the events is a line it cannot parse. The start-up banner is an event then,
carrying the listen addresses and the database as fields; a start-up error, a usage error
and the standalone sandbox's lines are events too (docs/operations.md, docs/cli.md).
"""
from __future__ import annotations

import json
import socket
import subprocess
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest

from gateway.testing.processes import (
    GatewayProcess, SandboxProcess, _cli, _wait_http, free_port,
)

LOOPBACK = "tcp:{}:interface=127.0.0.1"


def events_of(path: Path) -> list[dict[str, Any]]:
    """Every line of a captured stream as JSON (a line that is not fails the test)."""
    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            events.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line!r}") from None
    return events


def spawn(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(_cli() + list(args), stdout=stdout, stderr=stderr,
                                cwd=tmp_path)
    return proc, out, err


def test_serve_sandbox_writes_only_json_lines(tmp_path: Path) -> None:
    """The real ``serve --sandbox --log-format json``: started, a legacy call that works and
    one that is refused, stopped by SIGTERM; stdout and stderr hold only JSON lines, the
    banner among them as one event with its addresses."""
    legacy, admin, sandbox = free_port(), free_port(), free_port()
    db = f"sqlite:///{tmp_path}/gateway.db"
    proc, out, err = spawn(tmp_path, "serve", "--sandbox", "--log-format", "json",
                           "--db", db, "--listen", LOOPBACK.format(legacy),
                           "--admin-listen", LOOPBACK.format(admin),
                           "--sandbox-listen", LOOPBACK.format(sandbox))
    try:
        _wait_http(f"http://127.0.0.1:{admin}/healthz", proc)
        gw = GatewayProcess(tmp_path / "unused.toml", db, port=legacy, admin_port=admin)
        rno = gw.register(1234, SandboxProcess(port=sandbox).create_order())
        k = gw.sdk()
        k.add_art_no(qty=1, artno="ART-1")
        _, invno = k.activate(rno)
        with pytest.raises(xmlrpc.client.Fault) as refused:  # a wrong digest: 9114
            xmlrpc.client.ServerProxy(gw.url).cancel_reservation(
                "4.1", "python:api:3.1.0", rno, 1234, "not-the-digest")
        assert refused.value.faultCode == 9114
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    stdout, stderr = events_of(out), events_of(err)
    everything = stdout + stderr
    [banner] = [e for e in everything if e.get("event") == "started"]
    assert banner["legacy_url"] == f"http://127.0.0.1:{legacy}/"
    assert banner["admin_url"] == f"http://127.0.0.1:{admin}"
    assert banner["sandbox_url"] == f"http://127.0.0.1:{sandbox}"
    assert banner["database"] == db and banner["log_namespace"] == "gateway.serve"
    assert str(legacy) in banner["legacy_listen"] and str(admin) in banner["admin_listen"]
    [access] = [e for e in everything if e.get("method") == "activate" and "outcome" in e]
    assert (access["rno"], access["invno"], access["outcome"]) == (rno, invno, "ok")
    assert not any("Traceback" in json.dumps(e) for e in everything)


def test_serve_start_up_and_usage_errors_are_json_lines(tmp_path: Path) -> None:
    """A port in use (found while starting, by ``serve`` and by ``sandbox``), a malformed
    endpoint and an unknown flag (found before):
    exit 2, and the last line on stderr is the error as a JSON event with the message and
    the exit status (the lines before it are the start-up's events)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = {
            "cannot start": ("serve", "--sandbox", "--log-format", "json", "--db",
                             f"sqlite:///{tmp_path}/gw.db", "--listen", LOOPBACK.format(port),
                             "--admin-listen", LOOPBACK.format(free_port()),
                             "--sandbox-listen", LOOPBACK.format(free_port())),
            "not a listening endpoint": ("serve", "--sandbox", "--log-format", "json",
                                         "--listen", "nonsense:1"),
            "invalid choice": ("serve", "--log-format", "json", "--sandbox",
                               "--no-such-flag"),
            "sandbox cannot listen": ("sandbox", "--log-format", "json", "--listen",
                                      LOOPBACK.format(port)),
        }
        for words, args in cases.items():
            run = subprocess.run(_cli() + list(args), capture_output=True, text=True,
                                 timeout=60, cwd=tmp_path)
            assert run.returncode == 2, (words, run.stderr)
            assert run.stdout == ""
            events = [json.loads(line) for line in run.stderr.splitlines()]
            [event] = [e for e in events if e["log_level"]["name"] == "critical"]
            assert event["exit_status"] == 2 and event is events[-1]
            assert (words if words != "invalid choice" else "--no-such-flag") \
                in event["message"], event


def test_standalone_sandbox_writes_only_json_lines(tmp_path: Path) -> None:
    """``sandbox --log-format json``: its listening line and every request's are events."""
    port = free_port()
    proc, out, err = spawn(tmp_path, "sandbox", "--log-format", "json",
                           "--listen", LOOPBACK.format(port))
    try:
        _wait_http(f"http://127.0.0.1:{port}/sandbox/v1/clock", proc)
        SandboxProcess(port=port).create_order()
        time.sleep(0.2)
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    events = events_of(out) + events_of(err)
    assert any(e.get("url") == f"http://127.0.0.1:{port}" and "listening" in e["log_format"]
               for e in events), events
