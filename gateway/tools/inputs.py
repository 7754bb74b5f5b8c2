"""The input contract every entry point shares: the command line, the admin API and the
console check the same things here, with the same words, before any work starts.

- an eid is configured (:func:`merchant`);
- an order exists at Klarna and belongs to that eid (:func:`existing_order`: Klarna answers
  404 to another merchant's credentials, so "does not exist for eid N" covers both);
- a database URL names a database the gateway can use (:func:`database_url`), a URL is an
  ``http(s)://host`` URL and answers (:func:`http_url`, :func:`reachable`), a file can be
  read (:func:`readable_file`) and an output file can be written (:func:`writable_file`).

A refusal is an :class:`InputError` (the input or the configuration is unusable: exit 2, an
HTTP 4xx) or an :class:`Unreachable` (a dependency cannot be reached: exit 3, HTTP 502).
Each message is one line that names the bad value and says what to do about it; the command
line prefixes it with ``klarna-gateway:``. The exit statuses are :class:`Exit`, the one
table every subcommand applies (docs/cli.md#exit-status).
"""
from __future__ import annotations

import os
import socket
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from gateway.om.client import OmClient, OmError
    from gateway.config import Config, Merchant
    from gateway.model import Reservation
    from gateway.store.store import Store


class Exit(IntEnum):
    """Exit status of every ``klarna-gateway`` subcommand."""

    OK = 0
    #: the command's own finding: a discrepancy, a difference, a refused row, a fault,
    #: an authorization about to lapse, an invalid configuration file (``config check``)
    FINDING = 1
    #: unusable input or configuration: a bad flag value, a missing file, an eid that is
    #: not configured, an order that does not exist, a port already in use
    UNUSABLE = 2
    #: a dependency cannot be reached: the database, Klarna, a replay target, an upstream
    UNREACHABLE = 3
    INTERRUPTED = 130


#: Database backends the gateway runs on (SQLAlchemy dialect names).
DATABASES = ("sqlite", "postgresql", "postgres")
DATABASE_HINT = ("the gateway runs on SQLite (sqlite:///PATH) or PostgreSQL "
                 "(postgresql://USER@HOST/DB)")


class InputError(ValueError):
    """Unusable input or configuration (exit 2). ``status`` is the admin API's answer."""

    exit_code = Exit.UNUSABLE

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(Exception):
    """A dependency cannot be reached (exit 3; HTTP 502 on the admin API, 503 when the
    gateway itself held the request back: nothing was sent)."""

    exit_code = Exit.UNREACHABLE

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


# -- merchants and orders ------------------------------------------------------------------


def parse_eid(value: Any, flag: str = "eid") -> int:
    """An eid as a positive integer (a string of ASCII digits is accepted: ``str.isdigit``
    also accepts "²", which ``int`` refuses)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 10**15:
        raise InputError(f"{flag}: not an eid: {value!r} (a positive whole number, e.g. 1234)")
    return value


def merchant(config: Config, eid: Any, flag: str = "eid") -> Merchant:
    """The configured merchant of ``eid``; an eid the configuration lacks is refused."""
    number = parse_eid(eid, flag)
    found = config.merchant(number)
    if found is None:
        known = ", ".join(str(m.eid) for m in config.merchants) or "none"
        where = f"{flag}: " if flag.startswith("--") else ""
        raise InputError(f"{where}eid {number} is not configured in {config.source} "
                         f"(configured: {known}): add a [[merchants]] table for it or use "
                         "another eid", status=404)
    return found


def order_id(value: Any, flag: str = "order_id") -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise InputError(f"{flag} must be a non-empty string of at most 255 characters")
    return value.strip()


def reservation_number(value: Any, flag: str = "rno") -> str | None:
    """An rno to register (None: the gateway issues one)."""
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip() \
            or len(str(value)) > 64:
        raise InputError(f"{flag} must be a non-empty string of at most 64 characters")
    return str(value)


def klarna_error(e: OmError, what: str, eid: int) -> InputError | Unreachable:
    """What a failed read at Klarna means for the caller: a 404 is bad input (the thing
    does not exist for this eid), 401/403 bad credentials, anything else Klarna not
    answering."""
    from gateway.om.client import DeadlineExceededError, RateLimitedError, RestResponseError

    if isinstance(e, RateLimitedError):
        return Unreachable(f"no REST request slot for eid {eid} in time (its rest_rate_limit, "
                           f"or Klarna's Retry-After) reading {what}: nothing was sent, try "
                           "again later", status=503)
    if isinstance(e, RestResponseError):
        if e.status == 404:
            return InputError(f"{what} does not exist for eid {eid}: check the id, and that "
                              f"it belongs to eid {eid}", status=422)
        if e.status in (401, 403):
            return InputError(f"Klarna refused the REST credentials of eid {eid} (HTTP "
                              f"{e.status}): check rest_username/rest_password of eid {eid}",
                              status=502)
        code = f" {e.error_code}" if e.error_code else ""
        return Unreachable(f"Klarna answered HTTP {e.status}{code} reading {what}: try "
                           "again later")
    inner = e.last if isinstance(e, DeadlineExceededError) else e
    return Unreachable(f"Klarna did not answer reading {what} ({inner}): check eid {eid}'s "
                       "base_url and the network, then try again")


async def existing_order(om: OmClient, m: Merchant, order: str, *,
                         deadline: float | None = None) -> dict[str, Any]:
    """The order as Klarna holds it for this merchant; refused when it does not exist for
    that eid (another merchant's order included) or Klarna cannot be reached by
    ``deadline`` (reactor seconds; retryable failures are retried until then, so pass
    one)."""
    from gateway.om.client import OmError

    try:
        return await om.get_order(m, order, deadline=deadline)
    except OmError as e:
        raise klarna_error(e, f"order {order}", m.eid) from None


async def register_reservation(config: Config, store: Store, om: OmClient, eid: Any,
                               order: Any, rno: Any, origin: str) -> Reservation:
    """Register one Klarna order as a reservation of ``eid`` (``POST /v1/reservations`` and
    ``reservations add``): the eid is configured, the order exists for it, then the
    mapping is written with the order's status. A conflict is the store's
    ``ReservationConflictError``."""
    m = merchant(config, eid)
    order = order_id(order)
    number = reservation_number(rno)
    found = await existing_order(om, m, order, deadline=om.reactor.seconds()
                                 + config.gateway.retry_budget_seconds)
    res = await store.register_reservation(m.eid, order, number, origin,
                                           status=found.get("status"))
    await store.record_order_facts(res.id, found)
    return res


# -- URLs and files ------------------------------------------------------------------------


def http_url(text: str, flag: str) -> str:
    """An ``http://`` or ``https://`` URL with a host."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{flag}: not an http(s) URL: {text!r} (e.g. "
                         "http://127.0.0.1:8080/)")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InputError(f"{flag}: bad port in {text!r}") from None
    return text.strip()


def reachable(url: str, flag: str, timeout: float = 3.0) -> None:
    """Something accepts connections at ``url``'s host and port (checked before a command
    starts its work, so an unreachable target fails at once and changes nothing)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise Unreachable(f"{flag} {url}: cannot connect ({reason}): is it running, and "
                          "is this its address?") from None


def readable_file(path: str, what: str = "") -> Path:
    """A file that exists and can be read (``FILE: cannot read: REASON``)."""
    p = Path(path)
    try:
        with p.open("rb"):
            pass
    except OSError as e:
        label = f"{what} {path}" if what else path
        raise InputError(f"{label}: cannot read: {e.strerror or e}") from None
    if p.is_dir():
        raise InputError(f"{what + ' ' if what else ''}{path}: cannot read: it is a directory")
    return p


def writable_file(path: str, flag: str) -> Path:
    """An output file whose directory exists and can be written to (checked before any
    work, so a long run never ends with its report lost)."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise InputError(f"{flag} {path}: is a directory: name a file")
    if not parent.is_dir():
        raise InputError(f"{flag} {path}: the directory {parent} does not exist: create it "
                         "or name another file")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise InputError(f"{flag} {path}: cannot write there (permission denied)")
    return p


def writable_dir(path: str, flag: str) -> Path:
    """An output directory: it exists and can be written to, or its parent does (it is
    created when the work starts)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"{flag} {path}: not a directory: name a directory")
    where = p if p.exists() else (p.parent if str(p.parent) else Path("."))
    if not where.is_dir():
        raise InputError(f"{flag} {path}: the directory {where} does not exist: create it "
                         "or name another directory")
    if not os.access(where, os.W_OK):
        raise InputError(f"{flag} {path}: cannot write there (permission denied)")
    return p


def database_url(text: str, flag: str = "--db") -> str:
    """A database URL the gateway can use: SQLAlchemy can parse it and it names SQLite or
    PostgreSQL. A plain path gets the hint to write it as ``sqlite:///PATH``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = text.strip()
    try:
        url = make_url(text)
    except ArgumentError:
        hint = (f"write sqlite:///{text}" if "://" not in text else DATABASE_HINT)
        raise InputError(f"{flag}: not a database URL: {text!r}: {hint} (or give "
                         "--db-file FILE, a file holding the URL)") from None
    backend = url.get_backend_name()
    if backend not in DATABASES:
        raise InputError(f"{flag}: unsupported database {backend!r}: {DATABASE_HINT}")
    return text


def database_unreachable(error: BaseException) -> bool:
    """A database error that means "cannot connect" (exit 3) rather than bad credentials or
    a bad schema (exit 2)."""
    text = str(getattr(error, "orig", None) or error).lower()
    if any(s in text for s in ("password authentication failed", "does not exist",
                               "no pg_hba.conf entry", "permission denied")):
        return False  # it answered: the credentials, database or role are wrong
    return any(s in text for s in ("connection refused", "could not connect", "timeout",
                                   "timed out", "no route to host", "network is unreachable"))
