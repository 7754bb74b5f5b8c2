"""``klarna-gateway``: the console script.

Subcommands: ``serve``, ``sandbox`` (``cli.serve``); ``config check``,
``reservations add|show|import`` (``cli.store``); ``db upgrade|port`` (``cli.db``);
``reconcile``, ``explain`` (``cli.tools``); ``journal`` (``cli.journal``, read-only search);
``record``, ``replay`` (``cli.replay``; ``serve --record``); ``expiring`` (``cli.expiring``,
authorizations that lapse soon).
Long-running commands run the reactor themselves; one-shot commands use ``task.react`` with
the composition root's parts. Only this package imports the global reactor.

Every error is one line on stderr, prefixed ``klarna-gateway:``, and one exit status from
the one table (:class:`gateway.tools.inputs.Exit`): 1 a command's own finding, 2 unusable
input or configuration, 3 a dependency that cannot be reached, 130 interrupted.
``--debug`` adds the traceback of an unexpected error (which exits 1).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import traceback

from gateway.cli import completion, db, expiring, journal, replay, serve, store, tools
from gateway.cli.common import CONFIG_ENV, DB_ENV, PROG, Parser, describe, error_line
from gateway.tools.inputs import Exit


def version() -> str:
    """The installed distribution's version (package metadata, from pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("klarna-gateway")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


#: The exit statuses, as ``--help`` and docs/cli.md#exit-status state them (:class:`Exit`).
EXIT_TABLE = ("Exit status: 0 done; 1 the command's own finding (a discrepancy, a "
              "difference, a refused row, a fault, an authorization about to lapse); 2 "
              "unusable input or configuration (a bad flag value, a missing file, an eid "
              "that is not configured, a port in use); 3 a dependency cannot be reached "
              "(the database, Klarna, a replay target); 130 interrupted.")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG,
               description="Klarna's legacy XML-RPC API served on the Order Management REST "
                           "API. Every command but `serve --sandbox`, `sandbox` and `db "
                           "upgrade` needs a configuration file: --config FILE or "
                           f"${CONFIG_ENV}; the database is --db URL, --db-file PATH or "
                           f"${DB_ENV}. " + EXIT_TABLE,
               epilog="Every error is one line on stderr starting with `klarna-gateway:`; "
                      "--debug prints the traceback of an unexpected one.")
    p.add_argument("--version", action="version", version=f"{PROG} {version()}",
                   help="print the installed version and exit")
    p.set_defaults(debug=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(sub)
    store.register(sub)
    db.register(sub)
    tools.register(sub)
    journal.register(sub)
    replay.register(sub)
    expiring.register(sub)
    completion.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from gateway.logs import json_requested

    # Under --log-format json every line is JSON, a usage error's included (docs/cli.md).
    as_json = json_requested(list(sys.argv[1:] if argv is None else argv))
    usage = io.StringIO()
    try:
        with contextlib.redirect_stderr(usage) if as_json else contextlib.nullcontext():
            args = build_parser().parse_args(argv)
    except SystemExit as e:  # usage errors (exit 2, one line), --help and --version (0)
        code = e.code if isinstance(e.code, int) else Exit.UNUSABLE
        for line in usage.getvalue().splitlines():
            error_line(line.removeprefix(f"{PROG}: "), code, as_json=True)
        return code
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        error_line("interrupted", Exit.INTERRUPTED, as_json=as_json)
        return Exit.INTERRUPTED
    except Exception as e:  # noqa: BLE001 - every error ends as one line, never a traceback
        message, code, unexpected = describe(e)
        fields = {}
        if debug and as_json:
            fields["traceback"] = traceback.format_exc()
        elif debug:
            traceback.print_exc()
        elif unexpected:
            message += f" (run `{PROG} --debug …` for the traceback)"
        error_line(message, code, as_json=as_json, **fields)
        return int(code)
