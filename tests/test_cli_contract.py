"""The command line's one input contract, walked subcommand by subcommand (issue 17).

Every subcommand meets four kinds of bad input: a bad flag value, a missing file, an eid
that is not configured, and a URL that cannot be reached. Each answer is checked for its
exit status (the one table: 1 a finding, 2 unusable input or configuration, 3 a dependency
that cannot be reached), for one line on stderr prefixed ``klarna-gateway:`` that names the
bad value, and for the absence of any traceback. A kind that does not apply to a
subcommand says why, so a new subcommand cannot join without its four rows.

The second half builds the parser of every subcommand and checks the shared argument layer:
``--config``/``$KLARNA_GATEWAY_CONFIG`` and ``--db``/``--db-file``/``$KLARNA_GATEWAY_DB``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.cli.common import CONFIG_ENV, DB_ENV, config_path, db_url
from gateway.testing.processes import SandboxProcess, write_config
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
PG_DOWN = "postgresql://nobody@127.0.0.1:9/none"
KLARNA_DOWN = "http://127.0.0.1:9"


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m gateway.cli ARGS`` with neither of the gateway's variables inherited."""
    base = {k: v for k, v in os.environ.items() if k not in (CONFIG_ENV, DB_ENV)}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], text=True,
                          capture_output=True, env={**base, **(env or {})}, cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def started(*args: str) -> subprocess.Popen[str]:
    """A long-running command in the background (stop it with SIGTERM)."""
    base = {k: v for k, v in os.environ.items() if k not in (CONFIG_ENV, DB_ENV)}
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**base, "PYTHONPATH": str(ROOT)})


def dump_request(*args: str) -> bytes:
    """The official SDK's signed request (``examples/dump_request.py --dump-request``)."""
    return subprocess.run([sys.executable, str(ROOT / "examples" / "dump_request.py"),
                           "--dump-request", *args], capture_output=True, check=True
                          ).stdout


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable subcommand (a leaf of the parser tree) and its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs and path:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from commands(sub, (*path, name))


def leaf_commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    return dict(commands(build_parser()))


# -- the world the walk runs in ------------------------------------------------------------


@dataclass
class World:
    tmp: Path
    db: str
    cfg: str
    down: str  # the same merchants, Klarna unreachable
    missing: str
    rno: str
    order_id: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("contract")
    sandbox = SandboxProcess(log_path=tmp / "sandbox.log").start()
    try:
        db = f"sqlite:///{tmp}/store.db"
        assert cli("db", "upgrade", "--db", db).returncode == 0
        cfg = str(write_config(tmp / "gw.toml", sandbox.url))
        down = str(write_config(tmp / "down.toml", KLARNA_DOWN, rest_timeout_seconds=0.5,
                                retry_budget_seconds=1.0))
        order_id = sandbox.create_order()
        added = cli("reservations", "add", "--config", cfg, "--db", db, "--eid", "1234",
                    "--order-id", order_id)
        assert added.returncode == 0, added.stderr
        rno = added.stdout.split('"rno": "')[1].split('"')[0]
        (tmp / "rows.csv").write_text(f"eid,rno,order_id\n1234,2400000001,{order_id}\n")
        (tmp / "rows-4321.csv").write_text(f"eid,rno,order_id\n4321,2400000002,{order_id}\n")
        (tmp / "activate.xml").write_bytes(dump_request("activate", rno, "ART-1:1"))
        (tmp / "activate-4321.xml").write_bytes(dump_request("--eid", "4321", "activate", rno))
        recording = tmp / "rec"
        recording.mkdir()
        (recording / "recording-20261101T000000Z-1.jsonl").write_text(
            '{"kind": "recording", "format": 1, "source": "serve"}\n')
        yield World(tmp, db, cfg, down, str(tmp / "missing.toml"), rno, order_id)
    finally:
        sandbox.stop()


# -- the walk ------------------------------------------------------------------------------

KINDS = ("bad flag value", "missing file", "unconfigured eid", "unreachable URL")


@dataclass(frozen=True)
class Case:
    """One row of the walk: the arguments, the exit status, and what the output says."""

    args: tuple[str, ...]
    code: int
    says: str
    stream: str = "stderr"  # a finding (exit 1) is reported on stdout


@dataclass(frozen=True)
class NotApplicable:
    why: str


def order_job(w: World, command: str, bad_flag: tuple[str, str], bad_says: str,
              down_says: str) -> dict[str, Case | NotApplicable]:
    """The four cases of a job that reads the configuration, the store and every order from
    Klarna (``reconcile``, ``expiring``): they differ only in their own flag and words."""
    store = ("--config", w.cfg, "--db", w.db)
    return {
        "bad flag value": Case((command, *store, *bad_flag), 2, bad_says),
        "missing file": Case((command, "--config", w.missing, "--db", w.db), 2,
                             "missing.toml"),
        "unconfigured eid": Case((command, *store, "--eid", "4321"), 2,
                                 "eid 4321 is not configured"),
        "unreachable URL": Case((command, "--config", w.down, "--db", w.db), 3, down_says),
    }


def walk(w: World) -> dict[tuple[str, ...], dict[str, Case | NotApplicable]]:
    t = w.tmp
    listen = ("--listen", "tcp:0:interface=127.0.0.1", "--admin-listen",
              "tcp:0:interface=127.0.0.1")
    no_eid = NotApplicable("takes no eid")
    return {
        ("serve",): {
            "bad flag value": Case(("serve", "--config", w.cfg, "--db", w.db, "--listen",
                                    "nonsense:1"), 2, "--listen: not a listening endpoint"),
            "missing file": Case(("serve", "--config", w.missing, "--db", w.db, *listen), 2,
                                 "missing.toml"),
            "unconfigured eid": NotApplicable("serves every configured merchant; takes no "
                                              "eid"),
            "unreachable URL": Case(("serve", "--config", w.cfg, "--db", PG_DOWN, *listen), 3,
                                    "database error"),
        },
        ("sandbox",): {
            "bad flag value": Case(("sandbox", "--seed", "-4"), 2, "--seed"),
            "missing file": Case(("sandbox", "--config", w.missing), 2, "missing.toml"),
            "unconfigured eid": no_eid,
            "unreachable URL": NotApplicable("reaches nothing (a busy port: "
                                             "test_sandbox_on_a_busy_port_fails_at_once)"),
        },
        ("config", "check"): {
            "bad flag value": Case(("config", "check", "--config", ""), 2,
                                   "no configuration: give --config FILE"),
            "missing file": Case(("config", "check", "--config", w.missing), 2,
                                 "missing.toml: cannot read: No such file or directory"),
            "unconfigured eid": no_eid,
            "unreachable URL": NotApplicable("opens no database and reads no URL"),
        },
        ("reservations", "add"): {
            "bad flag value": Case(("reservations", "add", "--config", w.cfg, "--db", w.db,
                                    "--eid", "abc", "--order-id", "o"), 2, "--eid"),
            "missing file": Case(("reservations", "add", "--config", w.cfg, "--db-file",
                                  str(t / "no-url"), "--eid", "1234", "--order-id", "o"), 2,
                                 "--db-file"),
            "unconfigured eid": Case(("reservations", "add", "--config", w.cfg, "--db", w.db,
                                      "--eid", "4321", "--order-id", w.order_id), 2,
                                     "eid 4321 is not configured"),
            "unreachable URL": Case(("reservations", "add", "--config", w.down, "--db", w.db,
                                     "--eid", "1234", "--order-id", "o-1"), 3,
                                    "Klarna did not answer"),
        },
        ("reservations", "show"): {
            "bad flag value": Case(("reservations", "show", "--config", w.cfg, "--db", w.db,
                                    "--eid", "abc", "--rno", w.rno), 2, "--eid"),
            "missing file": Case(("reservations", "show", "--config", w.cfg, "--db-file",
                                  str(t / "no-url"), "--eid", "1234", "--rno", w.rno), 2,
                                 "--db-file"),
            "unconfigured eid": Case(("reservations", "show", "--config", w.cfg, "--db", w.db,
                                      "--eid", "4321", "--rno", w.rno), 2,
                                     "eid 4321 is not configured"),
            "unreachable URL": Case(("reservations", "show", "--config", w.cfg, "--db",
                                     PG_DOWN, "--eid", "1234", "--rno", w.rno), 3,
                                    "database error"),
        },
        ("reservations", "import"): {
            "bad flag value": Case(("reservations", "import", "--config", w.cfg, "--db", w.db,
                                    "--concurrency", "0", str(t / "rows.csv")), 2,
                                   "--concurrency"),
            "missing file": Case(("reservations", "import", "--config", w.cfg, "--db", w.db,
                                  str(t / "nope.csv")), 2,
                                 "nope.csv: cannot read: No such file or directory"),
            "unconfigured eid": Case(("reservations", "import", "--config", w.cfg, "--db",
                                      w.db, "--dry-run", str(t / "rows-4321.csv")), 1,
                                     "eid '4321' is not a configured merchant", "stdout"),
            "unreachable URL": Case(("reservations", "import", "--config", w.down, "--db",
                                     w.db, "--dry-run", str(t / "rows.csv")), 3,
                                    "Klarna did not answer"),
        },
        ("db", "upgrade"): {
            "bad flag value": Case(("db", "upgrade", "--db", "x.db"), 2, "sqlite:///x.db"),
            "missing file": Case(("db", "upgrade", "--db-file", str(t / "no-url")), 2,
                                 "--db-file"),
            "unconfigured eid": NotApplicable("reads no configuration"),
            "unreachable URL": Case(("db", "upgrade", "--db", PG_DOWN), 3, "database error"),
        },
        ("db", "port"): {
            "bad flag value": Case(("db", "port", "--config", w.cfg, "--from", w.db, "--to",
                                    "mysql://x/y"), 2, "unsupported database 'mysql'"),
            "missing file": Case(("db", "port", "--config", w.cfg, "--from-file",
                                  str(t / "no-url"), "--to", PG_DOWN), 2, "--from-file"),
            "unconfigured eid": no_eid,
            "unreachable URL": Case(("db", "port", "--config", w.cfg, "--from", w.db, "--to",
                                     PG_DOWN), 3, "database error"),
        },
        ("reconcile",): order_job(w, "reconcile", ("--since", "soon"),
                                  "--since: not an ISO-8601 time: 'soon'",
                                  "Klarna did not answer"),
        ("explain",): {
            "bad flag value": Case(("explain", str(t / "activate.xml"), "--config", w.cfg,
                                    "--db", "x.db"), 2, "write sqlite:///x.db"),
            "missing file": Case(("explain", str(t / "missing.xml"), "--config", w.cfg,
                                  "--db", w.db), 2,
                                 "missing.xml: cannot read: No such file or directory"),
            "unconfigured eid": Case(("explain", str(t / "activate-4321.xml"), "--config",
                                      w.cfg, "--db", w.db), 1, "fault 9113", "stdout"),
            "unreachable URL": Case(("explain", str(t / "activate.xml"), "--config", w.down,
                                     "--db", w.db), 3, "cannot read the order from Klarna"),
        },
        ("journal",): {
            "bad flag value": Case(("journal", "--config", w.cfg, "--db", w.db, "--outcome",
                                    "maybe"), 2, "--outcome"),
            "missing file": Case(("journal", "--config", w.cfg, "--db-file",
                                  str(t / "no-url")), 2, "--db-file"),
            "unconfigured eid": Case(("journal", "--config", w.cfg, "--db", w.db, "--eid",
                                      "4321"), 2, "eid 4321 is not configured"),
            "unreachable URL": Case(("journal", "--config", w.cfg, "--db", PG_DOWN), 3,
                                    "database error"),
        },
        ("expiring",): order_job(w, "expiring", ("--within", "soon"), "--within",
                                 "not read: Klarna did not answer"),
        ("record",): {
            "bad flag value": Case(("record", "--upstream", "not-a-url", "--listen",
                                    "tcp:0:interface=127.0.0.1", "--out", str(t / "r1")), 2,
                                   "--upstream: not an http(s) URL: 'not-a-url'"),
            "missing file": Case(("record", "--upstream", KLARNA_DOWN, "--listen",
                                  "tcp:0:interface=127.0.0.1", "--out", str(t / "r2"),
                                  "--config", w.missing), 2, "missing.toml"),
            "unconfigured eid": no_eid,
            "unreachable URL": Case(("record", "--upstream", KLARNA_DOWN + "/", "--listen",
                                     "tcp:0:interface=127.0.0.1", "--out", str(t / "r3")), 3,
                                    "--upstream http://127.0.0.1:9/: cannot connect"),
        },
        ("replay",): {
            "bad flag value": Case(("replay", str(t / "rec"), "--target", KLARNA_DOWN,
                                    "--report", str(t / "r.html"), "--timeout", "-1"), 2,
                                   "--timeout"),
            "missing file": Case(("replay", str(t / "no-recording"), "--target", KLARNA_DOWN,
                                  "--report", str(t / "r.html")), 2, "no-recording"),
            "unconfigured eid": NotApplicable("the recording names the eids; a call of an eid "
                                              "not configured is sent as recorded and the "
                                              "report says so"),
            "unreachable URL": Case(("replay", str(t / "rec"), "--target", KLARNA_DOWN + "/",
                                     "--report", str(t / "r.html")), 3,
                                    "--target http://127.0.0.1:9/: cannot connect"),
        },
        ("completion",): {
            "bad flag value": Case(("completion", "fish"), 2, "invalid choice: 'fish'"),
            "missing file": NotApplicable("reads no file"),
            "unconfigured eid": no_eid,
            "unreachable URL": NotApplicable("reaches nothing"),
        },
    }


def check(case: Case, result: subprocess.CompletedProcess[str]) -> str | None:
    """What is wrong with the answer to ``case`` (None: nothing)."""
    out = result.stdout + result.stderr
    if result.returncode != case.code:
        return f"exit {result.returncode}, wanted {case.code}: {out[-600:]}"
    if "Traceback" in out:
        return f"a traceback: {out[-600:]}"
    if case.code != 1:
        # Warnings the process logs on the way (a guessable demo admin token) are not the
        # error: the error itself is one line.
        lines = [ln for ln in result.stderr.strip().splitlines()
                 if not (ln[:4].isdigit() and "#warn]" in ln)]
        if len(lines) != 1 or not lines[0].startswith("klarna-gateway: "):
            return f"not one line prefixed 'klarna-gateway: ': {result.stderr!r}"
    text = result.stdout if case.stream == "stdout" else result.stderr
    if case.says not in text:
        return f"does not say {case.says!r}: {text!r}"
    return None


@pytest.mark.slow
def test_every_subcommand_meets_every_kind_of_bad_input(world: World) -> None:
    table = walk(world)
    assert set(table) == set(leaf_commands()), "every subcommand is walked"
    cases = []
    for command, kinds in table.items():
        assert tuple(kinds) == KINDS, command
        cases += [(command, kind, c) for kind, c in kinds.items() if isinstance(c, Case)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda c: cli(*c[2].args, cwd=world.tmp), cases))
    problems = [f"{' '.join(command)} / {kind}: {why}"
                for (command, kind, case), result in zip(cases, results)
                if (why := check(case, result)) is not None]
    assert not problems, "\n".join(problems)
    assert not (world.tmp / "r1").exists() and not (world.tmp / "r3").exists()
    assert not (world.tmp / "r.html").exists(), "a refused replay writes no report"


@pytest.mark.slow
def test_debug_prints_the_traceback_of_an_expected_error_too(world: World) -> None:
    plain = cli("journal", "--config", world.cfg, "--db", PG_DOWN)
    assert plain.returncode == 3 and "Traceback" not in plain.stderr
    debug = cli("journal", "--config", world.cfg, "--db", PG_DOWN, "--debug")
    assert debug.returncode == 3 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("klarna-gateway: database error")


# -- the shared argument layer -------------------------------------------------------------

#: What each subcommand reads: a configuration (``required``/``optional``/None) and a
#: database (True/False). The parser of every subcommand must match this table.
NEEDS: dict[tuple[str, ...], tuple[str | None, bool]] = {
    ("serve",): ("required", True),
    ("sandbox",): ("optional", False),
    ("config", "check"): ("required", False),
    ("reservations", "add"): ("required", True),
    ("reservations", "show"): ("required", True),
    ("reservations", "import"): ("required", True),
    ("db", "upgrade"): (None, True),
    ("db", "port"): ("required", False),
    ("reconcile",): ("required", True),
    ("explain",): ("required", True),
    ("journal",): ("required", True),
    ("expiring",): ("required", True),
    ("record",): ("optional", False),
    ("replay",): ("optional", False),
    ("completion",): (None, False),
}

POSITIONAL = {("reservations", "import"): ["rows.csv"], ("explain",): ["call.xml"],
              ("replay",): ["rec"], ("completion",): ["bash"]}
REQUIRED = {("reservations", "add"): ["--eid", "1", "--order-id", "o"],
            ("reservations", "show"): ["--eid", "1", "--rno", "1"],
            ("db", "port"): ["--from", "sqlite:///a.db", "--to", "sqlite:///b.db"],
            ("record",): ["--upstream", "http://x/", "--listen", "tcp:1", "--out", "d"],
            ("replay",): ["--target", "http://x/", "--report", "r.html"]}


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings}


def parse(command: tuple[str, ...], *extra: str) -> argparse.Namespace:
    argv = [*command, *REQUIRED.get(command, []), *extra, *POSITIONAL.get(command, [])]
    return build_parser().parse_args(argv)


def test_every_subcommand_takes_the_environment_through_the_shared_layer(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    parsers = leaf_commands()
    assert set(parsers) == set(NEEDS), "every subcommand declares what it reads"
    url_file = tmp_path / "db-url"
    url_file.write_text("sqlite:///from-file.db\n")
    for command, (config, database) in NEEDS.items():
        have = flags(parsers[command])
        assert ("--config" in have) == (config is not None), command
        assert {"--db", "--db-file"} <= have if database else not have & {"--db",
                                                                         "--db-file"}, command
        help_text = " ".join(parsers[command].format_help().split())
        monkeypatch.setenv(CONFIG_ENV, "/etc/from-env.toml")
        monkeypatch.setenv(DB_ENV, "sqlite:///from-env.db")
        args = parse(command)
        if config is not None:
            assert f"${CONFIG_ENV}" in help_text, command
            assert config_path(args) == "/etc/from-env.toml", command
            assert config_path(parse(command, "--config", "x.toml")) == "x.toml", command
        if database:
            assert f"${DB_ENV}" in help_text, command
            assert db_url(args) == "sqlite:///from-env.db", command
            assert db_url(parse(command, "--db-file", str(url_file))) == \
                "sqlite:///from-file.db", command
            assert db_url(parse(command, "--db", "sqlite:///flag.db")) == \
                "sqlite:///flag.db", command
            monkeypatch.delenv(DB_ENV)
            assert db_url(parse(command)) == "sqlite:///gateway.db", command


# -- the findings of issue 17, one by one ----------------------------------------------------


def reservations_in(db: str) -> int:
    import sqlite3

    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        return int(conn.execute("SELECT count(*) FROM reservations").fetchone()[0])


@pytest.mark.slow
def test_reservations_add_checks_the_order_like_the_admin_api(world: World) -> None:
    """Finding 1: an order that does not exist, or is another merchant's, is refused (exit
    2, the admin API's words) and nothing is registered."""
    before = reservations_in(world.db)
    add = ("reservations", "add", "--config", world.cfg, "--db", world.db)
    for eid, order in (("1234", "does-not-exist"), ("5678", world.order_id)):
        result = cli(*add, "--eid", eid, "--order-id", order)
        assert check(Case((), 2, f"order {order} does not exist for eid {eid}"), result) \
            is None, result.stderr
    assert reservations_in(world.db) == before


@pytest.mark.slow
def test_expiring_honours_the_environment_and_db_file(world: World) -> None:
    """Finding 2: $KLARNA_GATEWAY_CONFIG, $KLARNA_GATEWAY_DB and --db-file, like every
    command; a wrong database is refused, never silently ./gateway.db. Finding 7: amounts
    are shown in major units."""
    work = world.tmp / "cron"
    work.mkdir(exist_ok=True)
    (work / "gateway.db").write_bytes(Path(world.db.removeprefix("sqlite:///")).read_bytes())
    wrong = cli("expiring", cwd=work, env={CONFIG_ENV: world.cfg, DB_ENV: "sqlite:///nope.db"})
    assert check(Case((), 2, "no database at nope.db"), wrong) is None, wrong.stderr
    right = cli("expiring", "--within", "30d", cwd=work,
                env={CONFIG_ENV: world.cfg, DB_ENV: world.db})
    assert right.returncode == 1, right.stdout + right.stderr
    assert world.rno in right.stdout
    import re
    assert re.search(r"AUTHORIZED\s+\d+\.\d\d SEK", right.stdout), right.stdout
    url_file = world.tmp / "db-url"
    url_file.write_text(world.db + "\n")
    by_file = cli("expiring", "--within", "30d", "--db-file", str(url_file), "--format",
                  "json", env={CONFIG_ENV: world.cfg})
    assert by_file.returncode == 1 and world.rno in by_file.stdout


def test_sandbox_on_a_busy_port_fails_at_once(world: World) -> None:
    """Finding 3: one line and exit 2, no traceback, no hang."""
    import socket
    import time

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = cli("sandbox", "--listen", f"tcp:{port}:interface=127.0.0.1", timeout=30)
    assert time.monotonic() - started < 20
    assert check(Case((), 2, "Address already in use"), result) is None, result.stderr


def recording_of_one_call(directory: Path) -> Path:
    import json

    directory.mkdir(exist_ok=True)
    request = (ROOT / "examples" / "activate-request.xml").read_bytes().decode("latin-1")
    reply = ("<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
             "<value><string>ok</string></value><value><string>9000000000</string></value>"
             "</data></array></value></param></params></methodResponse>")
    lines = [{"kind": "recording", "format": 1, "source": "serve"},
             {"kind": "exchange", "seq": 1, "started": 1.0, "method": "activate", "eid": 1234,
              "http_status": 200, "outcome": "ok", "path": "/", "request": request,
              "reply": reply, "digest": {"at": 3, "hash": "sha512", "masked": 0}}]
    path = directory / "recording-20261101T000000Z-1.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.slow
def test_replay_checks_the_report_path_before_sending_anything(world: World) -> None:
    """Finding 3: a report that cannot be written is refused before the first call (the
    target is not even connected to); finding 5: a target that does not run is exit 3 with
    the reason, not "4 different"."""
    import socket

    recording = recording_of_one_call(world.tmp / "rec-one")
    with socket.socket() as target:
        target.bind(("127.0.0.1", 0))
        target.listen()
        target.settimeout(0.5)
        url = f"http://127.0.0.1:{target.getsockname()[1]}/"
        result = cli("replay", str(recording), "--target", url, "--report",
                     "/missing/dir/r.html")
        assert check(Case((), 2, "--report /missing/dir/r.html: the directory /missing/dir "
                                 "does not exist"), result) is None, result.stderr
        with pytest.raises(socket.timeout):
            target.accept()
    gone = cli("replay", str(recording), "--target", url, "--report",
               str(world.tmp / "gone.html"))
    assert check(Case((), 3, "cannot connect (Connection refused)"), gone) is None
    assert not (world.tmp / "gone.html").exists()


def test_record_says_how_many_exchanges_it_recorded(world: World) -> None:
    """Finding 5: stopped, ``record`` says what it wrote."""
    import signal
    import urllib.request

    from gateway.testing.processes import free_port

    port = free_port()
    proc = started("record", "--upstream", sandbox_url(world), "--listen",
                   f"tcp:{port}:interface=127.0.0.1", "--out", str(world.tmp / "recorded"))
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("klarna-gateway: record: proxy on"), first
        for _ in range(2):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"<x/>")
            try:
                urllib.request.urlopen(request, timeout=10).read()
            except urllib.error.HTTPError:
                pass  # the sandbox answers what it answers: it is recorded either way
        wait_until(lambda: sum(len(f.read_text().splitlines()) - 1  # each after its header
                               for f in (world.tmp / "recorded").glob("recording-*.jsonl"))
                   >= 2, "both exchanges reached the recording")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped; 2 exchange(s) recorded to" in out, out + err
    assert "Traceback" not in err and "Starting factory" not in err


def sandbox_url(world: World) -> str:
    import tomllib

    with open(world.cfg, "rb") as f:
        return str(tomllib.load(f)["merchants"][0]["base_url"]) + "/"


@pytest.mark.slow
def test_a_semicolon_csv_is_read_and_a_one_column_file_refused(world: World) -> None:
    """Finding 5: the delimiter is sniffed; a file it cannot split is unusable (exit 2)."""
    semi = world.tmp / "semi.csv"
    semi.write_text(f"eid;rno;order_id\n1234;2400000077;{world.order_id}\n")
    run = ("reservations", "import", "--config", world.cfg, "--db", world.db, "--dry-run")
    read = cli(*run, str(semi))
    assert read.returncode == 1, read.stdout + read.stderr  # the order is already mapped
    assert "(reservations): would add 0, unchanged 0, problems 1" in read.stdout
    assert "expected 3 columns" not in read.stdout and "conflicts" in read.stdout
    prose = world.tmp / "notes.csv"
    prose.write_text("these are notes\nnot rows\n")
    refused = cli(*run, str(prose))
    assert check(Case((), 2, "no line has more than one column"), refused) is None


@pytest.mark.slow
def test_serve_on_a_busy_port_is_exit_2_in_one_line(world: World) -> None:
    """Finding 6: exit status 2 (docs/cli.md#exit-status), one line, no "Main loop terminated"
    after it."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("serve", "--config", world.cfg, "--db", f"sqlite:///{world.tmp}/s.db",
                     "--listen", f"tcp:{port}:interface=127.0.0.1", "--admin-listen",
                     "tcp:0:interface=127.0.0.1")
    assert check(Case((), 2, f"cannot listen on 127.0.0.1:{port}: Address already in use"),
                 result) is None, result.stderr
    assert "choose another --listen" in result.stderr, result.stderr


def test_serve_names_the_flag_of_the_busy_port(world: World) -> None:
    """The busy port is the sandbox's (or the admin API's): the message names that flag,
    not --listen."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        free = "tcp:0:interface=127.0.0.1"
        sandbox = cli("serve", "--sandbox", "--config", world.cfg, "--db",
                      f"sqlite:///{world.tmp}/s1.db", "--listen", free, "--admin-listen", free,
                      "--sandbox-listen", f"tcp:{port}:interface=127.0.0.1")
        admin = cli("serve", "--config", world.cfg, "--db", f"sqlite:///{world.tmp}/s2.db",
                    "--listen", free, "--admin-listen", f"tcp:{port}:interface=127.0.0.1")
    for result, flag in ((sandbox, "--sandbox-listen"), (admin, "--admin-listen")):
        assert check(Case((), 2, f"choose another {flag}"), result) is None, result.stderr


def test_every_option_has_a_description_and_one_default() -> None:
    """Finding 7: no option without help; a default is printed once."""
    import re

    for command, parser in leaf_commands().items():
        text = parser.format_help()
        for action in parser._actions:
            if action.dest in ("help", "debug"):
                continue
            assert action.help and len(action.help) > 8, (command, action.dest)
        for block in re.split(r"\n  (?=-)", text):
            assert block.count("(default") <= 1, (command, block)


@pytest.mark.slow
def test_usage_errors_point_at_the_subcommands_help() -> None:
    """Finding 7: the help of the command that was used, one line, prefixed."""
    for argv, where in ((["reconcile", "--bogus"], "klarna-gateway reconcile --help"),
                        (["reservations", "add", "--eid", "x", "--order-id", "o"],
                         "klarna-gateway reservations add --help"),
                        (["expiring", "--format", "xml"], "klarna-gateway expiring --help")):
        result = cli(*argv)
        line = check(Case((), 2, f"(see {where})"), result)
        assert line is None, line


def test_start_up_logs_name_no_objects_and_the_demo_listens_on_loopback(world: World) -> None:
    """Finding 7: no "Starting factory <…object at 0x…>" lines; ``serve --sandbox`` without
    --listen binds the legacy listener to loopback (its secrets are public)."""
    import signal

    from gateway.cli import serve

    assert build_parser().parse_args(["serve", "--sandbox"]).listen is None
    assert serve.SANDBOX_LISTEN.endswith("interface=127.0.0.1")
    proc = started("serve", "--sandbox", "--db", f"sqlite:///{world.tmp}/demo.db",
                   "--listen", "tcp:0:interface=127.0.0.1", "--admin-listen",
                   "tcp:0:interface=127.0.0.1", "--sandbox-listen", "tcp:0:interface=127.0.0.1")
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert lines[0].startswith("klarna-gateway: legacy XML-RPC on 127.0.0.1:"), lines
    assert "object at 0x" not in err and "Starting factory" not in err, err
    assert " starting on " not in err, err


# -- samples (finding 8) ---------------------------------------------------------------------


def test_the_signed_sample_is_what_the_sdk_sends_and_explain_reads_it(world: World) -> None:
    """examples/activate-request.xml is reproducible with examples/dump_request.py, and on
    a store whose first reservation is the walkthrough's order it is explained (its digest
    matches the demo merchant's secret): the capture of 1 x ART-1."""
    sample = ROOT / "examples" / "activate-request.xml"
    assert sample.read_bytes() == dump_request("activate", "8000000000", "ART-1:1")
    assert world.rno == "8000000000"
    explained = cli("explain", str(sample), "--config", world.cfg, "--db", world.db)
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "/captures" in explained.stdout and "9114" not in explained.stdout


def test_the_readme_examples_use_files_the_repository_has() -> None:
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"--config ((?:config|examples)/\S+?)[`\s]", readme))
    named |= set(re.findall(r"\b(examples/[\w.-]+)", readme))
    assert {"config/gateway.example.toml", "examples/activate-request.xml"} <= named
    for path in named:
        assert (ROOT / path).is_file(), path
    assert "--config gateway.toml" not in readme
    checked = cli("config", "check", "--config", str(ROOT / "config/gateway.example.toml"))
    assert checked.returncode == 0, checked.stderr


@pytest.mark.slow
def test_completion_scripts_for_bash_and_zsh() -> None:
    for shell, marker in (("bash", "complete -o"), ("zsh", "#compdef klarna-gateway")):
        script = cli("completion", shell)
        assert script.returncode == 0 and marker in script.stdout, script.stderr
        for word in ("reconcile", "expiring", "--db-file", "--config"):
            assert word in script.stdout, (shell, word)
    checked = subprocess.run(["bash", "-n"], input=cli("completion", "bash").stdout,
                             text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


# -- the contract's pieces -------------------------------------------------------------------


@pytest.mark.parametrize("text, unreachable", [
    ('connection failed: connection to server at "127.0.0.1", port 9 failed: Connection '
     'refused', True),
    ("connection failed: timeout expired", True),
    ('connection failed: FATAL:  password authentication failed for user "gw"', False),
    ('connection failed: FATAL:  database "nosuchdb" does not exist', False),
    ("no such table: reservations", False),
])
def test_which_database_errors_mean_unreachable(text: str, unreachable: bool) -> None:
    from gateway.tools.inputs import database_unreachable

    assert database_unreachable(RuntimeError(text)) is unreachable


def test_urls_paths_and_amounts(tmp_path: Path) -> None:
    from gateway.tools import inputs
    from gateway.tools.expiring import format_amount

    assert inputs.database_url("postgres://u@h/db") == "postgres://u@h/db"
    for bad, says in (("x.db", "write sqlite:///x.db"), ("mysql://x", "unsupported database"),
                      ("sqlite3:///x", "unsupported database")):
        with pytest.raises(inputs.InputError, match=says):
            inputs.database_url(bad)
    assert inputs.http_url(" https://h:8443/x ", "--target") == "https://h:8443/x"
    for bad in ("not-a-url", "ftp://h/", "http://", "http://h:port/"):
        with pytest.raises(inputs.InputError, match="--target"):
            inputs.http_url(bad, "--target")
    assert inputs.writable_file(str(tmp_path / "r.html"), "--report") == tmp_path / "r.html"
    with pytest.raises(inputs.InputError, match="is a directory"):
        inputs.writable_file(str(tmp_path), "--report")
    with pytest.raises(inputs.InputError, match="does not exist"):
        inputs.writable_file(str(tmp_path / "no" / "r.html"), "--report")
    assert inputs.reservation_number(2400000001) == "2400000001"
    with pytest.raises(inputs.InputError):
        inputs.reservation_number(" ")
    assert (format_amount(10000, "SEK"), format_amount(-5, "eur"),
            format_amount(500, "JPY")) == ("100.00 SEK", "-0.05 EUR", "500 JPY")
