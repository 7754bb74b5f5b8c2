"""What every command shares: the configuration, the database URL, help formatting, errors,
and the parts from the composition root.

Fail closed: a command that acts for merchants never falls back to the demo merchants.
The configuration is ``--config FILE``, else ``$KLARNA_GATEWAY_CONFIG``; only
``serve --sandbox`` (and the ``sandbox`` command, in ``cli.serve``) may run without one.
The database URL is ``--db URL`` or ``--db-file PATH`` (a file holding the URL, so no
password sits in the process list), else ``$KLARNA_GATEWAY_DB``, else
``sqlite:///gateway.db``.

One-shot commands run under ``task.react`` with the parts :func:`gateway.app.build` makes
(the same store, REST client and engine ``serve`` uses), and always close them. Read-only
commands open the database read-only and never create a missing SQLite file.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.config import DEFAULT_DB_URL, Config, default_sandbox_config_path, load_config
from gateway.tools import inputs
from gateway.tools.inputs import (
    DATABASE_HINT, Exit, InputError, Unreachable, database_unreachable,
)

if TYPE_CHECKING:
    from gateway.app import Components

CONFIG_ENV = "KLARNA_GATEWAY_CONFIG"
DB_ENV = "KLARNA_GATEWAY_DB"
PROG = "klarna-gateway"
#: Exit status of a command that could not do its job at all (configuration, database,
#: file, usage); 1 is kept for a command's own finding (discrepancies, refused rows).
CANNOT_RUN = int(Exit.UNUSABLE)


class CliError(Exception):
    """A command cannot run: ``main`` prints the message as one line, exits ``code``."""

    def __init__(self, message: str, code: int = CANNOT_RUN) -> None:
        super().__init__(message)
        self.code = code


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default (``none`` for an unset one), unless the
    help text already names it (``default``, ``required``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or "default" in text or "required" in text
                or action.required or action.default is argparse.SUPPRESS
                or (not action.option_strings
                    and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        default = "none" if action.default is None else "%(default)s"
        return f"{text} (default: {default})".strip()


class Parser(argparse.ArgumentParser):
    """The console script's parsers: defaults in the help, a global ``--debug`` accepted on
    every (sub)command, and a usage error that is one line, prefixed ``klarna-gateway:``,
    pointing at the help of the (sub)command that was used."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand that was not given --debug leaves the top level's value.
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="on an unexpected error, print the traceback (default: off)")
        # The deepest parser used wins (a subparser's defaults are applied last): unknown
        # arguments are reported against that subcommand's help.
        self.set_defaults(_parser=self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and getattr(parsed, "_parser", self) is not self:
            parsed._parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> Any:
        command = self.prog.removeprefix(PROG).strip()
        where = f"{command}: " if command else ""
        self.exit(CANNOT_RUN, f"{PROG}: {where}{message} (see {self.prog} --help)\n")


def describe(e: BaseException) -> tuple[str, int, bool]:
    """(one line, exit status, unexpected?) for an exception that ended a command."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
    from twisted.internet.error import CannotListenError

    from gateway.errors import ConfigError
    from gateway.store.schema import SchemaError

    if isinstance(e, CliError):
        return str(e), e.code, False
    if isinstance(e, (InputError, Unreachable)):
        return str(e), int(e.exit_code), False
    if isinstance(e, (ConfigError, SchemaError)):
        return str(e), Exit.UNUSABLE, False
    if isinstance(e, CannotListenError):
        return listen_error(e), Exit.UNUSABLE, False
    if isinstance(e, DBAPIError):
        if database_unreachable(e):
            return (f"database error: {e.orig or type(e).__name__}: is the database running "
                    "and is this its address?", Exit.UNREACHABLE, False)
        return f"database error: {e.orig or type(e).__name__}", Exit.UNUSABLE, False
    if isinstance(e, (ArgumentError, NoSuchModuleError)):
        return f"not a usable database URL: {e}: {DATABASE_HINT}", Exit.UNUSABLE, False
    if isinstance(e, ImportError) and (e.name or "").startswith("psycopg"):
        return ("PostgreSQL needs the driver: pip install 'klarna-gateway[postgres]'",
                Exit.UNUSABLE, False)
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}", Exit.UNUSABLE, False
    return f"unexpected error: {type(e).__name__}: {e}", Exit.FINDING, True


def listen_error(e: BaseException) -> str:
    """``CannotListenError`` in one line, with the fix."""
    interface, port = getattr(e, "interface", ""), getattr(e, "port", "?")
    where = f"{interface}:{port}" if interface else f"port {port} (all interfaces)"
    reason = getattr(getattr(e, "socketError", None), "strerror", None) or str(e)
    flag = getattr(e, "flag", "--listen")
    return (f"cannot listen on {where}: {reason}: another process holds it (stop it) or "
            f"choose another {flag}")


def command_group(sub: Any, name: str, help: str, description: str) -> Any:
    """A command of subcommands (``db``, ``config``, ``reservations``): its subparsers, one
    of which must be named (``COMMAND`` in the usage)."""
    return sub.add_parser(name, help=help, description=description).add_subparsers(
        dest=f"{name}_command", required=True, metavar="COMMAND")


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def error_line(message: str, code: int, *, as_json: bool = False, **fields: Any) -> None:
    """A command's one error line on stderr: ``klarna-gateway: …``, or, when the command
    asked for ``--log-format json``, the same as a critical event carrying its exit status
    (and ``fields``: a ``--debug`` traceback), so that every line it writes is JSON."""
    if not as_json:
        print(f"{PROG}: {one_line(message)}", file=sys.stderr, flush=True)
        return
    from twisted.logger import LogLevel

    from gateway.logs import event_line

    print(event_line("{prog}: {message}", level=LogLevel.critical, prog=PROG,
                     message=one_line(message), exit_status=int(code), **fields),
          file=sys.stderr, flush=True)


def check_endpoint(text: str, flag: str) -> str:
    """A Twisted endpoint string that parses (``tcp:8080``, ``unix:/run/x.sock``…); whether
    it can be listened on is known only when listening (a busy port: exit 2 too)."""
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    try:
        serverFromString(reactor, text)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise inputs.InputError(f"{flag}: not a listening endpoint: {text!r} ({e}): e.g. "
                                "tcp:8080, tcp:8080:interface=127.0.0.1 or "
                                "unix:/run/klarna-gateway.sock") from None
    return text


# -- configuration -------------------------------------------------------------------------


def add_config_flag(parser: argparse.ArgumentParser, extra: str = "",
                    required: bool = True) -> None:
    """``--config FILE``, else ``$KLARNA_GATEWAY_CONFIG``: the one way every command names
    its configuration."""
    need = f"required{extra}" if required else f"optional{extra}"
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"TOML configuration file (default: ${CONFIG_ENV}; {need})")


def config_path(args: argparse.Namespace) -> str | None:
    """``--config``, else ``$KLARNA_GATEWAY_CONFIG``, else None."""
    return getattr(args, "config", None) or os.environ.get(CONFIG_ENV) or None


def config_from(path: str | None, *, sandbox: bool = False) -> Config:
    """``path``, else ``$KLARNA_GATEWAY_CONFIG``, else (``sandbox`` only) the demo
    merchants; anything else is refused, so a tool never checks the wrong merchants."""
    path = path or os.environ.get(CONFIG_ENV) or None
    if path is None:
        if not sandbox:
            raise CliError(f"no configuration: give --config FILE or set {CONFIG_ENV} "
                           "(only `serve --sandbox` runs the demo merchants)")
        path = str(default_sandbox_config_path())
    return load_config(path)


# -- database URL --------------------------------------------------------------------------


def add_db_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--db", metavar="URL", default=None,
                       help="database URL, sqlite:///PATH or postgresql://USER@HOST/DB; "
                            "argv is visible to other users, so give a password with "
                            f"--db-file or ${DB_ENV} (default: ${DB_ENV}, else "
                            f"{DEFAULT_DB_URL})")
    group.add_argument("--db-file", metavar="PATH", default=None,
                       help="a file whose first line is the database URL (default: none)")


def url_from_file(path: str, flag: str = "--db-file") -> str:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
    except OSError as e:
        raise CliError(f"{flag} {path}: cannot read: {e.strerror}") from None
    if not lines:
        raise CliError(f"{flag} {path}: the file holds no database URL: write the URL "
                       "(e.g. sqlite:///gateway.db) on its first line")
    return lines[0]


def db_url(args: argparse.Namespace) -> str:
    """``--db``, ``--db-file``, ``$KLARNA_GATEWAY_DB``, ``sqlite:///gateway.db``: the first
    given wins (the two flags exclude each other). The URL is checked at once (SQLite or
    PostgreSQL, parsable), naming where it came from."""
    if getattr(args, "db", None):
        return inputs.database_url(str(args.db), "--db")
    if getattr(args, "db_file", None):
        return inputs.database_url(url_from_file(args.db_file),
                                   f"--db-file {args.db_file}")
    if os.environ.get(DB_ENV):
        return inputs.database_url(os.environ[DB_ENV], f"${DB_ENV}")
    return DEFAULT_DB_URL


def positive(text: str) -> int:
    """``--concurrency N``: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def eid_flag(text: str) -> int:
    """``--eid N``: a positive whole number (whether it is configured is checked once the
    configuration is read, by :func:`gateway.tools.inputs.merchant`)."""
    try:
        return inputs.parse_eid(text, "eid")
    except inputs.InputError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("eid: ")) from None


def seconds(text: str) -> float:
    """``--timeout SECONDS``: a positive number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError(f"must be above 0 and below 86400: {text!r}")
    return value


def require_sqlite_file(url: str) -> None:
    """A SQLite store must exist before any command but ``db upgrade``/``serve`` uses it:
    connecting would create an empty file, which no schema check can pass."""
    from gateway.store.database import normalise_url, sqlite_path

    url = normalise_url(url)
    if not url.startswith("sqlite"):
        return
    path = sqlite_path(url)
    if path is not None and not os.path.isfile(path):
        raise CliError(f"no database at {path} (nothing created; make one with "
                       "`klarna-gateway db upgrade --db URL`)")


def open_read_only(url: str, clock: Any) -> Any:
    """The store's database opened read-only and inline (``journal``, ``expiring``): an
    existing file only, nothing created."""
    from gateway.store.database import Database

    try:
        return Database(url, clock, threaded=False, read_only=True)
    except ValueError as e:
        raise inputs.InputError(f"cannot open the database read-only: {e}") from None


# -- running a one-shot command ------------------------------------------------------------


def with_parts(args: argparse.Namespace, fn: Callable[[Components], Awaitable[int]], *,
               read_only: bool = False, check: Callable[[Config], Any] | None = None) -> int:
    """Run ``await fn(parts)`` with the composition root's parts under ``task.react``.

    ``check(config)`` runs first, before the database is opened: the input contract
    (:mod:`gateway.tools.inputs`) refuses bad input before any work starts.

    Errors raised while building or running come back out of ``task.react`` (which would
    otherwise log them with a traceback and exit 1) and are raised here for ``main``.
    """
    from gateway.app import build
    from gateway.store.schema import SchemaMode

    config = config_from(args.config)
    if check is not None:
        check(config)
    url = db_url(args)
    require_sqlite_file(url)

    async def work(reactor: Any) -> int:
        parts = await build(config, url, reactor, schema_mode=SchemaMode.CHECK,
                            read_only=read_only)
        try:
            return await fn(parts)
        finally:
            await parts.close()
    return react(work)


def react(work: Callable[[Any], Awaitable[int]]) -> int:
    """``await work(reactor)`` under ``task.react``; its exit status, or its error raised
    here as itself (``task.react`` would log it with a traceback and exit 1) for ``main``
    to print as one line. A reactor stopped first (SIGINT, SIGTERM) is an interruption."""
    from twisted.internet import task
    from twisted.python.failure import Failure

    result: dict[str, Any] = {}

    async def main(reactor: Any) -> None:
        try:
            result["code"] = await work(reactor)
        except BaseException:
            result["error"] = Failure()

    try:
        task.react(main)
    except SystemExit:
        pass
    if "error" in result:
        result["error"].raiseException()
    if "code" not in result:
        raise KeyboardInterrupt
    return int(result["code"])
