"""The console script as operators meet it, as real subprocesses: it fails closed without a
configuration, every error is one line, read-only commands create nothing, the database URL
comes from a flag, a file or the environment, the long jobs report in three formats (and
draw progress only on a terminal), and ``db port`` copies a whole store."""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import build_parser, main
from gateway.cli.common import CONFIG_ENV, DB_ENV
from gateway.testing.processes import SandboxProcess, write_config
from gateway.tools.reconcile import COLUMNS
from tests.process_fixtures import db, sandbox  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        stderr: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """``python -m gateway.cli ARGS`` with neither of the gateway's variables inherited."""
    base = {k: v for k, v in os.environ.items() if k not in (CONFIG_ENV, DB_ENV)}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], text=True,
                          stdout=subprocess.PIPE, stderr=stderr, env={**base, **(env or {})},
                          cwd=cwd, timeout=120)


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The failure is exactly one line on stderr, no traceback anywhere; returns it."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def register(url: str, eid: int, order_id: str, rno: str | None = None) -> str:
    """A reservation written straight into a store (an order Klarna need not hold: the
    command line checks orders, see tests/test_cli_contract.py); returns its rno."""
    from twisted.internet import defer

    from gateway.store.database import Database
    from gateway.store.store import Store

    class Wall:
        @staticmethod
        def seconds() -> float:
            return time.time()

    db = Database(url, Wall(), threaded=False)
    try:
        out: list[Any] = []
        defer.ensureDeferred(Store(db, Wall()).register_reservation(
            eid, order_id, rno, "admin")).addBoth(out.append)
        if hasattr(out[0], "raiseException"):
            out[0].raiseException()
        return str(out[0].rno)
    finally:
        db.stop()


def fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture
def cfg(tmp_path: Path) -> str:
    """The two demo merchants, pointed at a sandbox that is not running (no REST needed)."""
    return str(write_config(tmp_path / "gw.toml", "http://127.0.0.1:9"))


def with_eid_777(tmp_path: Path, base_url: str) -> str:
    """The demo merchants plus eid 777 (to put a reservation of eid 777 in a store)."""
    path = write_config(tmp_path / "gw-777.toml", base_url)
    path.write_text(path.read_text() + '\n[[merchants]]\neid = 777\nshared_secret = "s"\n'
                    'rest_username = "u"\nrest_password = "p"\n'
                    f'base_url = "{base_url}"\n')
    return str(path)


# -- fail closed ---------------------------------------------------------------------------


@pytest.mark.slow
def test_every_command_refuses_to_run_without_a_configuration(tmp_path: Path, db: str) -> None:
    """No command but `serve --sandbox` and `sandbox` falls back to the demo merchants."""
    request = tmp_path / "call.xml"
    request.write_text("<methodCall/>")
    rows = tmp_path / "rows.csv"
    rows.write_text("eid,rno,order_id\n1234,1,o-1\n")
    commands = [
        ["reconcile", "--db", db],
        ["explain", str(request), "--db", db],
        ["reservations", "show", "--db", db, "--eid", "1234", "--rno", "1"],
        ["reservations", "add", "--db", db, "--eid", "1234", "--order-id", "o-1"],
        ["reservations", "import", "--db", db, str(rows)],
        ["journal", "--db", db],
        ["config", "check"],
        ["db", "port", "--from", db, "--to", f"sqlite:///{tmp_path}/copy.db"],
        ["serve", "--db", db],
    ]
    before = fingerprint(tmp_path)
    for command in commands:
        line = one_line_error(cli(*command))
        assert "--config FILE" in line and CONFIG_ENV in line, command
    assert fingerprint(tmp_path) == before


@pytest.mark.slow
def test_the_environment_names_the_configuration_and_unknown_eids_are_reported(
        tmp_path: Path, db: str, cfg: str) -> None:
    """A store holding eid 777 and a configuration without it: reconcile does not say
    "agree" (it did with the demo merchants); the configuration comes from
    $KLARNA_GATEWAY_CONFIG."""
    other = with_eid_777(tmp_path, "http://127.0.0.1:9")
    register(db, 777, "o-777")
    result = cli("reconcile", "--db", db, env={CONFIG_ENV: cfg})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "store and Klarna agree" not in result.stdout
    [row] = [ln for ln in result.stdout.splitlines() if ln.startswith("777 ")]
    assert "eid not configured" in row and "1 reservation(s)" in row and "not checked" in row
    # --config wins over the environment
    flagged = cli("reconcile", "--db", db, "--config", other, "--eid", "5678",
                  env={CONFIG_ENV: str(tmp_path / "missing.toml")})
    assert flagged.returncode == 0 and "store and Klarna agree" in flagged.stdout
    asked = cli("reconcile", "--db", db, "--eid", "4242", env={CONFIG_ENV: cfg})
    assert "--eid: eid 4242 is not configured" in one_line_error(asked)  # as for add


# -- one-line errors -----------------------------------------------------------------------


@pytest.mark.slow
def test_errors_are_one_line_without_a_traceback(tmp_path: Path, db: str, cfg: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nbogus = 1\n")
    line = one_line_error(cli("reconcile", "--db", db, "--config", str(bad)))
    assert "Error in configuration at 'gateway.bogus': unknown key" in line

    line = one_line_error(cli("reservations", "add", "--config", cfg, "--eid", "1234",
                              "--order-id", "o", "--db",
                              "postgresql://nobody@127.0.0.1:9/none"), code=3)
    assert line.startswith("klarna-gateway: database error: ") and "127.0.0.1" in line

    unmigrated = tmp_path / "old.db"
    sqlite3.connect(unmigrated).close()
    line = one_line_error(cli("reservations", "show", "--config", cfg, "--eid", "1234",
                              "--rno", "1", "--db", f"sqlite:///{unmigrated}"))
    assert "database schema is empty" in line and "db upgrade" in line

    line = one_line_error(cli("explain", str(tmp_path / "missing.xml"), "--config", cfg,
                              "--db", db))
    assert "missing.xml: cannot read: No such file or directory" in line
    line = one_line_error(cli("reconcile", "--config", str(tmp_path / "missing.toml"),
                              "--db", db))
    assert "missing.toml" in line and "No such file or directory" in line
    line = one_line_error(cli("reconcile", "--config", cfg,
                              "--db-file", str(tmp_path / "no-url")))
    assert "--db-file" in line and "cannot read" in line
    line = one_line_error(cli("reconcile", "--config", cfg, "--db", db, "--since", "soon"))
    assert "--since: not an ISO-8601 time: 'soon'" in line
    line = one_line_error(cli("reconcile", "--config", cfg, "--concurrency", "0"))
    assert "--concurrency" in line and "at least 1" in line
    line = one_line_error(cli("reconcile", "--config", cfg, "--db", "nonsense://x"))
    assert "--db: unsupported database 'nonsense'" in line and "sqlite:///" in line
    line = one_line_error(cli("journal", "--config", cfg, "--db", "x.db"))
    assert "--db: not a database URL: 'x.db': write sqlite:///x.db" in line
    line = one_line_error(cli("db", "upgrade", "--db", "mysql://x"))
    assert "unsupported database 'mysql'" in line and "PostgreSQL" in line


def test_an_unexpected_error_hints_at_debug(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr("gateway.cli.store.cmd_config_check", broken)
    assert main(["config", "check"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unexpected error: RuntimeError: something nobody foresaw" in err
    assert "--debug" in err
    for argv in (["--debug", "config", "check"], ["config", "check", "--debug"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and "something nobody foresaw" in err


# -- version, help -------------------------------------------------------------------------


def test_version_is_the_package_metadata() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"klarna-gateway {version('klarna-gateway')}"


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_flag_shows_its_default_and_every_command_has_a_description() -> None:
    commands = dict(_commands(build_parser()))
    assert {("serve",), ("sandbox",), ("reconcile",), ("explain",), ("journal",),
            ("db", "upgrade"), ("db", "port"), ("config", "check"),
            ("reservations", "add"), ("reservations", "show"),
            ("reservations", "import")} <= set(commands)
    for path, parser in commands.items():
        assert parser.description and len(parser.description) > 30, path
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.required \
                    or action.dest in ("help", "version"):
                continue
            help_text = parser.formatter_class(parser.prog)._get_help_string(action)
            assert "default" in help_text or "required" in help_text, (path, action.dest)
        assert "(default:" in text
    shown = cli("reconcile", "--help").stdout
    assert "(default: 8)" in shown and "(default: table)" in shown
    assert "$KLARNA_GATEWAY_DB, else sqlite:///gateway.db" in " ".join(shown.split())


# -- read-only commands, database URL ------------------------------------------------------


@pytest.mark.slow
def test_read_only_commands_create_nothing(tmp_path: Path, db: str, cfg: str) -> None:
    """Without a database they say so and create no file; with one they change no byte
    (no -wal/-shm left behind)."""
    work = tmp_path / "empty"
    work.mkdir()
    request = tmp_path / "call.xml"
    request.write_text("<?xml version='1.0'?><methodCall><methodName>activate</methodName>"
                       "<params></params></methodCall>")
    env = {CONFIG_ENV: cfg}
    for command in (["explain", str(request)],
                    ["reservations", "show", "--eid", "1234", "--rno", "1"],
                    ["journal"], ["reconcile"],
                    ["reservations", "add", "--eid", "1234", "--order-id", "o-1"]):
        line = one_line_error(cli(*command, env=env, cwd=work))
        assert "no database at gateway.db (nothing created" in line, command
    assert cli("config", "check", env=env, cwd=work).returncode == 0
    assert list(work.iterdir()) == []

    store_dir = Path(db.removeprefix("sqlite:///")).parent
    register(db, 1234, "o-1")
    before = fingerprint(store_dir)
    shown = cli("reservations", "show", "--db", db, "--eid", "1234", "--rno", "8000000000",
                env=env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["order_id"] == "o-1"
    explained = cli("explain", str(request), "--db", db, env=env)
    assert explained.returncode == 1 and explained.stdout.startswith("fault ")
    assert cli("journal", "--db", db, env=env).returncode == 0
    assert fingerprint(store_dir) == before


@pytest.mark.slow
def test_database_url_from_a_file_or_the_environment(tmp_path: Path, cfg: str) -> None:
    """--db, else --db-file, else $KLARNA_GATEWAY_DB, else sqlite:///gateway.db."""
    url_file = tmp_path / "db-url"
    url_file.write_text(f"\nsqlite:///{tmp_path}/from-file.db\n")
    assert cli("db", "upgrade", "--db-file", str(url_file)).returncode == 0
    assert (tmp_path / "from-file.db").exists()
    env = {CONFIG_ENV: cfg, DB_ENV: f"sqlite:///{tmp_path}/from-file.db"}
    rno = register(f"sqlite:///{tmp_path}/from-file.db", 1234, "o-1")
    for flags, variables in ((["--db-file", str(url_file)], {CONFIG_ENV: cfg}), ([], env)):
        shown = cli("reservations", "show", *flags, "--eid", "1234", "--rno", rno,
                    env=variables)
        assert shown.returncode == 0 and json.loads(shown.stdout)["order_id"] == "o-1"
    other = cli("reservations", "show", "--db", f"sqlite:///{tmp_path}/other.db", "--eid",
                "1234", "--rno", "1", env=env)  # the flag wins over the environment
    assert f"no database at {tmp_path}/other.db" in one_line_error(other)
    both = cli("journal", "--db", "sqlite:///x.db", "--db-file", str(url_file), env=env)
    assert "not allowed with argument" in one_line_error(both)
    empty = tmp_path / "empty-url"
    empty.write_text("\n")
    assert "holds no database URL" in one_line_error(cli("journal", "--db-file", str(empty),
                                                         env=env))


# -- long jobs: formats, --since, progress -------------------------------------------------


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


@pytest.mark.slow
def test_reconcile_formats_since_and_what_it_cannot_check(tmp_path: Path, db: str,
                                                          sandbox: SandboxProcess) -> None:
    config = str(write_config(tmp_path / "sb.toml", sandbox.url))
    other = with_eid_777(tmp_path, sandbox.url)
    add = ("reservations", "add", "--db", db, "--config", other)
    register(db, 1234, "no-such-order")  # registered before the gateway checked orders
    time.sleep(0.05)
    since = _iso(time.time())
    time.sleep(0.05)
    assert cli(*add, "--eid", "1234", "--order-id", sandbox.create_order()).returncode == 0
    register(db, 777, "o-777")
    run = ("reconcile", "--db", db, "--config", config)

    table = cli(*run)
    assert table.returncode == 1, table.stdout + table.stderr
    assert "2 discrepancies between the store and Klarna" in table.stdout
    assert "order unreadable" in table.stdout and "eid not configured" in table.stdout
    assert table.stderr == ""  # not a terminal: no progress

    document = cli(*run, "--format", "json", "--concurrency", "1")
    assert document.returncode == 1 and document.stderr == ""
    report = json.loads(document.stdout)
    assert report["agree"] is False and report["resumed"] == {}
    assert sorted((d["eid"], d["what"]) for d in report["discrepancies"]) == [
        (777, "eid not configured"), (1234, "order unreadable")]
    assert [d["order_id"] for d in report["discrepancies"]
            if d["eid"] == 1234] == ["no-such-order"]

    recent = cli(*run, "--since", since, "--format", "csv")
    assert recent.returncode == 1
    assert recent.stderr.strip() == "unfinished calls resumed: none"
    rows = list(csv.reader(io.StringIO(recent.stdout)))
    assert rows[0] == list(COLUMNS)
    assert [(r[0], r[3]) for r in rows[1:]] == [("777", "eid not configured")]

    later = cli(*run, "--since", _iso(time.time() + 3600), "--format", "csv")
    assert later.returncode == 0 and later.stdout.strip() == ",".join(COLUMNS)
    agree = cli(*run, "--eid", "1234", "--since", since)
    assert agree.returncode == 0 and "store and Klarna agree" in agree.stdout


def _with_terminal_stderr(*args: str) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; (exit status, what the terminal got)."""
    master, slave = pty.openpty()
    base = {k: v for k, v in os.environ.items() if k not in (CONFIG_ENV, DB_ENV)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], text=True,
                            stdout=subprocess.PIPE, stderr=slave,
                            env={**base, "PYTHONPATH": str(ROOT), "COLUMNS": "100"})
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.communicate(timeout=60)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_progress_is_drawn_on_a_terminal(tmp_path: Path, db: str,
                                         sandbox: SandboxProcess) -> None:
    config = str(write_config(tmp_path / "sb.toml", sandbox.url))
    orders = [sandbox.create_order() for _ in range(3)]
    rows = tmp_path / "rows.csv"
    rows.write_text("eid,rno,order_id\n" + "".join(f"1234,{2400000001 + i},{o}\n"
                                                     for i, o in enumerate(orders)))
    code, screen = _with_terminal_stderr("reservations", "import", "--db", db, "--config",
                                         config, str(rows))
    assert code == 0, screen
    assert "orders: 100%" in screen and "3/3" in screen and "rows: 100%" in screen
    code, screen = _with_terminal_stderr("reconcile", "--db", db, "--config", config)
    assert code == 0, screen
    assert "orders: 100%" in screen and "3/3" in screen


@pytest.mark.slow
def test_import_reports_as_json_and_csv(tmp_path: Path, db: str,
                                        sandbox: SandboxProcess) -> None:
    config = str(write_config(tmp_path / "sb.toml", sandbox.url))
    order = sandbox.create_order()
    rows = tmp_path / "rows.csv"
    rows.write_text(f"eid,rno,order_id\n1234,2400000001,{order}\n1234,2400000002,nope\n"
                    "9999,1,=cmd\n")
    args = ("reservations", "import", "--db", db, "--config", config, "--dry-run", str(rows))
    document = cli(*args, "--format", "json", "--concurrency", "2")
    assert document.returncode == 1 and document.stderr == ""
    report = json.loads(document.stdout)
    assert report["counts"] == {"ok": 1, "unchanged": 0, "refused": 2}
    assert [r["status"] for r in report["reservations"]] == ["ok", "refused", "refused"]
    table = list(csv.reader(io.StringIO(cli(*args, "--format", "csv").stdout)))
    assert table[0] == ["where", "kind", "status", "message"]
    assert [(r[0], r[2]) for r in table[1:]] == [("line 2", "ok"), ("line 3", "refused"),
                                                 ("line 4", "refused")]
    assert "nope does not exist" in table[2][3]


# -- db port -------------------------------------------------------------------------------


@pytest.mark.slow
def test_db_port_copies_verifies_and_refuses(tmp_path: Path, db: str, cfg: str) -> None:
    """SQLite to SQLite (the PostgreSQL round trip is below): every row, the counters
    (raised past an rno the ERP gave in the gateway's range), and the refusals."""
    assert register(db, 1234, "o-1") == "8000000000"
    register(db, 1234, "o-2", "8000000005")
    target = f"sqlite:///{tmp_path}/copy.db"
    ported = cli("db", "port", "--config", cfg, "--from", db, "--to", target)
    assert ported.returncode == 0, ported.stdout + ported.stderr
    assert any(ln.split()[:2] == ["reservations", "2"] for ln in ported.stdout.splitlines())
    assert "next rno 8000000006" in ported.stdout and "next invno 9000000000" in ported.stdout
    assert "verified:" in ported.stdout
    shown = cli("reservations", "show", "--db", target, "--config", cfg, "--eid", "1234",
                "--rno", "8000000005")
    assert json.loads(shown.stdout)["order_id"] == "o-2"
    assert register(target, 1234, "o-3") == "8000000006"

    again = cli("db", "port", "--config", cfg, "--from", db, "--to", target)
    assert "the target is not empty (table" in one_line_error(again)
    same = cli("db", "port", "--config", cfg, "--from", db, "--to", db)
    assert "the same database" in one_line_error(same)
    missing = cli("db", "port", "--config", cfg, "--from", f"sqlite:///{tmp_path}/none.db",
                  "--to", f"sqlite:///{tmp_path}/copy2.db")
    assert "no database at" in one_line_error(missing)
    Path(db.removeprefix("sqlite:///") + "-wal").write_bytes(b"")
    busy = cli("db", "port", "--config", cfg, "--from", db, "--to",
               f"sqlite:///{tmp_path}/copy3.db")
    assert "open in another process" in one_line_error(busy)
    assert not (tmp_path / "copy3.db").exists()


@pytest.mark.slow
@pytest.mark.postgres
def test_db_port_sqlite_to_postgresql_then_serve_from_the_copy(
        tmp_path: Path, sandbox: SandboxProcess) -> None:
    """A gateway issues rno and invno on SQLite; after `db port` a gateway on PostgreSQL
    continues both sequences and still knows the invoice."""
    from gateway.testing.processes import GatewayProcess
    from tests.conftest import make_pg_schema

    config = write_config(tmp_path / "gw.toml", sandbox.url)
    source = f"sqlite:///{tmp_path}/gw.db"
    gw = GatewayProcess(config, source, log_path=tmp_path / "gw.log").start()
    try:
        rno = gw.register(1234, sandbox.create_order())
        k = gw.sdk()
        k.add_art_no(qty=1, artno="ART-1")
        assert k.activate(rno) == ("ok", "9000000000")
    finally:
        gw.stop()
    target, drop = make_pg_schema()
    url_file = tmp_path / "pg-url"
    url_file.write_text(target + "\n")
    try:
        ported = cli("db", "port", "--config", str(config), "--from", source,
                     "--to-file", str(url_file))
        assert ported.returncode == 0, ported.stdout + ported.stderr
        assert "next rno 8000000001 (as the source)" in ported.stdout
        assert "next invno 9000000001 (as the source)" in ported.stdout
        gw = GatewayProcess(config, target, log_path=tmp_path / "gw-pg.log").start()
        try:
            [invoice] = gw.mapping(1234, rno)["invoices"]
            assert invoice["invno"] == "9000000000"
            k = gw.sdk()
            k.add_art_no(qty=1, artno="ART-1")
            assert k.activate(rno) == ("ok", "9000000001")
            assert gw.register(1234, sandbox.create_order()) == "8000000001"
        finally:
            gw.stop()
        again = cli("db", "port", "--config", str(config), "--from", source,
                    "--to-file", str(url_file))
        assert "the target is not empty" in one_line_error(again)
    finally:
        drop()
