"""What every command shares: the configuration and the parts from the composition root.

One-shot commands run under ``task.react`` with the parts :func:`gateway.app.build` makes
(the same store, REST client and engine ``serve`` uses), and always close them.
"""
from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.app import Components, SchemaMode, build
from gateway.config import Config, default_sandbox_config_path, load_config
from gateway.errors import ConfigError


def config_from(path: str | None, *, sandbox: bool = False) -> Config:
    if path is None:
        if not sandbox:
            raise ConfigError("no configuration file given (use --config FILE, or --sandbox "
                              "for the demo merchants)", "--config")
        path = str(default_sandbox_config_path())
    return load_config(path)


def with_parts(args: argparse.Namespace,
               fn: Callable[[Components], Awaitable[int]]) -> int:
    """Run ``await fn(parts)`` with the composition root's parts under ``task.react``."""
    from twisted.internet import task

    config = config_from(args.config, sandbox=args.config is None)
    result = {"code": 0}

    async def main(reactor: Any) -> None:
        parts = await build(config, args.db, reactor, schema_mode=SchemaMode.CHECK)
        try:
            result["code"] = await fn(parts)
        finally:
            await parts.close()

    try:
        task.react(main)
    except SystemExit as e:
        if e.code not in (0, None):
            return int(e.code) if isinstance(e.code, int) else 1
    return result["code"]
