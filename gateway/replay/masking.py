"""Digests never reach a recording: the stored request carries a placeholder instead.

Why a placeholder and not a deletion: a replay re-signs the call with the replaying side's
secret (:mod:`gateway.replay.resign`) and needs to know where the digest was and which hash
made it. The placeholder ``MASKED-DIGEST-<hash>`` keeps both (the hash is read from the
digest's base64 length, docs/legacy-protocol.md#hash-and-encoding) and keeps the body a
valid ``methodCall``.

Where the digest is: a served or known-but-unoffered call declares its position
(``gateway.calls.REGISTRY``); the value found there is replaced wherever it occurs in the
raw bytes, so everything else stays byte for byte as it crossed the wire. For an unknown
method or a call whose digest position is not declared, every run of base64 characters
that is a digest of a known length is masked, wherever it stands (element text, CDATA, an
attribute, a comment, the method name) and however it is written (as is, or as XML
character references). For bytes that are not XML-RPC at all nothing is known of their
shape, so every run of base64 characters long enough to hold a digest is masked, glued to
other base64 or not: a body that cannot be parsed cannot be replayed either, so nothing is
lost. What was masked is returned (:attr:`Masked.secrets`), so the recorder can take it out
of the reply and the method too (a fault may echo a method name). Pure: no I/O.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from gateway.calls import REGISTRY
from gateway.errors import GatewayError
from gateway.wire.digest import base64_runs
from gateway.wire.parse import parse_method_call, replace_params

PLACEHOLDER_PREFIX: Final = "MASKED-DIGEST-"
#: Hash by base64 digest length (the same table ``gateway.wire.digest`` verifies with).
HASH_BY_LENGTH: Final = {24: "md5", 40: "sha224", 44: "sha256", 64: "sha384", 88: "sha512"}
_RAW_SIZE: Final = {24: 16, 40: 28, 44: 32, 64: 48, 88: 64}
#: What replaces a run of base64 in a body that is no XML-RPC (it may or may not have been
#: a digest; it is no placeholder a replay could re-sign).
MASKED_RUN: Final = b"MASKED-BASE64"
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
    #: The values masked, as text: the recorder takes them out of the reply and method too.
    secrets: tuple[str, ...] = ()

    def scrub(self, data: bytes) -> bytes:
        """``data`` (a reply) with every masked value in it replaced as in the body."""
        for secret in self.secrets:
            data = data.replace(secret.encode("latin-1", "replace"),
                                placeholder(digest_hash(secret) or "unknown").encode("ascii"))
        return data


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
    """Every run of base64 that is a digest of a known length, masked, wherever it stands
    and however it is written (character references included)."""
    masked, secrets = _mask_runs(body, only_digests=True)
    return masked, len(secrets)


def _mask_runs(body: bytes, *, only_digests: bool) -> tuple[bytes, tuple[str, ...]]:
    """``body`` with its base64 runs replaced: the digest-shaped ones by their placeholder,
    and (``only_digests`` false) every other run that could hold one by
    :data:`MASKED_RUN`."""
    out, secrets, end = [], [], len(body)
    for run in reversed(base64_runs(body)):
        name = digest_hash(run.text)
        if name is None and only_digests:
            continue
        out.append(body[run.end:end])
        out.append(placeholder(name).encode("ascii") if name else MASKED_RUN)
        secrets.append(run.text)
        end = run.start
    out.append(body[:end])
    return b"".join(reversed(out)), tuple(secrets)


def mask_request(body: bytes | None) -> Masked:
    """The request as it may be stored: its digest replaced by a placeholder."""
    if not body:
        return Masked(body or b"", None, None, None, None, 0)
    try:
        method, params = parse_method_call(body)
    except GatewayError:
        masked, secrets = _mask_runs(body, only_digests=False)
        return Masked(masked, None, None, None, None, len(secrets), secrets)
    lookup = REGISTRY.lookup(method)
    eid = _eid(params, lookup.eid_at) if lookup is not None else None
    if lookup is None or lookup.digest_at is None or lookup.digest_at >= len(params):
        masked, secrets = _mask_runs(body, only_digests=True)
        return Masked(masked, method, eid, None, None, len(secrets), secrets)
    value = params[lookup.digest_at]
    if not isinstance(value, str) or len(value) < _MIN_DIGEST_CHARS:
        masked, secrets = _mask_runs(body, only_digests=True)
        return Masked(masked, method, eid, lookup.digest_at, None, len(secrets), secrets)
    name = HASH_BY_LENGTH.get(len(value), "unknown")
    raw = value.encode("latin-1", "replace")
    masked = body.replace(raw, placeholder(name).encode("ascii"))
    count = 1 if masked != body else 0
    if count == 0 or raw in masked:
        # Written with character references or in a multi-byte encoding: replace the
        # parameter in the parsed document instead (the rest re-serialized, same values).
        masked = replace_params(body, {lookup.digest_at: placeholder(name)})
        count = 1
    return Masked(masked, method, eid, lookup.digest_at, name, count, (value,))


def _eid(params: list[object], at: int) -> int | None:
    value = params[at] if 0 <= at < len(params) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None
