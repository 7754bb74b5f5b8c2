"""The console script's one-shot commands against a real SQLite store (and, for imports,
a real sandbox process as Klarna)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from gateway.testing.processes import (
    REST_AUTH, SandboxProcess, http, run_cli, write_config,
)
from tests.process_fixtures import db, sandbox  # noqa: F401


@pytest.fixture
def cfg(tmp_path: Path, sandbox: SandboxProcess) -> str:
    return str(write_config(tmp_path / "gw.toml", sandbox.url))


def rest(sb: SandboxProcess, order_id: str, what: str, body: dict[str, Any]) -> str:
    """A capture or refund made straight at Klarna, as before the migration → its id."""
    status, headers, answer = http("POST", f"{sb.url}/ordermanagement/v1/orders/{order_id}/"
                                   f"{what}s", body, auth=REST_AUTH[1234])
    assert status == 201, answer
    return headers[f"{what.capitalize()}-Id"]


@pytest.mark.slow
def test_reservations_add_show_and_import(tmp_path: Path, db: str, cfg: str,
                                          sandbox: SandboxProcess) -> None:
    """add issues or takes an rno; show prints the mapping; import checks each order over
    REST, has a dry run and a report that names each bad line, and changes nothing in
    dry-run mode."""
    o1, o2, o3, o5 = (sandbox.create_order() for _ in range(4))
    added = run_cli("reservations", "add", "--db", db, "--config", cfg, "--eid", "1234",
                    "--order-id", o1)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"eid": 1234, "rno": "8000000000", "order_id": o1}
    shown = run_cli("reservations", "show", "--db", db, "--config", cfg, "--eid", "1234",
                    "--rno", "8000000000")
    assert json.loads(shown.stdout)["order_id"] == o1
    csv = tmp_path / "map.csv"
    csv.write_text(f"eid,rno,order_id\n1234,2400000001,{o2}\n1234,2400000002,{o3}\n"
                   f"9999,1,o-4\n1234,2400000001,{o5}\n1234,8000000000,{o1}\n1234,3,{o1}\n"
                   "1234,4,no-such-order\n")
    dry = run_cli("reservations", "import", "--db", db, "--config", cfg, "--dry-run", str(csv))
    assert dry.returncode == 1, dry.stderr
    assert "(reservations): would add 2, unchanged 1, problems 4" in dry.stdout
    assert f"line 2: would add: rno 2400000001 ↔ order {o2} (AUTHORIZED)" in dry.stdout
    assert "line 4: refused: eid '9999' is not a configured merchant" in dry.stdout
    assert "line 5: refused: rno 2400000001 repeats line 2" in dry.stdout
    assert "line 6: unchanged:" in dry.stdout and "line 7: refused: conflicts" in dry.stdout
    assert "line 8: refused: order no-such-order does not exist for eid 1234" in dry.stdout
    missing = run_cli("reservations", "show", "--db", db, "--config", cfg, "--eid", "1234",
                      "--rno", "2400000001")
    assert missing.returncode == 1
    real = run_cli("reservations", "import", "--db", db, "--config", cfg, str(csv))
    assert "added 2, unchanged 1, problems 4" in real.stdout
    shown = run_cli("reservations", "show", "--db", db, "--config", cfg, "--eid", "1234",
                    "--rno", "2400000002")
    assert json.loads(shown.stdout)["order_id"] == o3
    assert json.loads(shown.stdout)["origin"] == "import"
    headerless = tmp_path / "old.csv"  # a file without a header: reservations, as before
    headerless.write_text(f"1234,2400000003,{o5}\n1234,2400000001,{o2}\n")
    again = run_cli("reservations", "import", "--db", db, "--config", cfg, str(headerless))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "added 1, unchanged 1, problems 0" in again.stdout


@pytest.mark.slow
def test_import_invoices_and_credits(tmp_path: Path, db: str, cfg: str,
                                     sandbox: SandboxProcess) -> None:
    """Invoices and credits Klarna issued before the migration: checked against the order
    over REST, reservation registered on the way, dry run changes nothing, same file again
    is unchanged, bad rows refused with the reason."""
    order_id = sandbox.create_order()
    order = sandbox.order(order_id)
    capture_id = rest(sandbox, order_id, "capture",
                      {"captured_amount": 35000, "order_lines": order["order_lines"]})
    refund_id = rest(sandbox, order_id, "refund", {
        "refunded_amount": 10000, "reference": "OLD-CR-1",
        "order_lines": [dict(order["order_lines"][0], quantity=1, total_amount=10000,
                             total_tax_amount=2000)]})
    invoices = tmp_path / "invoices.csv"
    invoices.write_text(f"eid,invno,order_id,capture_id\n1234,123456,{order_id},{capture_id}\n"
                        f"1234,123457,{order_id},no-such-capture\n")
    credits = tmp_path / "credits.csv"
    credits.write_text(f"EID, invno, credno, refund_id\n1234,123456,OLD-CR-1,{refund_id}\n"
                       "1234,999,OLD-CR-2,other-refund\n1234,123456,OLD-CR-3,no-such-refund\n")
    args = ("reservations", "import", "--db", db, "--config", cfg)

    dry = run_cli(*args, "--dry-run", str(invoices))
    assert dry.returncode == 1, dry.stderr
    assert "(invoices): would add 1, unchanged 0, problems 1" in dry.stdout
    assert (f"line 2: would add: invno 123456 ↔ capture {capture_id} of order {order_id} "
            "(35000 captured); reservation registered (rno issued on import)") in dry.stdout
    assert f"line 3: refused: capture no-such-capture is not on order {order_id}" in dry.stdout
    early = run_cli(*args, "--dry-run", str(credits)).stdout  # before their invoice
    assert "line 2: refused: invoice 123456 is unknown for eid 1234: import it first" in early
    assert_store(db, invoices=0, credits=0, reservations=0)

    real = run_cli(*args, str(invoices))
    assert "added 1, unchanged 0, problems 1" in real.stdout, real.stdout + real.stderr
    assert "(rno 8000000000)" in real.stdout
    assert "unchanged 1" in run_cli(*args, str(invoices)).stdout
    credited = run_cli(*args, str(credits))
    assert "(credits): added 1, unchanged 0, problems 2" in credited.stdout, credited.stdout
    assert (f"line 2: added: credno OLD-CR-1 ↔ refund {refund_id} on invoice 123456 "
            "(10000 refunded, 25000 left to refund on it)") in credited.stdout
    assert "line 3: refused: invoice 999 is unknown for eid 1234" in credited.stdout
    assert (f"line 4: refused: refund no-such-refund is not on order {order_id}"
            in credited.stdout)
    assert "added 0, unchanged 1, problems 2" in run_cli(*args, str(credits)).stdout
    shown = json.loads(run_cli("reservations", "show", "--db", db, "--config", cfg,
                               "--eid", "1234", "--rno", "8000000000").stdout)
    assert shown["order_id"] == order_id and shown["origin"] == "import"
    [inv] = shown["invoices"]
    assert (inv["invno"], inv["captured_amount"], inv["refunded_amount"]) == (
        "123456", 35000, 10000)
    assert [c["credno"] for c in inv["credits"]] == ["OLD-CR-1"]
    assert_store(db, invoices=1, credits=1, reservations=1)


@pytest.mark.slow
def test_import_refuses_an_unknown_header(tmp_path: Path, db: str, cfg: str) -> None:
    """A header naming no kind: exit 2, the accepted headers named, nothing read."""
    bad = tmp_path / "bad.csv"
    bad.write_text("eid,invoice,order\n1234,1,o\n")
    result = run_cli("reservations", "import", "--db", db, "--config", cfg, str(bad))
    assert result.returncode == 2
    assert "unknown header eid,invoice,order; one of eid,rno,order_id | " in result.stderr
    assert "eid,invno,order_id,capture_id | eid,invno,credno,refund_id" in result.stderr


def assert_store(db: str, **tables: int) -> None:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            for table, n in tables.items():
                assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one() == n
    finally:
        engine.dispose()


def test_serve_without_config_explains(tmp_path: Path) -> None:
    """`serve` with neither --config nor --sandbox says what to do (exit 2: cannot run)."""
    result = run_cli("serve", "--db", f"sqlite:///{tmp_path}/x.db")
    assert result.returncode == 2 and "--config" in result.stderr
    assert "--sandbox" in result.stderr and "Traceback" not in result.stderr


def test_docs_list_every_serve_flag() -> None:
    """docs/cli.md's `serve` flags paragraph names every option `serve` accepts
    (`--sandbox-seed` was missing)."""
    from gateway.cli import build_parser

    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    paragraph = doc.split("`serve` flags:", 1)[1].split("\n\n", 1)[0]
    import argparse

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.choices["serve"]
    flags = {opt for action in serve._actions for opt in action.option_strings
             if opt.startswith("--") and opt not in ("--help", "--debug")}  # global ones
    missing = sorted(f for f in flags if f"`{f}" not in paragraph)
    assert not missing, f"docs/cli.md's serve flags lack {missing}"


def test_help_texts_name_only_flags_and_files_that_exist() -> None:
    """A help text that sends the reader to `COMMAND --flag` or to a repository file names
    one that exists (`explain --help` pointed at a `record --keep-digest` that never did)."""
    import argparse
    import re

    from gateway.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = sub.choices
    for name, parser in commands.items():
        texts = [parser.description or ""] + [a.help or "" for a in parser._actions]
        for text in texts:
            for command, flag in re.findall(r"`(\w+) (--[\w-]+)", text):
                if command in commands:
                    flags = {o for a in commands[command]._actions for o in a.option_strings}
                    assert flag in flags, f"{name} --help names {command} {flag}"
            for path in re.findall(r"\b((?:examples|config|docs|scripts)/[\w./-]+\w)", text):
                assert (root / path).exists(), f"{name} --help names {path}"
