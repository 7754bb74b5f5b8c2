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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.config import DEFAULT_DB_URL, Config, default_sandbox_config_path, load_config

if TYPE_CHECKING:
    from gateway.app import Components

CONFIG_ENV = "KLARNA_GATEWAY_CONFIG"
DB_ENV = "KLARNA_GATEWAY_DB"
#: Exit status of a command that could not do its job at all (configuration, database,
#: file, usage); 1 is kept for a command's own finding (discrepancies, refused rows).
CANNOT_RUN = 2


class CliError(Exception):
    """A command cannot run: ``main`` prints the message as one line, exits ``code``."""

    def __init__(self, message: str, code: int = CANNOT_RUN) -> None:
        super().__init__(message)
        self.code = code


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default (``none`` for an unset one), unless the
    help text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or "default:" in text or "required:" in text
                or action.default is argparse.SUPPRESS
                or (not action.option_strings
                    and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))):
            return text
        default = "none" if action.default is None else "%(default)s"
        return f"{text} (default: {default})".strip()


class Parser(argparse.ArgumentParser):
    """The console script's parsers: defaults in the help, a global ``--debug`` accepted on
    every (sub)command, and a usage error that is one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand that was not given --debug leaves the top level's value.
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="on an unexpected error, print the traceback (default: off)")

    def error(self, message: str) -> Any:
        self.exit(CANNOT_RUN, f"{self.prog}: {message} (see {self.prog} --help)\n")


# -- configuration -------------------------------------------------------------------------


def add_config_flag(parser: argparse.ArgumentParser, extra: str = "") -> None:
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"TOML configuration file (default: ${CONFIG_ENV}; "
                             f"required{extra})")


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
                       help="a file whose first line is the database URL")


def url_from_file(path: str, flag: str = "--db-file") -> str:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
    except OSError as e:
        raise CliError(f"{flag} {path}: cannot read: {e.strerror}") from None
    if not lines:
        raise CliError(f"{flag} {path}: the file holds no database URL")
    return lines[0]


def db_url(args: argparse.Namespace) -> str:
    """``--db``, ``--db-file``, ``$KLARNA_GATEWAY_DB``, ``sqlite:///gateway.db``: the first
    given wins (the two flags exclude each other)."""
    if getattr(args, "db", None):
        return str(args.db)
    if getattr(args, "db_file", None):
        return url_from_file(args.db_file)
    return os.environ.get(DB_ENV) or DEFAULT_DB_URL


def positive(text: str) -> int:
    """``--concurrency N``: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


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


# -- running a one-shot command ------------------------------------------------------------


def with_parts(args: argparse.Namespace, fn: Callable[[Components], Awaitable[int]], *,
               read_only: bool = False) -> int:
    """Run ``await fn(parts)`` with the composition root's parts under ``task.react``.

    Errors raised while building or running come back out of ``task.react`` (which would
    otherwise log them with a traceback and exit 1) and are raised here for ``main``.
    """
    from twisted.internet import task
    from twisted.python.failure import Failure

    from gateway.app import SchemaMode, build

    config = config_from(args.config)
    url = db_url(args)
    require_sqlite_file(url)
    result: dict[str, Any] = {}

    async def main(reactor: Any) -> None:
        try:
            parts = await build(config, url, reactor, schema_mode=SchemaMode.CHECK,
                                read_only=read_only)
            try:
                result["code"] = await fn(parts)
            finally:
                await parts.close()
        except BaseException:
            result["error"] = Failure()

    try:
        task.react(main)
    except SystemExit:
        pass
    if "error" in result:
        result["error"].raiseException()
    if "code" not in result:  # the reactor stopped first: SIGINT or SIGTERM
        raise KeyboardInterrupt
    return int(result["code"])
