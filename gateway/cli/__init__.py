"""``klarna-gateway``: the console script.

Subcommands: ``serve``, ``sandbox`` (``cli.serve``); ``db upgrade``, ``config check``,
``reservations add|show|import`` (``cli.store``); ``reconcile``, ``explain``
(``cli.tools``); ``journal`` (``cli.journal``, read-only search); ``expiring``
(``cli.expiring``, authorizations that lapse soon). Long-running commands run the reactor
themselves; one-shot commands use ``task.react`` with the composition root's parts. Only
this package imports the global reactor.
"""
from __future__ import annotations

import argparse
import sys

from gateway.cli import expiring, journal, serve, store, tools
from gateway.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="klarna-gateway",
                                description="Klarna's legacy XML-RPC API on the Order "
                                            "Management REST API")
    sub = p.add_subparsers(dest="command", required=True)
    serve.register(sub)
    store.register(sub)
    tools.register(sub)
    journal.register(sub)
    expiring.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 1
