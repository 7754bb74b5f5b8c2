"""``klarna-gateway``: the console script.

Subcommands: ``serve``, ``sandbox`` (``cli.serve``); ``config check``,
``reservations add|show|import`` (``cli.store``); ``db upgrade|port`` (``cli.db``);
``reconcile``, ``explain`` (``cli.tools``); ``journal`` (``cli.journal``, read-only search);
``record``, ``replay`` (``cli.replay``; ``serve --record``); ``expiring`` (``cli.expiring``,
authorizations that lapse soon).
Long-running commands run the reactor themselves; one-shot commands use ``task.react`` with
the composition root's parts. Only this package imports the global reactor.

Every error is one line on stderr and a non-zero exit status (:func:`main`): 2 when the
command could not run (configuration, database, file, usage), 1 for a command's own finding
(discrepancies, refused rows, a fault), 130 when interrupted. ``--debug`` adds the
traceback of an unexpected error.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from gateway.cli import db, expiring, journal, replay, serve, store, tools
from gateway.cli.common import CANNOT_RUN, CliError, Parser
from gateway.errors import ConfigError

PROG = "klarna-gateway"


def version() -> str:
    """The installed distribution's version (package metadata, from pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("klarna-gateway")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG,
               description="Klarna's legacy XML-RPC API served on the Order Management REST "
                           "API. Every command but `serve --sandbox` and `sandbox` needs a "
                           "configuration file: --config FILE or $KLARNA_GATEWAY_CONFIG. "
                           "Exit status: 0 done, 1 the command's own finding "
                           "(discrepancies, refused rows, a fault), 2 could not run.")
    p.add_argument("--version", action="version", version=f"{PROG} {version()}")
    p.set_defaults(debug=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(sub)
    store.register(sub)
    db.register(sub)
    tools.register(sub)
    journal.register(sub)
    replay.register(sub)
    expiring.register(sub)
    return p


def describe(e: BaseException) -> tuple[str, int, bool]:
    """(one line, exit status, unexpected?) for an exception that ended a command."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    from gateway.store.schema import SchemaError

    if isinstance(e, CliError):
        return str(e), e.code, False
    if isinstance(e, (ConfigError, SchemaError)):
        return str(e), CANNOT_RUN, False
    if isinstance(e, DBAPIError):
        return f"database error: {e.orig or type(e).__name__}", CANNOT_RUN, False
    if isinstance(e, (ArgumentError, NoSuchModuleError)):
        return f"not a usable database URL: {e}", CANNOT_RUN, False
    if isinstance(e, ImportError) and (e.name or "").startswith("psycopg"):
        return ("PostgreSQL needs the driver: pip install 'klarna-gateway[postgres]'",
                CANNOT_RUN, False)
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}", CANNOT_RUN, False
    return f"unexpected error: {type(e).__name__}: {e}", 1, True


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every error ends as one line, never a traceback
        message, code, unexpected = describe(e)
        if debug:
            traceback.print_exc()
        elif unexpected:
            message += f" (run `{PROG} --debug …` for the traceback)"
        print(f"{PROG}: {one_line(message)}", file=sys.stderr)
        return code


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
