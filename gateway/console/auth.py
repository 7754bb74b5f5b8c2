"""Who is looking at the console, and how they proved it.

Two kinds of principal: the admin (the admin API's bearer token: every merchant) and a
merchant (its ``console_token`` from the configuration: its own eid only, read-only like
everything in the console). A request proves it with ``Authorization: Bearer <token>``
(scripts), or with a session cookie the sign-in form set (browsers).

Sessions: a random 256-bit id (``secrets``) mapped in memory to the principal, with an
absolute lifetime; the cookie is ``HttpOnly; SameSite=Strict; Path=/console/`` (``Secure``
over TLS). Memory only, on purpose: a restart signs everyone out, and no session can be
forged or replayed from a database dump. Several gateway processes behind a balancer each
keep their own sessions (stick the admin listener to one, or use bearer tokens).

CSRF: the console changes nothing in the gateway, and every form is GET except sign-in,
sign-out and the digest self-test, whose POSTs must come from this origin (``Origin``, or
``Referer`` when a browser sends no Origin): a cross-site page can neither sign a victim in
to an attacker's session nor post on their behalf. The SameSite=Strict cookie is not sent
cross-site anyway.
"""
from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.config import Config

COOKIE = "kgw_console"
#: Seconds a session lasts from sign-in (a working day), whatever the activity.
SESSION_SECONDS = 8 * 3600
#: Sessions kept at most (the oldest go first): memory stays bounded.
MAX_SESSIONS = 10_000


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
    """Signed-in browsers: session id → (principal, expiry), in this process's memory."""

    def __init__(self, clock: Any, *, lifetime: float = SESSION_SECONDS,
                 limit: int = MAX_SESSIONS) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.limit = limit
        self._sessions: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def create(self, principal: Principal) -> str:
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = (principal, self.clock.seconds() + self.lifetime)
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return sid

    def get(self, sid: str | None) -> Principal | None:
        if not sid:
            return None
        found = self._sessions.get(sid)
        if found is None:
            return None
        principal, expires = found
        if expires <= self.clock.seconds():
            del self._sessions[sid]
            return None
        return principal

    def drop(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

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


def cookie_header(request: Any, sid: str, *, max_age: int = SESSION_SECONDS) -> bytes:
    secure = "; Secure" if request.isSecure() else ""
    return (f"{COOKIE}={sid}; Path=/console/; Max-Age={max_age}; HttpOnly; "
            f"SameSite=Strict{secure}").encode("ascii")


def bearer_token(request: Any) -> str | None:
    """The token of an ``Authorization: Bearer`` header (None: no such header)."""
    value = request.getHeader(b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
