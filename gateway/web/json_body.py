"""JSON request bodies that cannot make a handler raise: nesting is bounded before parsing.

``json.loads`` recurses once per ``[`` or ``{``: a body of 100,000 ``[`` raises
``RecursionError`` (a 500 and a traceback per request) and a few hundred levels pass only to
make later code that walks the document recurse as deep. Every JSON edge (the KCO recurring
edge, the admin API, the sandbox) parses with :func:`loads` instead: the nesting depth is
measured first without recursion (strings skipped, so brackets inside them do not count),
and a document nested deeper than ``max_depth`` is refused with a :class:`JsonBodyError`
naming the limit, as is a body that is not UTF-8 JSON. Standard library only.
"""
from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, Final

__all__ = ["DEFAULT_MAX_DEPTH", "JsonBodyError", "loads", "nesting_depth"]

#: Deeper than any document these edges take (a KCO order or an import nests 4 or 5 levels).
DEFAULT_MAX_DEPTH: Final = 32

#: A JSON string (escapes included), or the rest of an unterminated one.
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
#: Every byte that is not a bracket, for ``bytes.translate(None, delete=…)``.
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonBodyError(ValueError):
    """The body is no JSON the edge will parse; ``str()`` says why ("nested deeper than 32
    levels", "not UTF-8", "not valid JSON") for the edge's message."""


def nesting_depth(raw: bytes) -> int:
    """The deepest bracket nesting of ``raw`` outside strings (of a malformed document too),
    computed without recursion in time linear in its length."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(0, max(accumulate(_STEP[b] for b in brackets)))


def loads(raw: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``raw`` decoded as UTF-8 JSON, nested at most ``max_depth`` levels.

    Raises:
        JsonBodyError: too deep, not UTF-8, or not JSON.
    """
    if nesting_depth(raw) > max_depth:
        raise JsonBodyError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise JsonBodyError("not UTF-8") from None
    except (ValueError, RecursionError):
        raise JsonBodyError("not valid JSON") from None
