"""Where ``serve`` logs: text (default) or JSON lines, to stderr or a file reopened on SIGHUP.

JSON lines come from ``twisted.logger``'s own JSON observer, so every key an event carries
is a field: the access line of each legacy call carries ``journal_id``, ``eid``,
``method``, ``rno``, ``invno``, ``correlation_id``, ``outcome`` and ``duration_ms``. No
event carries a secret, a digest or call parameters (the edge logs none of them).
``SIGHUP`` reopens the file, as ``logrotate`` expects.

Under ``--log-format json`` every line the process writes is JSON, on stdout and stderr
alike: what the text format prints for a person (the start-up banner, a start-up error)
is an event then (:func:`event_line`), so a log shipper reading both streams never meets
a line it cannot parse.
"""
from __future__ import annotations

import re
import signal
import sys
import threading
import time
from typing import IO, Any, TextIO

from twisted.logger import (
    FileLogObserver, FilteringLogObserver, ILogObserver, LogLevel, LogLevelFilterPredicate,
    PredicateResult, eventAsJSON, formatEvent, formatEventAsClassicLogText, formatTime,
    globalLogBeginner, jsonFileLogObserver,
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


#: Twisted's own lines about ports and connection factories ("GuardedSite starting on
#: 8080", "(TCP Port 8080 Closed)", "Starting factory <… object at 0x…>", "Main loop
#: terminated."): the gateway prints what listens where itself, so they are kept for
#: ``--verbose`` only.
_CHATTER = re.compile(r"^(\w+ starting on \S+|\(\w+ Port \S+ Closed\)|Main loop terminated\."
                      r"|(Starting|Stopping) factory .*)$", re.DOTALL)


def quiet_chatter(event: dict[str, Any]) -> PredicateResult:
    """Drop Twisted's port chatter (see :data:`_CHATTER`). The gateway's own events (the
    access line of every call among them) are never chatter: they are not formatted here."""
    if str(event.get("log_namespace", "")).startswith("gateway."):
        return PredicateResult.maybe
    if event.get("log_level", LogLevel.info) <= LogLevel.info:
        text = formatEvent(event) if event.get("log_format") else " ".join(
            str(m) for m in event.get("message", ()))
        if _CHATTER.match(text.strip()):
            return PredicateResult.no
    return PredicateResult.maybe


class _SecondsFormatter:
    """Twisted's text timestamp (``2026-12-07T14:25:48+0000``), worked out once a second:
    the local time zone is looked up for every event otherwise (every call logs a line)."""

    def __init__(self) -> None:
        self._second: int | None = None
        self._text = ""

    def __call__(self, when: float | None) -> str:
        if when is None:
            return formatTime(when)
        second = int(when)
        if second != self._second:
            self._second, self._text = second, formatTime(second)
        return self._text


def observer(fmt: str, out: IO[str] | ReopenableFile, level: LogLevel) -> ILogObserver:
    """A level-filtered text or JSON-lines observer writing to ``out`` (Twisted's port
    chatter left out unless ``level`` is debug)."""
    if fmt == "json":
        inner = jsonFileLogObserver(out, recordSeparator="")  # type: ignore[arg-type]
    else:
        stamp = _SecondsFormatter()
        inner = FileLogObserver(out, lambda event: formatEventAsClassicLogText(  # type: ignore[arg-type]
            event, formatTime=stamp))
    predicates: list[Any] = [LogLevelFilterPredicate(defaultLogLevel=level)]
    if level > LogLevel.debug:
        predicates.insert(0, quiet_chatter)
    return FilteringLogObserver(inner, predicates)


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


def event_line(log_format: str, *, level: LogLevel = LogLevel.info,
               namespace: str = "gateway.cli", **fields: Any) -> str:
    """One event as the JSON observer writes it (same keys: ``log_format``, ``log_level``,
    ``log_namespace``, ``log_time`` and the event's own fields), for a line written outside
    the logging system: a start-up error before logging began, or on stderr while the log
    goes to a file."""
    event = {"log_format": log_format, "log_level": level, "log_namespace": namespace,
             "log_source": None, "log_time": time.time(), **fields}
    return eventAsJSON(event)


def json_requested(argv: list[str]) -> bool:
    """Whether a command line asks for JSON logs (read before, or without, parsing it: a
    usage error is written in the format the command asked for)."""
    return "--log-format=json" in argv or any(
        a == "--log-format" and b == "json" for a, b in zip(argv, argv[1:]))
