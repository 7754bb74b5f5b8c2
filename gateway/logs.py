"""Where ``serve`` logs: text (default) or JSON lines, to stderr or a file reopened on SIGHUP.

JSON lines come from ``twisted.logger``'s own JSON observer, so every key an event carries
is a field: the access line of each legacy call carries ``journal_id``, ``eid``,
``method``, ``rno``, ``invno``, ``correlation_id``, ``outcome`` and ``duration_ms``. No
event carries a secret, a digest or call parameters (the edge logs none of them).
``SIGHUP`` reopens the file, as ``logrotate`` expects.
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import IO, Any, TextIO

from twisted.logger import (
    FilteringLogObserver, ILogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner,
    jsonFileLogObserver, textFileLogObserver,
)

from gateway.files import open_private

FORMATS = ("text", "json")


class ReopenableFile:
    """A text file (append, line-buffered) that :meth:`reopen` swaps for a fresh handle."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO = self._open()

    def _open(self) -> TextIO:
        """Append, line-buffered; a new file is created 0600 (log lines name clients)."""
        return open_private(self.path, "a", encoding="utf-8", buffering=1)  # type: ignore[return-value]

    def write(self, text: str) -> int:
        with self._lock:
            return self._file.write(text)

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def reopen(self) -> None:
        with self._lock:
            old, self._file = self._file, self._open()
        old.close()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def observer(fmt: str, out: IO[str] | ReopenableFile, level: LogLevel) -> ILogObserver:
    """A level-filtered text or JSON-lines observer writing to ``out``."""
    if fmt == "json":
        inner = jsonFileLogObserver(out, recordSeparator="")  # type: ignore[arg-type]
    else:
        inner = textFileLogObserver(out)  # type: ignore[arg-type]
    return FilteringLogObserver(inner, [LogLevelFilterPredicate(defaultLogLevel=level)])


def start(fmt: str = "text", path: str | None = None, *, verbose: bool = False,
          reactor: Any = None) -> ReopenableFile | None:
    """Begin logging for ``serve``; returns the file when logging to one (SIGHUP reopens
    it, from the reactor thread)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    level = LogLevel.debug if verbose else LogLevel.info
    target: IO[str] | ReopenableFile = sys.stderr
    log_file = None
    if path:
        log_file = target = ReopenableFile(path)
        if reactor is not None and hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP,
                          lambda *_: reactor.callFromThread(log_file.reopen))  # type: ignore[union-attr]
    globalLogBeginner.beginLoggingTo([observer(fmt, target, level)], redirectStandardIO=False)
    return log_file
