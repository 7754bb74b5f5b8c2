"""Server-side recomputation of the legacy ``digest`` parameter (``legacy-xmlrpc.md`` §2).

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

This module never raises on hostile parameter *content*: odd shapes only make the digest
mismatch. It raises only when the digest parameter itself cannot be located.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from enum import Enum
from typing import Any, Final

from gateway.errors import InvalidParamsError, MethodNotFoundError

__all__ = [
    "DIGEST_POSITIONS",
    "Dialect",
    "digest_candidates",
    "digest_parts",
    "hash_for_digest",
    "verify_digest",
]


class Dialect(Enum):
    """How an SDK filters digest parts before joining them."""

    NO_FILTER = "no-filter"  # PY
    DROP_EMPTY = "drop-empty"  # P4/P5
    DROP_FALSY = "drop-falsy"  # P2


#: Position of the ``digest`` parameter (counted from p0) for each served call.
DIGEST_POSITIONS: Final[dict[str, int]] = {
    "activate": 3,
    "cancel_reservation": 4,
    "update": 3,
    "credit_part": 6,
    "credit_invoice": 5,
    "extend_expiry_date": 4,
    "email_invoice": 4,
    "send_invoice": 4,
}

#: Hash function by length of the base64 digest (§2.3).
_HASH_BY_B64_LENGTH: Final[dict[int, Callable[[bytes], Any]]] = {
    24: hashlib.md5,
    40: hashlib.sha224,
    44: hashlib.sha256,
    64: hashlib.sha384,
    88: hashlib.sha512,
}

_ACTIVATE_OPTIONAL_KEYS: Final = (
    "bclass", "cust_no", "flags", "ocr", "orderid1", "orderid2", "reference", "reference_code",
)
_UPDATE_ADDRESS_KEYS: Final = ("careof", "street", "zip", "city", "country", "fname", "lname")
_UNHASHABLE: Final = "\x00"


class _Parts:
    """A digest-part list plus whether the SDKs filter it (False for concatenations)."""

    __slots__ = ("filtered", "values")

    def __init__(self, values: list[Any], *, filtered: bool) -> None:
        self.values = values
        self.filtered = filtered


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def hash_for_digest(digest: str) -> Callable[[bytes], Any] | None:
    """The hash function a base64 digest of this length was made with, or ``None``."""
    return _HASH_BY_B64_LENGTH.get(len(digest))


def digest_parts(method: str, params: Sequence[Any]) -> list[Any]:
    """The unfiltered parts (without the secret) the SDKs hash for ``method``.

    Exposed for tests and debugging. Raises ``MethodNotFoundError`` for a method without a
    digest rule here.
    """
    return list(_parts(method, params).values)


def digest_candidates(method: str, params: Sequence[Any], secret: bytes) -> set[bytes]:
    """Every ISO-8859-1 byte string a legitimate SDK could have hashed for this call.

    Args:
        method: one of the served calls (:data:`DIGEST_POSITIONS`).
        params: the full positional parameter list, p0 first.
        secret: the merchant's shared secret (bytes, used as Latin-1 text).

    Raises:
        MethodNotFoundError: no digest rule for ``method``.
    """
    parts = _parts(method, params)
    secret_text = secret.decode("latin-1")
    dialects: Iterable[Dialect] = (
        (Dialect.NO_FILTER, Dialect.DROP_EMPTY, Dialect.DROP_FALSY)
        if parts.filtered else (Dialect.NO_FILTER,)
    )
    candidates: set[bytes] = set()
    for dialect in dialects:
        joined = _join([*parts.values, secret_text], dialect)
        if joined is None:
            continue
        try:
            candidates.add(joined.encode("latin-1"))
        except UnicodeEncodeError:
            continue  # a real non-Latin-1 character: no SDK could have hashed it
    return candidates


def verify_digest(method: str, params: Sequence[Any], secret: bytes) -> bool:
    """Whether ``params``' digest matches ``secret`` under any SDK dialect and hash.

    Args:
        method: one of the served calls.
        params: the full positional list from p0 (as returned by ``parse_method_call``).
        secret: the merchant's shared secret.

    Returns:
        ``True`` on a match. ``False`` for a wrong secret, an unknown digest length, a digest
        that is not a string, or parameters no SDK could have hashed.

    Raises:
        MethodNotFoundError: no digest rule for ``method``.
        InvalidParamsError: too few parameters to contain a digest.
    """
    position = DIGEST_POSITIONS.get(method)
    if position is None:
        raise MethodNotFoundError(f"no digest rule for {method[:64]}")
    if len(params) <= position:
        raise InvalidParamsError(f"digest (parameter {position}) is missing")
    given = params[position]
    if not isinstance(given, str):
        return False
    hash_fn = hash_for_digest(given)
    if hash_fn is None:
        return False
    try:
        given_bytes = given.encode("ascii")
    except UnicodeEncodeError:
        return False
    matched = False
    for candidate in digest_candidates(method, params, secret):
        computed = base64.b64encode(hash_fn(candidate).digest())
        # No short-circuit: every candidate is compared.
        matched |= hmac.compare_digest(computed, given_bytes)
    return matched


# ---------------------------------------------------------------------------------------------
# Per-call part lists
# ---------------------------------------------------------------------------------------------


def _param(params: Sequence[Any], index: int) -> Any:
    """``params[index]`` or ``None`` when absent (an absent part then cannot match)."""
    return params[index] if 0 <= index < len(params) else None


def _parts(method: str, params: Sequence[Any]) -> _Parts:
    if method == "activate":
        return _Parts(_activate_parts(params), filtered=True)
    if method == "update":
        return _Parts(_update_parts(params), filtered=True)
    if method == "credit_part":
        parts = [_param(params, 2), _param(params, 3), *_artno_pairs(_param(params, 4))]
        return _Parts(parts, filtered=False)
    if method in ("cancel_reservation", "extend_expiry_date"):
        # (rno, eid, digest): eid:rno:secret
        return _Parts([_param(params, 3), _param(params, 2)], filtered=True)
    if method in ("credit_invoice", "email_invoice", "send_invoice"):
        # (eid, invno, ...): eid:invno:secret
        return _Parts([_param(params, 2), _param(params, 3)], filtered=True)
    raise MethodNotFoundError(f"no digest rule for {method[:64]}")


def _protocol_prefix(params: Sequence[Any]) -> list[Any]:
    """``4:1``, the client version verbatim, eid, rno (``activate`` and ``update``)."""
    proto = _param(params, 0)
    proto_part = proto.replace(".", ":") if isinstance(proto, str) else proto
    return [proto_part, _param(params, 1), _param(params, 2), _param(params, 4)]


def _activate_parts(params: Sequence[Any]) -> list[Any]:
    parts = _protocol_prefix(params)
    info = _param(params, 5)
    if not isinstance(info, dict):
        info = {}
    parts.extend(info[key] for key in _ACTIVATE_OPTIONAL_KEYS if key in info)
    shipment = info.get("shipment_info")
    parts.append(shipment.get("delay_adjust") if isinstance(shipment, dict) else None)
    parts.extend(_artno_pairs(info.get("artnos")))
    return parts


def _update_parts(params: Sequence[Any]) -> list[Any]:
    parts = _protocol_prefix(params)
    info = _param(params, 5)
    if not isinstance(info, dict):
        info = {}
    for key in ("dlv_addr", "bill_addr"):
        address = info.get(key)
        if isinstance(address, dict):
            parts.extend(
                address.get(field) for field in _UPDATE_ADDRESS_KEYS
                if _php_str(address.get(field))
            )
    goods_list = info.get("goods_list")
    if isinstance(goods_list, list):
        for row in goods_list:
            if not isinstance(row, dict):
                continue
            goods = row.get("goods")
            goods = goods if isinstance(goods, dict) else {}
            artno = goods.get("artno")
            parts.append(artno if _php_str(artno) else goods.get("title"))
            parts.append(row.get("qty"))
    for key in ("orderid1", "orderid2"):
        if _php_str(info.get(key)):
            parts.append(info[key])
    return parts


def _artno_pairs(artnos: Any) -> list[Any]:
    """``artno, qty`` for every entry of an artnos list (``''``/``[]``/junk → nothing)."""
    pairs: list[Any] = []
    if isinstance(artnos, list):
        for entry in artnos:
            if isinstance(entry, dict):
                pairs.extend((entry.get("artno"), entry.get("qty")))
    return pairs


# ---------------------------------------------------------------------------------------------
# Stringification and filtering
# ---------------------------------------------------------------------------------------------


def _php_str(value: Any) -> str:
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
        strings = [s for s in (_php_str(v) for v in values) if s != ""]
    else:
        strings = [_php_str(v) for v in values if not _is_php_falsy(v)]
    if any(s == _UNHASHABLE for s in strings):
        return None
    return ":".join(strings)
