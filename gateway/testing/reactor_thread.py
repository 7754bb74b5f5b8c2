"""A private Twisted reactor on a background thread: what the in-process fixtures of
:mod:`gateway.testing.pytest_plugin` run the sandbox and the gateway on.

Why not the suite's (global) reactor:

- a plain synchronous suite runs no reactor at all;
- under pytest-twisted the global reactor runs in a greenlet on the main thread, and every
  test function, ``def`` or ``async def``, runs inside that greenlet: while a test makes a
  blocking call (the official ``Klarna_API`` SDK is synchronous) that reactor cannot
  serve it, and ``pytest_twisted.blockon`` is refused there.

A reactor of our own, on its own thread, serves the gateway and the sandbox whatever the
suite's own reactor is doing, and never touches it (it does not even register itself as
Twisted's I/O thread). This works because the gateway takes its reactor as an argument
everywhere (only ``gateway.cli`` imports the global one).

One reactor per :class:`ReactorThread`; :meth:`stop` stops it, joins the thread and closes
the reactor's own descriptors (waker, poller), so a fixture leaves no thread and no file
descriptor behind.
"""
from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

T = TypeVar("T")

#: Seconds :meth:`ReactorThread.call` waits for a result before giving up.
CALL_TIMEOUT = 60.0


def new_reactor() -> Any:
    """A fresh reactor instance, not installed as ``twisted.internet.reactor``."""
    try:
        from twisted.internet.epollreactor import EPollReactor

        return EPollReactor()
    except ImportError:  # not Linux
        from twisted.internet.pollreactor import PollReactor

        return PollReactor()


class ReactorThread:
    """A reactor running on a daemon thread until :meth:`stop`.

    Daemon only as a last resort (a process that never reached ``stop`` still exits);
    every fixture stops and joins it.
    """

    def __init__(self, name: str = "klarna-gateway-reactor") -> None:
        self.reactor = new_reactor()
        # The suite's own reactor (pytest-twisted's) is Twisted's I/O thread; not this one.
        self.reactor._registerAsIOThread = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._running = threading.Event()
        self._released = False

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> ReactorThread:
        self.reactor.callWhenRunning(self._running.set)
        self._thread.start()
        if not self._running.wait(timeout):
            raise RuntimeError("the reactor thread did not start")
        return self

    def _run(self) -> None:
        try:
            self.reactor.run(installSignalHandlers=False)
        finally:
            self._release()

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = CALL_TIMEOUT,
             **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` on the reactor thread; a coroutine or Deferred it returns
        is waited for. Blocks the calling thread (never the reactor's own: that would
        deadlock, and is refused).

        Raises:
            whatever ``fn`` raised; TimeoutError after ``timeout`` seconds.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("call() from the reactor thread itself would deadlock")
        if not self.alive:
            raise RuntimeError("the reactor thread is not running")
        results: queue.Queue[Any] = queue.Queue(maxsize=1)

        def invoke() -> None:
            try:
                result = fn(*args, **kwargs)
                if inspect.iscoroutine(result):
                    result = defer.Deferred.fromCoroutine(result)
                d = result if isinstance(result, defer.Deferred) else defer.succeed(result)
            except BaseException:  # noqa: BLE001 - handed to the caller as a Failure
                d = defer.fail(Failure())
            d.addBoth(results.put)

        self.reactor.callFromThread(invoke)
        try:
            outcome = results.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{getattr(fn, '__qualname__', fn)} did not finish within "
                               f"{timeout:g} s") from None
        if isinstance(outcome, Failure):
            outcome.raiseException()
        return outcome

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the reactor (its shutdown closes every connection and its thread pool),
        join the thread, release the reactor's descriptors. Idempotent."""
        if self.alive:
            def stop_once() -> None:
                if self.reactor.running:
                    self.reactor.stop()
            self.reactor.callFromThread(stop_once)
            self._thread.join(timeout)
            if self.alive:
                raise RuntimeError("the reactor thread did not stop")
        self._release()

    def _release(self) -> None:
        """Close what a reactor instance holds beyond its run (Twisted's own reactor tests
        do the same): pending timers, the waker's pipe, the poller."""
        if self._released or self.alive and threading.current_thread() is not self._thread:
            return
        self._released = True
        reactor = self.reactor
        for call in reactor.getDelayedCalls():
            call.cancel()
        for reader in list(getattr(reactor, "_internalReaders", ())):
            reactor.removeReader(reader)
            reader.connectionLost(None)
        getattr(reactor, "_internalReaders", set()).clear()
        poller = getattr(reactor, "_poller", None)
        if poller is not None and hasattr(poller, "close"):
            poller.close()
