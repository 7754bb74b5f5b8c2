"""Progress bars for long jobs (``reconcile``, ``reservations import``), on a terminal only.

The tools report ``(stage, done, total)`` through a plain callback and know nothing of
terminals; this module turns that into one ``tqdm`` bar per stage on stderr when stderr is a
TTY, and into nothing otherwise (cron, pipes, CI logs stay clean).
"""
from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any, TextIO


class Progress:
    """``with Progress() as report: await job(progress=report.callback)``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = _is_tty(self.stream)
        self._bars: dict[str, Any] = {}

    @property
    def callback(self) -> Any:
        """The tools' ``progress`` argument: None when quiet (they then skip the calls)."""
        return self.update if self.enabled else None

    def update(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            columns, lines = _size(self.stream)
            bar = self._bars[stage] = tqdm(total=total, desc=stage, file=self.stream,
                                           leave=True, ncols=columns, nrows=lines)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for bar in self._bars.values():
            bar.close()


def _size(stream: TextIO) -> tuple[int, int]:
    """The terminal's (columns, lines); 80×24 for what it does not report (a pseudo-terminal
    nobody sized says 0×0, and tqdm hides every bar below line 0)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return 80, 24
    return size.columns or 80, size.lines or 24


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
