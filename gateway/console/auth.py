"""Who is looking at the console, and how they proved it.

Two kinds of principal: the admin (the admin API's bearer token: every merchant) and a
merchant (its ``console_token`` from the configuration: its own eid only, read-only like
everything in the console). A request proves it with ``Authorization: Bearer <token>``
(scripts), or with a session cookie the sign-in form set (browsers).

Sessions: a random 256-bit id (``secrets``) mapped in memory to the principal, with an
absolute lifetime; the cookie is ``HttpOnly; SameSite=Strict; Path=/console/`` (``Secure``
over TLS, or always with ``console_cookie_secure = true`` behind a TLS-terminating proxy).
Memory only, on purpose: a restart signs everyone out, and no session can be forged or
replayed from a database dump. Several gateway processes behind a balancer each keep their
own sessions (stick the admin listener to one, or use bearer tokens). Each principal has
its own cap (:data:`MAX_SESSIONS_PER_PRINCIPAL`, its oldest session goes first), so one
merchant signing in again and again can only sign itself out, never the admin or another
merchant; memory stays bounded by the number of principals times the cap.

Sign-in: the token is read from the form body only (a token in a URL ends up in access
logs, browser history and ``Referer`` headers). Each failed sign-in is logged (namespace
``gateway.console.signin``: the client's address and the count, never the token tried), and
after more than :data:`FREE_SIGNIN_FAILURES` failures in a row an address waits before its next
attempt (:class:`SigninThrottle`: 1 s, doubling up to 5 minutes; answered 429 with
``Retry-After`` without comparing the token), until it has made no failed attempt for 15
minutes. Sign-in forms and ``Authorization: Bearer`` on console pages share that count.

CSRF: the console changes nothing in the gateway, and every form is GET except sign-in,
sign-out and the digest self-test, whose POSTs must come from this origin (``Origin``, or
``Referer`` when a browser sends no Origin): a cross-site page can neither sign a victim in
to an attacker's session nor post on their behalf. The SameSite=Strict cookie is not sent
cross-site anyway.
"""
from __future__ import annotations

import hmac
import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.logger import Logger

from gateway.config import Config

COOKIE = "kgw_console"
#: Seconds a session lasts from sign-in (a working day), whatever the activity.
SESSION_SECONDS = 8 * 3600
#: Sessions kept at most per principal (that principal's oldest go first).
MAX_SESSIONS_PER_PRINCIPAL = 100
#: Failed sign-ins an address may make in a row before it must wait.
FREE_SIGNIN_FAILURES = 10
#: The first wait, doubled with each further failure, up to the maximum.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
#: Addresses whose failures are remembered at most (the least recent are forgotten).
MAX_THROTTLED_ADDRESSES = 10_000
#: An address's failures are forgotten after this long without one.
FORGET_AFTER_SECONDS = 900.0

signin_log = Logger(namespace="gateway.console.signin")


@dataclass(frozen=True)
class Principal:
    """``eid`` None: the admin (all merchants); otherwise one merchant's read-only view."""

    eid: int | None

    @property
    def admin(self) -> bool:
        return self.eid is None

    @property
    def label(self) -> str:
        return "admin" if self.eid is None else f"merchant {self.eid}"

    def may_see(self, eid: int) -> bool:
        return self.eid is None or self.eid == eid


def principal_for_token(config: Config, token: str) -> Principal | None:
    """The principal a token names; every candidate is compared in constant time and none
    is skipped, so timing tells nothing about which token (if any) was close."""
    given = token.encode("utf-8", "surrogateescape")
    found: Principal | None = None
    candidates: list[tuple[str, Principal]] = [(config.gateway.admin_token, Principal(None))]
    candidates += [(m.console_token, Principal(m.eid)) for m in config.merchants
                   if m.console_token is not None]
    for secret, principal in candidates:
        if hmac.compare_digest(given, secret.encode("utf-8")):
            found = principal
    return found


class Sessions:
    """Signed-in browsers: session id → (principal, expiry), in this process's memory.

    ``limit``: sessions kept per principal; a principal's sign-in beyond it ends that
    principal's oldest session, nobody else's.
    """

    def __init__(self, clock: Any, *, lifetime: float = SESSION_SECONDS,
                 limit: int = MAX_SESSIONS_PER_PRINCIPAL) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.limit = limit
        self._sessions: dict[str, tuple[Principal, float]] = {}
        #: Per principal, its session ids oldest first.
        self._by_principal: dict[Principal, OrderedDict[str, None]] = {}

    def create(self, principal: Principal) -> str:
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = (principal, self.clock.seconds() + self.lifetime)
        own = self._by_principal.setdefault(principal, OrderedDict())
        own[sid] = None
        while len(own) > self.limit:
            oldest, _ = own.popitem(last=False)
            self._sessions.pop(oldest, None)
        return sid

    def get(self, sid: str | None) -> Principal | None:
        if not sid:
            return None
        found = self._sessions.get(sid)
        if found is None:
            return None
        principal, expires = found
        if expires <= self.clock.seconds():
            self.drop(sid)
            return None
        return principal

    def drop(self, sid: str | None) -> None:
        found = self._sessions.pop(sid, None) if sid else None
        if found is not None:
            own = self._by_principal.get(found[0])
            if own is not None:
                own.pop(sid, None)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._sessions)


def same_origin(request: Any) -> bool:
    """Whether a POST comes from a page of this listener (Origin, else Referer)."""
    host = (request.getHeader(b"host") or b"").decode("latin-1")
    if not host:
        return False
    allowed = {f"http://{host}", f"https://{host}"}
    origin = request.getHeader(b"origin")
    if origin is not None:
        return origin.decode("latin-1") in allowed
    referer = request.getHeader(b"referer")
    if referer is None:
        return False
    parts = urlsplit(referer.decode("latin-1"))
    return f"{parts.scheme}://{parts.netloc}" in allowed


class SigninThrottle:
    """Failed sign-ins per client address, and how long an address must wait.

    ``wait(address)`` is 0 while the address has failed fewer than
    :data:`FREE_SIGNIN_FAILURES` + 1 times in a row; after that each failure sets a wait of
    :data:`BACKOFF_BASE_SECONDS` doubled per extra failure, capped at
    :data:`BACKOFF_MAX_SECONDS`. The count starts over only after
    :data:`FORGET_AFTER_SECONDS` without a failure: a success does not reset it, or anyone
    holding one valid token (a merchant's) could sign in between guesses at another (the
    admin's) and never wait. At most ``max_addresses`` are remembered (the least recently
    failed are forgotten first), so memory is bounded.
    """

    def __init__(self, clock: Any, *, max_addresses: int = MAX_THROTTLED_ADDRESSES) -> None:
        self.clock = clock
        self.max_addresses = max_addresses
        #: address → (failures in a row, may try again at, refused while waiting, last)
        self._failures: OrderedDict[str, tuple[int, float, int, float]] = OrderedDict()

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait before its next attempt (0: none)."""
        found = self._failures.get(address)
        if found is None:
            return 0.0
        return max(0.0, found[1] - self.clock.seconds())

    def refused(self, address: str) -> None:
        """An attempt made while waiting (counted for the next log line)."""
        failures, until, refused, last = self._failures[address]
        self._failures[address] = (failures, until, refused + 1, last)

    def failed(self, address: str) -> None:
        now = self.clock.seconds()
        failures, _, refused, last = self._failures.pop(address, (0, 0.0, 0, now))
        if now - last > FORGET_AFTER_SECONDS:
            failures = 0
        failures += 1
        extra = failures - FREE_SIGNIN_FAILURES - 1
        delay = 0.0 if extra < 0 else min(BACKOFF_MAX_SECONDS,
                                          BACKOFF_BASE_SECONDS * math.pow(2, min(extra, 30)))
        self._failures[address] = (failures, now + delay, 0, now)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
        signin_log.warn(
            "console sign-in failed from {client}: {failures} failure(s) in a row"
            "{refused_note}; next attempt allowed in {delay:.0f} s",
            client=address, failures=failures, delay=delay,
            refused_note=f", {refused} attempt(s) refused while waiting" if refused else "")

    def forget(self, address: str) -> None:
        self._failures.pop(address, None)

    def __len__(self) -> int:
        return len(self._failures)


def cookie_header(request: Any, sid: str, *, max_age: int = SESSION_SECONDS,
                  secure: bool = False) -> bytes:
    """The session cookie; ``Secure`` over TLS, or always when ``secure`` (the listener is
    plain HTTP behind a TLS-terminating proxy: ``console_cookie_secure``)."""
    secure_flag = "; Secure" if secure or request.isSecure() else ""
    return (f"{COOKIE}={sid}; Path=/console/; Max-Age={max_age}; HttpOnly; "
            f"SameSite=Strict{secure_flag}").encode("ascii")


def bearer_token(request: Any) -> str | None:
    """The token of an ``Authorization: Bearer`` header (None: no such header)."""
    value = request.getHeader(b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
