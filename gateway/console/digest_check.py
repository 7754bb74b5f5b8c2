"""The digest self-test behind the console's onboarding page (pure: no Twisted, no store).

A migration team pastes one request its ERP sent and learns, before switching over, what
the gateway will say about its ``digest``: which method and eid, which SDK dialect(s) and
hash produced it, or, when nothing matches, the exact strings each SDK would have hashed
(the secret shown as ``<secret>``) so a wrong secret can be told from a wrong part order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.calls.registry import CallRegistry
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.wire import params as p
from gateway.wire.digest import Dialect, DigestParts, candidates, hash_for_digest, match
from gateway.wire.parse import parse_method_call

#: Who hashes that way (docs/legacy-protocol.md#sdk-dialects).
SDKS: dict[Dialect, str] = {
    Dialect.NO_FILTER: "Python SDK (Klarna_API 3.1.0): every part joined, empty ones included",
    Dialect.DROP_EMPTY: "PHP SDK 4.x/5.x: empty parts dropped",
    Dialect.DROP_FALSY: "PHP SDK 2.x: empty, 0 and false parts dropped",
}
PLACEHOLDER = "<secret>"
_DECLARED = re.compile(r"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


@dataclass(frozen=True)
class Verdict:
    """What the gateway makes of a pasted request's digest."""

    method: str | None = None
    eid: int | None = None
    configured: bool = False
    served: bool = False
    digest: Any = None
    hash_name: str | None = None
    matches: bool = False
    dialects: tuple[Dialect, ...] = ()
    #: Without a match: the string each dialect hashes, the secret as ``<secret>``.
    expected: tuple[tuple[str, str], ...] = ()
    #: Why the check stopped early (a fault the gateway would answer), or None.
    problem: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def request_bytes(text: str) -> bytes:
    """The pasted text as the bytes the ERP sent: encoded as its XML declaration says
    (the SDKs declare ISO-8859-1), UTF-8 when undeclared or not encodable so."""
    found = _DECLARED.match(text)
    if found:
        try:
            return text.encode(found.group(1))
        except (LookupError, UnicodeEncodeError):
            pass
    return text.encode("utf-8")


def check(body: bytes, config: Config, registry: CallRegistry, *,
          only_eid: int | None = None) -> Verdict:
    """Parse and check one captured request. ``only_eid`` (a merchant's session) refuses
    another merchant's request without saying whether that eid exists."""
    try:
        method, params = parse_method_call(body, max_depth=config.gateway.max_xml_depth)
    except GatewayError as e:
        return Verdict(problem=f"fault {int(e.fault_code)}: {e.fault_string}")
    lookup = registry.lookup(method)
    if lookup is None:
        return Verdict(method=method, problem="fault -32601: not a method of the legacy API")
    try:
        eid = p.eid_at(params, lookup.eid_at)
    except GatewayError as e:
        return Verdict(method=method, problem=f"fault {int(e.fault_code)}: {e.fault_string}")
    if only_eid is not None and eid != only_eid:
        return Verdict(method=method, eid=eid,
                       problem=f"this request is for eid {eid}; you may check eid {only_eid}")
    merchant = config.merchant(eid)
    base = Verdict(method=method, eid=eid, configured=merchant is not None,
                   served=lookup.spec is not None)
    if merchant is None:
        return _with(base, problem=f"fault 9113: eid {eid} is not configured on this gateway")
    rule = lookup.spec.digest if lookup.spec is not None else (
        lookup.not_offered.digest if lookup.not_offered is not None else None)
    if lookup.digest_at is None or rule is None:
        return _with(base, problem="the gateway does not check a digest for this method")
    if len(params) <= lookup.digest_at:
        return _with(base, problem=f"fault -32602: digest (parameter {lookup.digest_at}) "
                                   "is missing")
    given = params[lookup.digest_at]
    parts = rule(params)
    hash_fn = hash_for_digest(given) if isinstance(given, str) else None
    found = match(parts, given, merchant.secret_bytes)
    dialects = found.dialects if found else ()
    if found and not parts.filtered:
        dialects = tuple(Dialect)  # no SDK filters this call's parts: all hash the same
    verdict = _with(base, digest=given, hash_name=hash_fn(b"").name if hash_fn else None,
                    matches=found is not None, dialects=dialects)
    if found is None:
        verdict = _with(verdict, expected=expected_strings(parts))
    if not parts.filtered:
        verdict = _with(verdict, notes=("every SDK hashes this call's parts unfiltered",))
    return verdict


def expected_strings(parts: DigestParts) -> tuple[tuple[str, str], ...]:
    """(dialect, the ISO-8859-1 string it hashes) with a placeholder for the secret."""
    out: list[tuple[str, str]] = []
    for raw, dialects in candidates(parts, PLACEHOLDER.encode("latin-1")).items():
        out.append((", ".join(d.value for d in dialects), raw.decode("latin-1")))
    return tuple(out)


def _with(v: Verdict, **changes: Any) -> Verdict:
    return replace(v, **changes)
