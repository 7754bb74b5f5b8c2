"""Legacy 13-key address → REST ``Address``, and the comparison ``update`` needs.

Why: legacy ``update`` sends ``dlv_addr``/``bill_addr`` in Klarna Online's shape (``fname``,
``street`` + ``house_number`` + ``house_extension``, integer country code); the REST
``customer-details`` PATCH wants the REST shape with ISO country codes and length limits
(docs/order-management.md#field-limits). Over-long values are refused locally, naming the legacy
field (``dlv_addr.zip``), instead of getting Klarna's 422. Pure functions: the country table is
package data read once.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from gateway.errors import InvalidParamsError
from gateway.wire.values import Address

COUNTRY_CODES_CSV = Path(__file__).resolve().parents[1] / "data" / "klarna-country-codes.csv"

#: REST Address field → maximum length (docs/order-management.md#field-limits).
REST_LIMITS: dict[str, int] = {
    "given_name": 100,
    "family_name": 100,
    "street_address": 100,
    "street_address2": 100,
    "postal_code": 10,
    "city": 200,
    "email": 100,
    "phone": 100,
    "organization_name": 255,
}

#: The REST Address fields a legacy address can express (what :func:`rest_address_equal`
#: compares).
COMPARED_FIELDS: tuple[str, ...] = (
    "given_name", "family_name", "organization_name", "street_address", "street_address2",
    "postal_code", "city", "country", "email", "phone",
)

_WHITESPACE = re.compile(r"\s+")


@cache
def _country_table() -> dict[int, str]:
    """Klarna's integer country codes → ISO 3166-1 alpha-2, loaded once from package data."""
    table: dict[int, str] = {}
    with COUNTRY_CODES_CSV.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            table[int(row["klarna_code"])] = row["iso3166_alpha2"].strip().upper()
    return table


def klarna_country_to_alpha2(code: int, *, field: str = "country") -> str:
    """ISO alpha-2 for Klarna's integer country code (209 → ``"SE"``).

    Why: legacy addresses carry Klarna's own numbering, REST wants ISO 3166-1 alpha-2; the
    table is ``gateway/data/klarna-country-codes.csv``. An unknown code is the client's error:
    ``InvalidParamsError`` naming ``field`` (e.g. ``dlv_addr.country``).
    """
    if isinstance(code, bool) or not isinstance(code, int):
        raise InvalidParamsError(f"{field}: country code {code!r} is not an integer")
    try:
        return _country_table()[code]
    except KeyError:
        raise InvalidParamsError(f"{field}: unknown Klarna country code {code}") from None


@cache
def _alpha2_table() -> dict[str, int]:
    """ISO 3166-1 alpha-2 → Klarna's integer country code (the CSV read the other way)."""
    return {alpha2: code for code, alpha2 in _country_table().items()}


def alpha2_to_klarna_country(alpha2: object) -> int | None:
    """Klarna's integer country code for an ISO alpha-2 code (``"se"`` → 209), or ``None``.

    Why ``None`` rather than an error: the value comes from Klarna (an order's address), not
    from the client, so which fault fits depends on the caller (``invoice_address``: 8999).
    """
    if not isinstance(alpha2, str):
        return None
    return _alpha2_table().get(alpha2.strip().upper())


def rest_address_to_legacy_row(address: Mapping[str, Any]) -> list[Any] | None:
    """The legacy 6-element address ``[fname, lname, street, zip, city, country<int>]``.

    Why this shape: ``invoice_address`` replies exactly six elements; both SDKs read an
    empty first element as a company, whose name is then the second (``["", company, ...]``),
    so an address with an ``organization_name`` is given in that form. ``street_address2``
    (care of) has no place in the row. ``None`` when the country is missing or has no Klarna
    code (the SDKs cannot read anything but a known integer code).
    """
    country = alpha2_to_klarna_country(address.get("country"))
    if country is None:
        return None
    text = {key: _clean(address.get(key)) for key in (
        "given_name", "family_name", "organization_name", "street_address", "postal_code",
        "city")}
    if text["organization_name"]:
        head = ["", text["organization_name"]]
    else:
        head = [text["given_name"], text["family_name"]]
    return [*head, text["street_address"], text["postal_code"], text["city"], country]


def _clean(value: object) -> str:
    """Strip a legacy string value; ``None`` and non-strings other than ints become text or ''."""
    if value is None:
        return ""
    return str(value).strip()


def street_address(addr: Address) -> str:
    """``street``, ``house_number`` and ``house_extension`` joined by single spaces.

    Why this form: REST has one street line; Klarna Online's DE/NL/AT addresses split the
    number off. Joining the non-empty parts with a space (``"Hamngatan" "5" "B"`` →
    ``"Hamngatan 5 B"``) is how those markets write it and never merges two tokens.
    """
    parts = (_clean(addr.street), _clean(addr.house_number), _clean(addr.house_extension))
    return " ".join(part for part in parts if part)


def legacy_address_to_rest(addr: Address, *, field: str) -> dict[str, str]:
    """Convert a legacy address to a REST ``Address`` dict, omitting empty values.

    Why omit: in a legacy ``update`` an empty value means "not given"; sending ``""`` would
    blank the field at Klarna. Values are stripped of surrounding whitespace. Mapping:
    fname→given_name, lname→family_name, company→organization_name,
    street+house_number+house_extension→street_address (:func:`street_address`),
    careof→street_address2, zip→postal_code (as given; PHP already strips spaces), city,
    country (Klarna code→alpha-2), email, cellno (preferred) or telno→phone.

    ``field`` is the legacy parameter name (``dlv_addr``/``bill_addr``) used in fault messages:
    a value beyond the REST limit raises ``InvalidParamsError("dlv_addr.zip: ...")``.
    """
    sources: list[tuple[str, str, str]] = [
        ("given_name", "fname", _clean(addr.fname)),
        ("family_name", "lname", _clean(addr.lname)),
        ("organization_name", "company", _clean(addr.company)),
        ("street_address", "street", street_address(addr)),
        ("street_address2", "careof", _clean(addr.careof)),
        ("postal_code", "zip", _clean(addr.zip)),
        ("city", "city", _clean(addr.city)),
        ("email", "email", _clean(addr.email)),
    ]
    cellno, telno = _clean(addr.cellno), _clean(addr.telno)
    sources.append(("phone", "cellno" if cellno else "telno", cellno or telno))
    rest: dict[str, str] = {}
    for rest_key, legacy_key, value in sources:
        if not value:
            continue
        limit = REST_LIMITS[rest_key]
        if len(value) > limit:
            raise InvalidParamsError(
                f"{field}.{legacy_key}: {len(value)} characters, at most {limit} allowed"
            )
        rest[rest_key] = value
    if addr.country is not None:
        rest["country"] = klarna_country_to_alpha2(addr.country, field=f"{field}.country")
    return rest


def _normalise(key: str, value: Any) -> str:
    text = "" if value is None else str(value)
    if key in ("postal_code", "phone"):
        # "123 45" and "12345" are the same Swedish postcode (PHP strips the space, PY does
        # not); "+46 70 123" and "+4670123" the same number.
        return _WHITESPACE.sub("", text).casefold()
    return _WHITESPACE.sub(" ", text).strip().casefold()


def rest_address_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two REST addresses agree on every field a legacy address can express.

    Why: ``update`` must send only real changes, and SDKs send ``bill_addr`` as a copy of
    ``dlv_addr``; a billing "change" that is none must not be sent (Klarna refuses billing
    changes). Comparison ignores case, surrounding and repeated whitespace (and all whitespace
    in postal codes and phone numbers); missing, ``None`` and ``""`` are equal. Fields a legacy
    address cannot carry (``title``, ``region``, ``attention`` …) are ignored.
    """
    return all(_normalise(key, a.get(key)) == _normalise(key, b.get(key)) for key in COMPARED_FIELDS)
