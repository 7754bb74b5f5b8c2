"""Recording files: one JSON object per line, digests masked, rotated by size.

Format (``format`` 1). Every file starts with a header line, then one line per exchange::

    {"kind": "recording", "format": 1, "source": "serve"|"proxy", "started_at": "…Z",
     "file": 1, "upstream": null}
    {"kind": "exchange", "seq": 1, "source": "serve", "started": 1767268800.123,
     "started_at": "2026-01-01T12:00:00.123Z", "duration_ms": 12.5, "path": "/",
     "http_status": 200, "method": "activate", "eid": 1234, "outcome": "ok",
     "fault_code": null, "client_gone": false,
     "context": {"journal_id": 7, "rno": "1000000001", "invno": "9000000001", …},
     "digest": {"at": 3, "hash": "sha512", "masked": 1},
     "body_encoding": "latin-1", "request": "<?xml …", "reply": "<?xml …"}

``request``/``reply`` are the bytes decoded as Latin-1 (every byte is one character, so it
is lossless whatever the document's own encoding; ``body_bytes`` turns them back). Files are
``recording-<start>-<n>.jsonl`` (``<start>``: the recorder's UTC start, ``YYYYmmddTHHMMSSZ``;
``<n>`` from 1); a file is closed and the next opened before a line would take it past
``max_bytes``. Files are created 0600 (a directory the recorder creates: 0700): they hold
whole requests, personal data included.

Why a writer thread: masking parses the body and the disk may be slow; the reactor only puts
the exchange on a queue. ``close()`` writes everything queued before it returns, so a clean
shutdown loses nothing. Should the disk fall far behind (``max_queue_bytes`` queued), further
exchanges are dropped and counted rather than let memory grow without bound.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from twisted.internet import threads
from twisted.logger import Logger

from gateway import files
from gateway.edge.resource import Exchange
from gateway.errors import GatewayError
from gateway.replay.masking import Masked, mask_request
from gateway.wire.parse import parse_method_response

FORMAT: Final = 1
DEFAULT_MAX_BYTES: Final = 64 << 20
DEFAULT_MAX_QUEUE_BYTES: Final = 256 << 20
FILE_GLOB: Final = "recording-*.jsonl"
_STOP: Final = object()

log = Logger()


def iso(ts: float) -> str:
    text = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def body_text(body: bytes | None) -> str | None:
    return None if body is None else body.decode("latin-1")


def body_bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode("latin-1")


def exchange_record(exchange: Exchange, seq: int, source: str) -> dict[str, Any]:
    """The JSON line for one exchange, its digest masked (the only place that decides): in
    the request, and wherever the reply or the method name repeat a value masked there.

    A proxied exchange (``source`` ``proxy``) knows only bytes: its method and eid are read
    from the request, its outcome from the reply (``http-<status>`` for a non-200 answer,
    ``unreadable`` for a 200 that is no ``methodResponse``)."""
    masked = mask_request(exchange.request)
    context = {k: v for k, v in exchange.context.items()
               if isinstance(v, (str, int, float, bool)) or v is None}
    outcome, fault_code = exchange.outcome, exchange.fault_code
    if source == "proxy":
        outcome, fault_code = reply_outcome(exchange.reply, exchange.http_status)
    return {
        "kind": "exchange", "seq": seq, "source": source, "started": exchange.started,
        "started_at": iso(exchange.started), "duration_ms": round(exchange.duration * 1000, 3),
        "path": exchange.path, "http_status": exchange.http_status,
        "method": _scrubbed(exchange.method, masked) or masked.method,
        "eid": exchange.eid if exchange.eid is not None else masked.eid,
        "outcome": outcome, "fault_code": fault_code,
        "client_gone": exchange.client_gone, "context": context,
        "digest": {"at": masked.digest_at, "hash": masked.hash_name, "masked": masked.masked},
        "body_encoding": "latin-1",
        "request": None if exchange.request is None else body_text(masked.body),
        "reply": body_text(masked.scrub(exchange.reply)),
    }


def _scrubbed(method: str | None, masked: Masked) -> str | None:
    """The method name with any value masked in the body masked in it too."""
    if method is None:
        return None
    return masked.scrub(method.encode("utf-8", "surrogateescape")).decode(
        "utf-8", "surrogateescape")


def reply_outcome(reply: bytes, http_status: int = 200) -> tuple[str, int | None]:
    """``("ok", None)``, ``("<code>", code)`` for a fault, else an ``http-``/``unreadable``
    outcome with no code."""
    if http_status != 200:
        return f"http-{http_status}", None
    try:
        response = parse_method_response(reply)
    except GatewayError:
        return "unreadable", None
    return ("ok", None) if response.ok else (str(response.fault_code), response.fault_code)


@dataclass
class _Queued:
    item: Any
    size: int


class RecordingWriter:
    """Writes exchanges to ``directory`` on a thread of its own; see the module docstring.

    ``submit`` may be called from the reactor thread and returns at once. Records can also
    be pre-built dicts (the proxy builds its own; ``record_of`` turns a submitted item into
    a record on the writer thread).
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES,
                 source: str = "serve", upstream: str | None = None,
                 max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
                 wall_clock: Any = time.time) -> None:
        if max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.source = source
        self.upstream = upstream
        self.max_queue_bytes = max_queue_bytes
        self.start_time = wall_clock()
        self.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.start_time))
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self.files: list[Path] = []
        self._seq = 0
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._file: Any = None
        self._file_size = 0
        self._n = 0
        self._thread = threading.Thread(target=self._run, name="klarna-gateway-recorder",
                                        daemon=True)
        self._closed = False

    def start(self) -> None:
        files.private_dir(self.directory)
        self._thread.start()

    def submit(self, item: Exchange | dict[str, Any]) -> None:
        """Queue one exchange (an :class:`Exchange` or a ready record); never blocks."""
        size = _size_of(item)
        with self._lock:
            if self._closed:
                self.dropped += 1
                return
            if self._queued_bytes + size > self.max_queue_bytes:
                self.dropped += 1
                log.warn("recorder far behind: exchange dropped ({n} so far)", n=self.dropped)
                return
            self._queued_bytes += size
            self._seq += 1
            seq = self._seq
        self._queue.put(_Queued((seq, item), size))

    __call__ = submit

    def close_sync(self, timeout: float | None = None) -> None:
        """Write everything queued, then close the file (blocks; not on the reactor)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    async def close(self, reactor: Any = None) -> None:
        """Write everything queued and close, waiting on a thread (reactor stays free)."""
        if reactor is None:
            from twisted.internet import reactor as global_reactor
            reactor = global_reactor
        await threads.deferToThreadPool(reactor, reactor.getThreadPool(), self.close_sync)

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            queued = self._queue.get()
            if queued is _STOP:
                break
            seq, item = queued.item
            try:
                record = item if isinstance(item, dict) else exchange_record(item, seq,
                                                                             self.source)
                record["seq"] = seq
                self._write(json.dumps(record, ensure_ascii=False) + "\n")
                self.written += 1
            except Exception:  # noqa: BLE001 - a bad exchange or a full disk: count, go on
                self.failed += 1
                log.failure("recorder could not write an exchange")
            finally:
                with self._lock:
                    self._queued_bytes -= queued.size
            if self._queue.empty() and self._file is not None:
                self._flush()
        self._close_file()

    def _write(self, line: str) -> None:
        data = line.encode("utf-8")
        if self._file is None or (self._file_size > 0
                                  and self._file_size + len(data) > self.max_bytes):
            self._next_file()
        self._file.write(data)
        self._file_size += len(data)

    def _next_file(self) -> None:
        self._close_file()
        while True:
            self._n += 1
            path = self.directory / f"recording-{self.stamp}-{self._n}.jsonl"
            try:
                self._file = files.open_private(path, "xb")  # closed by _close_file
                break
            except FileExistsError:
                continue  # another recorder started in the same second: next number
        self.files.append(path)
        header = {"kind": "recording", "format": FORMAT, "source": self.source,
                  "started_at": iso(self.start_time), "file": self._n,
                  "upstream": self.upstream}
        data = (json.dumps(header) + "\n").encode("utf-8")
        self._file.write(data)
        self._file_size = len(data)

    def _flush(self) -> None:
        try:
            self._file.flush()
        except OSError:
            self.failed += 1
            log.failure("recorder could not flush")

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                log.failure("recorder could not flush on close")
            self._file.close()
            self._file = None


def _size_of(item: Exchange | dict[str, Any]) -> int:
    if isinstance(item, dict):
        return len(item.get("request") or "") + len(item.get("reply") or "") + 512
    return len(item.request or b"") + len(item.reply) + 512


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """One recorded exchange as the replay reads it (bodies back to bytes)."""

    index: int
    seq: int
    started: float
    duration_ms: float
    method: str | None
    eid: int | None
    outcome: str
    http_status: int
    path: str
    request: bytes | None
    reply: bytes
    context: dict[str, Any] = field(default_factory=dict)
    digest_at: int | None = None
    hash_name: str | None = None
    where: str = ""


class RecordingError(ValueError):
    """A recording file is not one this tool wrote."""


def recording_files(path: str | os.PathLike[str]) -> list[Path]:
    """A file as given, or the ``recording-*.jsonl`` files of a directory in order."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob(FILE_GLOB), key=_file_order)
        if not files:
            raise RecordingError(f"{p}: no {FILE_GLOB} files")
        return files
    if not p.exists():
        raise RecordingError(f"{p}: no such file or directory")
    return [p]


def _file_order(path: Path) -> tuple[str, int, str]:
    stem = path.stem  # recording-<start>-<n>
    head, _, n = stem.rpartition("-")
    return (head, int(n) if n.isdigit() else 0, stem)


def read_recording(path: str | os.PathLike[str]) -> list[Recorded]:
    """Every exchange of a recording, in the order the calls started."""
    found: list[Recorded] = []
    for file in recording_files(path):
        for number, record in _lines(file):
            if record.get("kind") != "exchange":
                continue
            found.append(_recorded(record, len(found), f"{file.name}:{number}"))
    found.sort(key=lambda r: (r.started, r.index))
    return found


def _lines(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise RecordingError(f"{file.name}:{number}: not JSON") from None
            if not isinstance(record, dict):
                raise RecordingError(f"{file.name}:{number}: not a JSON object")
            if record.get("kind") == "recording" and record.get("format") != FORMAT:
                raise RecordingError(f"{file.name}: recording format "
                                     f"{record.get('format')!r}, this tool reads {FORMAT}")
            yield number, record


def _recorded(record: dict[str, Any], index: int, where: str) -> Recorded:
    digest = record.get("digest") or {}
    eid = record.get("eid")
    return Recorded(
        index=index, seq=int(record.get("seq") or 0), started=float(record.get("started") or 0),
        duration_ms=float(record.get("duration_ms") or 0), method=record.get("method"),
        eid=eid if isinstance(eid, int) else None, outcome=str(record.get("outcome")),
        http_status=int(record.get("http_status") or 0), path=str(record.get("path") or "/"),
        request=body_bytes(record.get("request")), reply=body_bytes(record.get("reply")) or b"",
        context=dict(record.get("context") or {}), digest_at=digest.get("at"),
        hash_name=digest.get("hash"), where=where)
