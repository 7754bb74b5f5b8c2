"""Files that hold personal data are private from the moment they exist.

The SQLite database (names, addresses and amounts in the journal), recordings (whole
requests), replay reports and the log file are created mode 0600 (directories this code
creates for them: 0700), whatever the process's umask: each is opened with ``O_CREAT`` and
that mode, so there is no moment when another user could open it. SQLite creates its
``-wal`` and ``-shm`` files with the database file's own mode, so they follow. A file that
already exists keeps its mode (the operator's choice); ``serve`` warns when the database is
readable by others (:func:`readable_by_others`).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

__all__ = ["PRIVATE_DIR", "PRIVATE_FILE", "create_private", "open_private",
           "private_dir", "readable_by_others", "sqlite_file", "write_private"]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

_FLAGS = {"x": os.O_CREAT | os.O_EXCL, "w": os.O_CREAT | os.O_TRUNC,
          "a": os.O_CREAT | os.O_APPEND}


def open_private(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing (``x``, ``w`` or ``a``, text or ``b``), the file
    created 0600 if it does not exist."""
    flags = _FLAGS[mode[0]] | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """``Path(path).write_text(text)`` (UTF-8), the file created 0600."""
    with open_private(path, "w", encoding="utf-8") as f:
        f.write(text)


def create_private(path: str | os.PathLike[str]) -> bool:
    """Create an empty file 0600 if there is none; whether it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def private_dir(path: str | os.PathLike[str]) -> None:
    """``mkdir -p``, the last directory created 0700 (an existing one is left as it is)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        p.mkdir(mode=PRIVATE_DIR)
    except FileExistsError:
        pass


def sqlite_file(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` URL (``None`` for another database, an in-memory
    one or a ``file:`` URI)."""
    from gateway.store.database import normalise_url, sqlite_path

    url = normalise_url(url)
    path = sqlite_path(url) if url.startswith("sqlite") else None
    return None if path is None or path.startswith("file:") else path


def readable_by_others(path: str | os.PathLike[str]) -> bool:
    """Whether users other than the owner (and its group) may read ``path``."""
    try:
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False
