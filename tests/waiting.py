"""Waiting for something another process (or the kernel) does: poll it, with a deadline.

A test that can own the clock moves a ``task.Clock`` instead (``tests/engine/world.py``).
What is left are waits on things no clock of ours drives: a child process writing a file or
answering on a port, a socket close reaching the reactor, a database server restarting. A
fixed sleep there is either too long (every run pays it) or too short (a loaded CI machine
fails); polling a condition returns as soon as it holds and fails with a message when it
never does.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import task

#: How often a condition is looked at: short against the waits it replaces (0.1-0.7 s).
EVERY = 0.01


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 10.0,
               every: float = EVERY) -> Any:
    """Block until ``predicate()`` is truthy and return it; fail naming ``what`` after
    ``timeout`` seconds. For code running off the reactor (subprocesses, sockets)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)


async def eventually(predicate: Callable[[], Any | Awaitable[Any]], what: str,
                     timeout: float = 10.0, every: float = EVERY) -> Any:
    """The reactor's ``wait_until``: let the reactor run between looks (so it can read a
    close, answer a request, fire a timer), never blocking it. ``predicate`` may be async."""
    from twisted.internet import reactor

    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if reactor.seconds() >= deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"{what}: not within {timeout} s")
        await task.deferLater(reactor, every, lambda: None)  # type: ignore[arg-type]


async def settle(turns: int = 3) -> None:
    """Let the reactor run ``turns`` iterations (an event already in the kernel's buffers,
    such as a peer's close, is read within one or two); no wall-clock wait."""
    from twisted.internet import reactor

    for _ in range(turns):
        await task.deferLater(reactor, 0, lambda: None)  # type: ignore[arg-type]
