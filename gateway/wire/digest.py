"""Server-side recomputation of the legacy ``digest`` parameter (docs/legacy-protocol.md#digests).

The SDKs build ``base64(HASH(latin1(":".join(parts))))`` with the shared secret as the last
part, but they disagree on which empty or zero parts survive:

* **no-filter** (PY 3.1.0): every listed part is joined, ``''`` included;
* **drop-empty** (PHP 4.x/5.x ``colon()``): parts whose string form is ``''`` are dropped;
* **drop-falsy** (PHP 2.4 ``array_filter``): ``''``, ``'0'``, ``0``, ``0.0``, ``false`` and
  ``null`` are dropped.

A few digests are plain concatenations in every SDK and are never filtered (of the served
calls: ``credit_part``). We recompute the candidate strings for all dialects and accept the
digest if any matches, with the hash chosen by the digest's base64 length, compared in
constant time. Values are taken exactly as received (``p1`` verbatim, a ``<string>`` eid as
sent), re-encoded to ISO-8859-1; a character that is not Latin-1 cannot have been hashed by
any SDK, so that candidate simply cannot match.

Which parts each call hashes is declared by its module in ``gateway.calls`` (with the
building blocks below); this module never raises on hostile parameter *content*: odd shapes
only make the digest mismatch.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, Final


class Dialect(Enum):
    """How an SDK filters digest parts before joining them."""

    NO_FILTER = "no-filter"  # PY
    DROP_EMPTY = "drop-empty"  # P4/P5
    DROP_FALSY = "drop-falsy"  # P2


#: Hash function by length of the base64 digest (docs/legacy-protocol.md#hash-and-encoding).
_HASH_BY_B64_LENGTH: Final[dict[int, Callable[[bytes], Any]]] = {
    24: hashlib.md5,
    40: hashlib.sha224,
    44: hashlib.sha256,
    64: hashlib.sha384,
    88: hashlib.sha512,
}

_UNHASHABLE: Final = "\x00"


@dataclass(frozen=True)
class DigestParts:
    """The parts (without the secret) an SDK hashes for one call, and whether the SDKs filter
    empty/falsy parts (``False`` for the plain concatenations every SDK leaves unfiltered)."""

    values: list[Any]
    filtered: bool = True


@dataclass(frozen=True)
class DigestMatch:
    """Which dialect(s) and hash a matching digest was made with (onboarding, explain)."""

    hash_name: str
    dialects: tuple[Dialect, ...]


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def hash_for_digest(digest: str) -> Callable[[bytes], Any] | None:
    """The hash function a base64 digest of this length was made with, or ``None``."""
    return _HASH_BY_B64_LENGTH.get(len(digest))


def candidates(parts: DigestParts, secret: bytes) -> dict[bytes, tuple[Dialect, ...]]:
    """Every ISO-8859-1 byte string a legitimate SDK could have hashed, with the dialects
    that produce it."""
    secret_text = secret.decode("latin-1")
    dialects: Iterable[Dialect] = (
        (Dialect.NO_FILTER, Dialect.DROP_EMPTY, Dialect.DROP_FALSY)
        if parts.filtered else (Dialect.NO_FILTER,)
    )
    found: dict[bytes, tuple[Dialect, ...]] = {}
    for dialect in dialects:
        joined = _join([*parts.values, secret_text], dialect)
        if joined is None:
            continue
        try:
            raw = joined.encode("latin-1")
        except UnicodeEncodeError:
            continue  # a real non-Latin-1 character: no SDK could have hashed it
        found[raw] = found.get(raw, ()) + (dialect,)
    return found


def match(parts: DigestParts, given: Any, secret: bytes) -> DigestMatch | None:
    """The dialect(s) and hash under which ``given`` is the digest of ``parts`` + secret.

    ``None`` for a wrong secret, an unknown digest length, a digest that is not a string, or
    parts no SDK could have hashed. Every candidate is compared in constant time, with no
    short-circuit.
    """
    if not isinstance(given, str):
        return None
    hash_fn = hash_for_digest(given)
    if hash_fn is None:
        return None
    try:
        given_bytes = given.encode("ascii")
    except UnicodeEncodeError:
        return None
    matched: tuple[Dialect, ...] = ()
    for candidate, dialects in candidates(parts, secret).items():
        computed = base64.b64encode(hash_fn(candidate).digest())
        if hmac.compare_digest(computed, given_bytes):
            matched += dialects
    if not matched:
        return None
    return DigestMatch(hash_name=hash_fn(b"").name, dialects=matched)


def verify(parts: DigestParts, given: Any, secret: bytes) -> bool:
    """Whether ``given`` matches under any SDK dialect and hash."""
    return match(parts, given, secret) is not None


# ---------------------------------------------------------------------------------------------
# Where a digest could be hiding (masking recordings, redacting what is echoed or logged)
# ---------------------------------------------------------------------------------------------

#: A run of base64 characters at least this long may hold a digest (the shortest, MD5's,
#: is 24 characters with its padding).
MIN_DIGEST_RUN: Final = 20
_B64_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
#: Bytes that are base64 characters or XML character references (which may spell them).
_SPAN: Final = re.compile(rb"(?:[A-Za-z0-9+/=]|&#[0-9]{1,7};|&#[xX][0-9A-Fa-f]{1,6};)+")
_UNIT: Final = re.compile(rb"[A-Za-z0-9+/=]|&#([0-9]{1,7});|&#[xX]([0-9A-Fa-f]{1,6});")
_TEXT_RUN: Final = re.compile(r"[A-Za-z0-9+/=]{%d,}" % MIN_DIGEST_RUN)


@dataclass(frozen=True)
class Run:
    """A run of base64 characters in raw bytes: ``body[start:end]`` spells ``text`` (as
    written, or through XML character references)."""

    start: int
    end: int
    text: str


def base64_runs(body: bytes, min_length: int = MIN_DIGEST_RUN) -> list[Run]:
    """Every maximal run of at least ``min_length`` base64 characters in ``body``, written
    as they are or as numeric character references, wherever it stands (element text,
    CDATA, an attribute, a comment, a tag name, junk), in order."""
    runs: list[Run] = []
    for span in _SPAN.finditer(body):
        raw = span.group(0)
        if len(raw) < min_length:
            continue
        if b"&" not in raw:
            runs.append(Run(span.start(), span.end(), raw.decode("ascii")))
            continue
        chars: list[str] = []
        start = span.start()
        for unit in _UNIT.finditer(raw):
            char = _unit_char(unit)
            if char in _B64_CHARS:
                if not chars:
                    start = span.start() + unit.start()
                chars.append(char)
                end = span.start() + unit.end()
                continue
            if len(chars) >= min_length:
                runs.append(Run(start, end, "".join(chars)))
            chars = []
        if len(chars) >= min_length:
            runs.append(Run(start, end, "".join(chars)))
    return runs


def _unit_char(unit: re.Match[bytes]) -> str:
    decimal, hexadecimal = unit.group(1), unit.group(2)
    if decimal is None and hexadecimal is None:
        return unit.group(0).decode("ascii")
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    return chr(code) if code < 0x110000 else ""


def redact(text: str) -> str:
    """``text`` fit to echo in a fault or a log line: every run of base64 characters that
    could be a digest replaced by ``<masked>``."""
    return _TEXT_RUN.sub("<masked>", text)


# ---------------------------------------------------------------------------------------------
# Building blocks of the per-call part lists (used by the modules in ``gateway.calls``)
# ---------------------------------------------------------------------------------------------


def param(params: Sequence[Any], index: int) -> Any:
    """``params[index]`` or ``None`` when absent (an absent part then cannot match)."""
    return params[index] if 0 <= index < len(params) else None


def protocol_prefix(params: Sequence[Any]) -> list[Any]:
    """``4:1``, the client version verbatim, eid, rno (``activate`` and ``update``)."""
    proto = param(params, 0)
    proto_part = proto.replace(".", ":") if isinstance(proto, str) else proto
    return [proto_part, param(params, 1), param(params, 2), param(params, 4)]


def artno_pairs(artnos: Any) -> list[Any]:
    """``artno, qty`` for every entry of an artnos list (``''``/``[]``/junk → nothing)."""
    pairs: list[Any] = []
    if isinstance(artnos, list):
        for entry in artnos:
            if isinstance(entry, dict):
                pairs.extend((entry.get("artno"), entry.get("qty")))
    return pairs


def simple(params: Sequence[Any], *positions: int) -> DigestParts:
    """The common ``colon(p[a], p[b], ...)`` digest, filtered per SDK dialect."""
    return DigestParts([param(params, i) for i in positions])


# ---------------------------------------------------------------------------------------------
# Stringification and filtering
# ---------------------------------------------------------------------------------------------


def php_str(value: Any) -> str:
    """PHP's ``(string)`` of a value decoded from XML-RPC (PHP null arrives as ``''``).

    Arrays and structs never appear in a valid digest; they map to a string containing NUL,
    which XML cannot carry, so a candidate containing one cannot match anything a client
    hashed (and is discarded by :func:`_join`).
    """
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, Decimal):
        # PHP prints floats with precision 14 and no trailing ".0"; only integral values
        # can matter for these digests.
        return format(value.normalize(), "f") if value == value.to_integral_value() else str(
            float(value))
    return _UNHASHABLE


def _py_str(value: Any) -> str:
    """Python 3's ``str()`` as the PY SDK applies it (``None`` cannot reach the wire)."""
    if value is None:
        return ""
    if isinstance(value, bool | int | str):
        return str(value)
    if isinstance(value, Decimal):
        return repr(float(value))
    return _UNHASHABLE


def _is_php_falsy(value: Any) -> bool:
    if value is None or value is False:
        return True
    if isinstance(value, str):
        return value in ("", "0")
    if isinstance(value, int | Decimal):
        return value == 0
    if isinstance(value, list | dict):
        return len(value) == 0
    return False


def _join(values: list[Any], dialect: Dialect) -> str | None:
    if dialect is Dialect.NO_FILTER:
        strings = [_py_str(v) for v in values]
    elif dialect is Dialect.DROP_EMPTY:
        strings = [s for s in (php_str(v) for v in values) if s != ""]
    else:
        strings = [php_str(v) for v in values if not _is_php_falsy(v)]
    if any(s == _UNHASHABLE for s in strings):
        return None
    return ":".join(strings)
