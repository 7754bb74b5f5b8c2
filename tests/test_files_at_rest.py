"""Files that hold personal data are private from the moment they are created, whatever
the umask (here the usual 022): the SQLite database (and its WAL), recordings, replay
reports, the log file; and ``serve`` warns when an existing database is readable by others.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import formatEvent, globalLogPublisher

from gateway.edge.resource import Exchange
from gateway.logs import ReopenableFile
from gateway.replay.recording import RecordingWriter
from gateway.testing.processes import run_cli, write_config
from tests.harness import start_gateway


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest_twisted.ensureDeferred
async def test_serve_creates_the_database_private(tmp_path: Path) -> None:
    """Before: ``gateway.db`` was created 0644 under umask 022. Now 0600, its WAL too."""
    db = tmp_path / "gateway.db"
    h = await start_gateway(f"sqlite:///{db}")
    try:
        assert mode(db) == 0o600
        wal = tmp_path / "gateway.db-wal"
        assert wal.exists() and mode(wal) == 0o600
    finally:
        await h.gateway.stop()


def test_db_upgrade_and_port_create_the_database_private(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    done = run_cli("db", "upgrade", "--db", f"sqlite:///{db}")
    assert done.returncode == 0, done.stderr
    assert mode(db) == 0o600
    config = write_config(tmp_path / "gw.toml", "http://127.0.0.1:9")
    done = run_cli("db", "port", "--config", str(config), "--from", f"sqlite:///{db}",
                   "--to", f"sqlite:///{tmp_path}/copy.db")
    assert done.returncode == 0, done.stderr
    assert mode(tmp_path / "copy.db") == 0o600


@pytest_twisted.ensureDeferred
async def test_serve_warns_when_others_can_read_the_database(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    assert run_cli("db", "upgrade", "--db", f"sqlite:///{db}").returncode == 0
    db.chmod(0o644)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        h = await start_gateway(f"sqlite:///{db}")
        await h.gateway.stop()
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [str(formatEvent(e)) for e in events if "readable by others" in
                str(formatEvent(e))]
    assert warnings and str(db) in warnings[0] and "chmod 600" in warnings[0], warnings
    assert mode(db) == 0o644  # a warning: the operator decides


def exchange(body: bytes) -> Exchange:
    return Exchange(request=body, reply=b"<methodResponse/>", started=1767268800.0,
                    duration=0.01, path="/", method=None, eid=None, fault_code=None)


def test_recordings_are_private(tmp_path: Path) -> None:
    """Before: recording files 0644 (and their directory 0755). Now 0600 in a 0700
    directory it creates."""
    directory = tmp_path / "rec"
    writer = RecordingWriter(directory)
    writer.start()
    writer.submit(exchange(b"<methodCall>"))
    writer.close_sync(10)
    [file] = writer.files
    assert mode(file) == 0o600 and mode(directory) == 0o700


def test_replay_reports_are_private(tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Target(BaseHTTPRequestHandler):  # something that answers (replay checks first)
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "17")
            self.end_headers()
            self.wfile.write(b"<methodResponse/>")
        do_GET = do_POST = do_HEAD = _answer  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Target)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    writer = RecordingWriter(tmp_path / "rec")
    writer.start()
    writer.submit(exchange(b"not xml-rpc"))
    writer.close_sync(10)
    report, summary = tmp_path / "report.html", tmp_path / "summary.json"
    try:
        done = run_cli("replay", str(tmp_path / "rec"), "--target",
                       f"http://127.0.0.1:{server.server_port}/", "--report", str(report),
                       "--summary", str(summary), "--no-progress")
    finally:
        server.shutdown()
    assert done.returncode in (0, 1), done.stderr  # 1: the answers differ (a finding)
    assert mode(report) == 0o600 and mode(summary) == 0o600


def test_the_log_file_is_private(tmp_path: Path) -> None:
    log = ReopenableFile(str(tmp_path / "gateway.log"))
    try:
        log.write("line\n")
        assert mode(tmp_path / "gateway.log") == 0o600
        (tmp_path / "gateway.log").rename(tmp_path / "gateway.log.1")
        log.reopen()
        assert mode(tmp_path / "gateway.log") == 0o600
    finally:
        log.close()
