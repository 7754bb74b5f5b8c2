"""Digests never reach a recording: the stored request carries a placeholder instead.

Why a placeholder and not a deletion: a replay re-signs the call with the replaying side's
secret (:mod:`gateway.replay.resign`) and needs to know where the digest was and which hash
made it. The placeholder ``MASKED-DIGEST-<hash>`` keeps both (the hash is read from the
digest's base64 length, legacy-xmlrpc.md §2.3) and keeps the body a valid ``methodCall``.

Where the digest is: a served or known-but-unoffered call declares its position
(``gateway.calls.REGISTRY``); the value found there is replaced wherever it occurs in the
raw bytes, so everything else stays byte for byte as it crossed the wire. For an unknown
method, a call whose digest position is not declared, or bytes that are not XML-RPC, every
value that looks like a base64 digest of a known length is masked instead. Pure: no I/O.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from gateway.calls import REGISTRY
from gateway.errors import GatewayError
from gateway.legacy.xmlrpc import parse_method_call, replace_params

PLACEHOLDER_PREFIX: Final = "MASKED-DIGEST-"
#: Hash by base64 digest length (the same table ``gateway.legacy.digest`` verifies with).
HASH_BY_LENGTH: Final = {24: "md5", 40: "sha224", 44: "sha256", 64: "sha384", 88: "sha512"}
_RAW_SIZE: Final = {24: 16, 40: 28, 44: 32, 64: 48, 88: 64}
#: A base64 token standing alone as an element's text (``<string>…</string>``, ``<value>…``).
_VALUE_RE: Final = re.compile(rb"(?<=>)(\s*)([A-Za-z0-9+/]{20,88}={0,2})(\s*)(?=<)")
#: Shorter values are no secret worth masking (and an empty one must never be "replaced").
_MIN_DIGEST_CHARS: Final = 8


@dataclass(frozen=True)
class Masked:
    """A request body safe to store, and what the replay needs to re-sign it.

    ``digest_at``/``hash_name``: the declared digest's position and hash (``None`` when the
    method declares none, or its value was no string); ``masked``: values replaced.
    """

    body: bytes
    method: str | None
    eid: int | None
    digest_at: int | None
    hash_name: str | None
    masked: int


def placeholder(hash_name: str) -> str:
    return f"{PLACEHOLDER_PREFIX}{hash_name}"


def hash_of_placeholder(value: object) -> str | None:
    """The hash name a placeholder carries, or ``None`` for anything else."""
    if isinstance(value, str) and value.startswith(PLACEHOLDER_PREFIX):
        return value[len(PLACEHOLDER_PREFIX):] or None
    return None


def digest_hash(value: str) -> str | None:
    """The hash name when ``value`` is a base64 digest of a known length, else ``None``."""
    size = _RAW_SIZE.get(len(value))
    if size is None:
        return None
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return HASH_BY_LENGTH[len(value)] if len(raw) == size else None


def mask_generic(body: bytes) -> tuple[bytes, int]:
    """Every element text that looks like a base64 digest of a known length, masked."""
    count = 0

    def swap(m: re.Match[bytes]) -> bytes:
        nonlocal count
        name = digest_hash(m.group(2).decode("ascii"))
        if name is None:
            return m.group(0)
        count += 1
        return m.group(1) + placeholder(name).encode("ascii") + m.group(3)
    return _VALUE_RE.sub(swap, body), count


def mask_request(body: bytes | None) -> Masked:
    """The request as it may be stored: its digest replaced by a placeholder."""
    if not body:
        return Masked(body or b"", None, None, None, None, 0)
    try:
        method, params = parse_method_call(body)
    except GatewayError:
        masked, count = mask_generic(body)
        return Masked(masked, None, None, None, None, count)
    lookup = REGISTRY.lookup(method)
    eid = _eid(params, lookup.eid_at) if lookup is not None else None
    if lookup is None or lookup.digest_at is None or lookup.digest_at >= len(params):
        masked, count = mask_generic(body)
        return Masked(masked, method, eid, None, None, count)
    value = params[lookup.digest_at]
    if not isinstance(value, str) or len(value) < _MIN_DIGEST_CHARS:
        masked, count = mask_generic(body)
        return Masked(masked, method, eid, lookup.digest_at, None, count)
    name = HASH_BY_LENGTH.get(len(value), "unknown")
    raw = value.encode("latin-1", "replace")
    masked = body.replace(raw, placeholder(name).encode("ascii"))
    count = 1 if masked != body else 0
    if count == 0 or raw in masked:
        # Written with character references or in a multi-byte encoding: replace the
        # parameter in the parsed document instead (the rest re-serialized, same values).
        masked = replace_params(body, {lookup.digest_at: placeholder(name)})
        count = 1
    return Masked(masked, method, eid, lookup.digest_at, name, count)


def _eid(params: list[object], at: int) -> int | None:
    value = params[at] if 0 <= at < len(params) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None
