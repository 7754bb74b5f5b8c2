"""The recording flags ``serve`` and ``record`` share (``--record DIR``,
``--record-max-bytes N``); a module of their own so neither command imports the other."""
from __future__ import annotations

import argparse
import re

DEFAULT_RECORD_MAX_BYTES = 64 << 20
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)


def byte_size(text: str) -> int:
    """``67108864``, ``64MiB``, ``64M``, ``512KiB``, ``1G`` → bytes (binary units)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 64MiB)")
    unit = (m.group(2) or "B").upper()[:1]
    size = int(m.group(1)) * {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit]
    if size < 1024:
        raise argparse.ArgumentTypeError("must be at least 1KiB")
    return size


def add_record_flags(s: argparse.ArgumentParser, *, out_flag: str | None = "--record"
                     ) -> None:
    """``--record DIR`` (serve) and ``--record-max-bytes N`` (serve and record)."""
    if out_flag is not None:
        s.add_argument(out_flag, metavar="DIR", default=None,
                       help="write every legacy exchange (digests masked) as JSONL files "
                            "recording-<start>-<n>.jsonl in DIR")
    s.add_argument("--record-max-bytes", type=byte_size, default=DEFAULT_RECORD_MAX_BYTES,
                   metavar="N", help="rotate recording files at this size (default 64MiB)")
