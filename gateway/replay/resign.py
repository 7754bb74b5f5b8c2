"""Re-signing a recorded call with the replaying side's secret. Pure.

A recording holds no digest (:mod:`gateway.replay.masking`), and a replay usually maps
reservation and invoice numbers, which are hashed: the digest must be built again. The
call's own declaration says which parts the SDKs hash (``CallSpec.digest`` / a
``NotOffered.digest``); they are joined with the secret as the Python SDK joins them (the
no-filter dialect, which every declaration accepts) and hashed with the algorithm the
recorded digest's length named (``sha512`` for the Python SDK).
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final

from gateway.calls import REGISTRY
from gateway.wire.digest import DigestParts, Dialect, candidates

HASHES: Final = frozenset({"md5", "sha224", "sha256", "sha384", "sha512"})


class ResignError(ValueError):
    """The call cannot be re-signed (unknown rule or hash, unhashable parts)."""


def digest_rule(method: str) -> tuple[int, Callable[[Sequence[Any]], DigestParts]] | None:
    """``(position, parts rule)`` of a method's digest, or ``None`` when not declared."""
    lookup = REGISTRY.lookup(method)
    if lookup is None or lookup.digest_at is None:
        return None
    rule = lookup.spec.digest if lookup.spec is not None else (
        lookup.not_offered.digest if lookup.not_offered is not None else None)
    return None if rule is None else (lookup.digest_at, rule)


def sign(parts: DigestParts, secret: bytes, hash_name: str) -> str:
    """``base64(HASH(latin1(":".join(parts + [secret]))))`` in the Python SDK's dialect."""
    if hash_name not in HASHES:
        raise ResignError(f"unknown digest hash {hash_name!r}")
    for raw, dialects in candidates(parts, secret).items():
        if Dialect.NO_FILTER in dialects:
            return base64.b64encode(hashlib.new(hash_name, raw).digest()).decode("ascii")
    raise ResignError("the digest parts cannot be hashed (a part is no Latin-1 scalar)")


def resign(method: str, params: Sequence[Any], secret: bytes, hash_name: str | None
           ) -> tuple[int, str]:
    """``(digest position, new digest)`` for ``params`` (numbers already mapped)."""
    found = digest_rule(method)
    if found is None:
        raise ResignError(f"{method}: no declared digest rule")
    position, rule = found
    return position, sign(rule(params), secret, hash_name or "sha512")
