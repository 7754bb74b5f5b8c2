"""``/console/`` on the admin listener: the read-only web console (routes and data).

Routes (GET unless noted; all but sign-in need a principal, see :mod:`.auth`):

- ``/console/`` search (``?q=`` rno, invno, Klarna order id or merchant order id) and the
  latest calls;
- ``/console/reservation?eid=&rno=`` the reservation, its invoices and credits (store), the
  order with its captures and refunds (a GET at Klarna), and its journal;
- ``/console/journal?<the filters of GET /v1/journal>`` journal search;
- ``/console/pending`` calls without an outcome, running or unresolved;
- ``/console/discrepancies`` store vs Klarna, read-only (``reconcile.differences``);
- ``/console/expiring?days=3`` authorizations expiring within N days (``expires_at``);
- ``/console/digest`` (GET form, POST check) the digest self-test with the explain plan;
- ``/console/signin`` (GET form, POST token), ``/console/signout`` (POST).

The console writes nothing to the store and sends Klarna nothing but GETs of orders.
"""
from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote_to_bytes

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.http import combinedLogFormatter
from twisted.web import server
from twisted.web.resource import Resource

from gateway.boundary import client_of
from gateway.console import auth, views
from gateway.console.digest_check import check as check_digest, request_bytes
from gateway.console.html import Html, h
from gateway.errors import GatewayError
from gateway.binding import Phase
from gateway.model import EntryState, JournalEntry, Reservation
from gateway.om.client import OmClient, OmError
from gateway.store.search import JournalQuery, ReservationScope
from gateway.tools import inputs
from gateway.tools import journal as js
from gateway.tools import expiring as expiry
from gateway.tools.explain import Explainer, Explanation
from gateway.tools.reconcile import Discrepancy, differences

if TYPE_CHECKING:
    from gateway.calls.registry import CallRegistry
    from gateway.config import Config
    from gateway.store.store import Store

log = Logger()
T = TypeVar("T")

#: Reservations read from Klarna at most per discrepancy/expiry page (the newest ones).
KLARNA_READS = 200
#: Orders read from Klarna at once.
CONCURRENCY = 4
#: Seconds a page waits for one order read (retries included).
READ_SECONDS = 5.0
PAGE_ENTRIES = 20

SECURITY_HEADERS = (
    (b"Content-Security-Policy", b"default-src 'none'; style-src 'unsafe-inline'; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Referrer-Policy", b"same-origin"),
    (b"Cache-Control", b"no-store"),
)


class ConsoleError(Exception):
    def __init__(self, status: int, message: str,
                 headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


class Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass
class Page:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Caller:
    principal: auth.Principal
    by_cookie: bool


class ConsoleResource(Resource):
    """The console; ``request.postpath`` starts after ``console``."""

    isLeaf = True

    def __init__(self, config: Config, store: Store, om: OmClient, registry: CallRegistry,
                 explainer: Explainer, *, clock: Any) -> None:
        """``registry``: the calls as served (the digest self-test checks with it);
        ``explainer``: the dry run the self-test shows; ``clock``: sessions, sign-in
        throttling and the pages' times."""
        super().__init__()
        self.config = config
        self.store = store
        self.om = om
        self.registry = registry
        self.explainer = explainer
        self.clock = clock
        self.sessions = auth.Sessions(self.clock)
        self.signins = auth.SigninThrottle(self.clock)

    def render(self, request: server.Request) -> Any:
        d = defer.ensureDeferred(self._handle(request))
        d.addErrback(lambda f: log.failure("console request failed", f))
        return server.NOT_DONE_YET

    async def _handle(self, request: server.Request) -> None:
        try:
            page = await self._route(request)
        except Redirect as r:
            page = Page(303, b"", [(b"Location", r.location.encode("ascii"))])
        except ConsoleError as e:
            page = self._page(e.status, "Error", views.error_page(e.message), None)
            page.headers.extend(e.headers)
        except Exception:
            log.failure("console handler crashed")
            page = self._page(500, "Error", views.error_page("internal error"), None)
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(page.status)
        for name, value in SECURITY_HEADERS + tuple(page.headers):
            request.setHeader(name, value)
        if page.status != 303:
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Length", str(len(page.body)).encode())
        request.write(page.body)
        request.finish()

    @staticmethod
    def _page(status: int, title: str, body: Html, caller: Caller | None) -> Page:
        return Page(status, views.document(title, body,
                                           caller.principal if caller else None))

    # -- routing and authentication ----------------------------------------------------

    async def _route(self, request: server.Request) -> Page:
        try:
            segments = [s.decode("utf-8") for s in request.postpath or []]
        except UnicodeDecodeError:
            raise ConsoleError(400, "the path does not percent-decode to UTF-8") from None
        if not segments:
            raise Redirect("/console/")
        name = segments[0]
        if any(segments[1:]):
            raise ConsoleError(404, "no such page")
        method = request.method.decode("ascii", "replace")
        if name == "signin":
            return await self._signin(request, method)
        if name == "signout" and method == "POST":
            return self._signout(request)
        caller = self._caller(request)
        handlers: dict[tuple[str, str], Callable[[server.Request, Caller],
                                                 Awaitable[Page]]] = {
            ("GET", ""): self._search, ("GET", "reservation"): self._reservation,
            ("GET", "journal"): self._journal, ("GET", "pending"): self._pending,
            ("GET", "discrepancies"): self._discrepancies,
            ("GET", "expiring"): self._expiring, ("GET", "digest"): self._digest_form,
            ("POST", "digest"): self._digest_check,
        }
        handler = handlers.get((method, name))
        if handler is None:
            known = {n for _, n in handlers}
            raise ConsoleError(405 if name in known else 404,
                               "method not allowed" if name in known else "no such page")
        return await handler(request, caller)

    def _caller(self, request: server.Request) -> Caller:
        token = auth.bearer_token(request)
        if token is not None:
            principal = self._principal(request, token)
            if principal is None:
                raise ConsoleError(401, "wrong bearer token")
            return Caller(principal, by_cookie=False)
        sid = request.getCookie(auth.COOKIE.encode())
        principal = self.sessions.get(sid.decode("ascii", "replace") if sid else None)
        if principal is None:
            raise Redirect("/console/signin")
        return Caller(principal, by_cookie=True)

    async def _signin(self, request: server.Request, method: str) -> Page:
        """The token only from the form body; failures logged and backed off per address
        (:class:`~gateway.console.auth.SigninThrottle`)."""
        if method == "GET":
            return self._page(200, "Sign in", views.signin(), None)
        if method != "POST":
            raise ConsoleError(405, "method not allowed")
        if not auth.same_origin(request):
            raise ConsoleError(403, "sign-in must be posted from this console's own page")
        if b"?" in (request.uri or b""):
            raise ConsoleError(400, "the token goes in the form body, never in the URL")
        principal = self._principal(request, _form(request).get("token", ""))
        if principal is None:
            return self._page(401, "Sign in", views.signin("wrong token"), None)
        sid = self.sessions.create(principal)
        cookie = auth.cookie_header(request, sid,
                                    secure=self.config.gateway.console_cookie_secure)
        return Page(303, b"", [(b"Location", b"/console/"), (b"Set-Cookie", cookie)])

    def _principal(self, request: server.Request, token: str) -> auth.Principal | None:
        """The principal ``token`` names, through the per-address backoff: the sign-in
        form and ``Authorization: Bearer`` on console pages alike (one cannot be used to
        go around the other's backoff). 429 while the address must wait."""
        address = client_of(request) or "local"
        wait = self.signins.wait(address)
        if wait > 0:
            self.signins.refused(address)
            raise ConsoleError(429, "too many failed sign-ins from your address: wait "
                                    f"{math.ceil(wait)} s",
                               [(b"Retry-After", str(math.ceil(wait)).encode("ascii"))])
        principal = auth.principal_for_token(self.config, token) if token else None
        if principal is None:
            self.signins.failed(address)
        return principal

    def _signout(self, request: server.Request) -> Page:
        if not auth.same_origin(request):
            raise ConsoleError(403, "sign-out must be posted from this console's own page")
        sid = request.getCookie(auth.COOKIE.encode())
        self.sessions.drop(sid.decode("ascii", "replace") if sid else None)
        cookie = auth.cookie_header(request, "", max_age=0,
                                    secure=self.config.gateway.console_cookie_secure)
        return Page(303, b"", [(b"Location", b"/console/signin"), (b"Set-Cookie", cookie)])

    # -- pages ---------------------------------------------------------------------------

    async def _search(self, request: server.Request, caller: Caller) -> Page:
        q = _args(request).get("q", "").strip()[:255]
        eid = caller.principal.eid
        found = await self.store.find_reservations(q, eid=eid) if q else None
        recent = await self.store.search_journal(JournalQuery(eid=eid, limit=PAGE_ENTRIES))
        return self._page(200, "Search", views.search(q, found, recent.entries,
                                                      caller.principal), caller)

    async def _reservation(self, request: server.Request, caller: Caller) -> Page:
        args = _args(request)
        eid, rno = _eid(args.get("eid")), args.get("rno", "")
        if eid is None or not rno or not caller.principal.may_see(eid):
            raise ConsoleError(404, "no such reservation")
        res = await self.store.get_reservation(eid, rno)
        if res is None:
            raise ConsoleError(404, "no such reservation")
        invoices = await self.store.invoices_for(res.id)
        before = _cursor(args.get("cursor"))
        page = await self.store.search_journal(JournalQuery(
            eid=eid, reservation=ReservationScope(res.rno, res.order_id,
                                                  tuple(i.invno for i in invoices)),
            before=before, limit=PAGE_ENTRIES))
        order, error = await self._read_order(res)
        view = views.ReservationView(res, invoices, order, error, page.entries,
                                     page.next_before)
        return self._page(200, f"Reservation {res.rno}", views.reservation(view), caller)

    async def _journal(self, request: server.Request, caller: Caller) -> Page:
        args = _args(request)
        params = {k: v for k, v in args.items() if k in js.FILTERS + ("cursor",)}
        entries: Sequence[JournalEntry] = ()
        next_before, error = None, None
        try:
            search = js.parse_query({**params, "limit": str(PAGE_ENTRIES)}, formats=("json",),
                                    eid=caller.principal.eid)
            if search.query.eid is not None:  # the API's and the CLI's check
                inputs.merchant(self.config, search.query.eid)
            page = await self.store.search_journal(search.query)
            entries, next_before = page.entries, page.next_before
        except (js.FilterError, inputs.InputError) as e:
            error = str(e)
        return self._page(400 if error else 200, "Journal",
                          views.journal_page(params, entries, next_before, error), caller)

    async def _pending(self, request: server.Request, caller: Caller) -> Page:
        page = await self.store.search_journal(JournalQuery(
            eid=caller.principal.eid, state=EntryState.PENDING, limit=200))
        now = self.clock.seconds()
        running = [e for e in page.entries if e.phase is Phase.RUNNING and e.until is not None
                   and e.until > now]
        unresolved = [e for e in page.entries if e not in running]
        return self._page(200, "Pending and unresolved calls",
                          views.pending(running, unresolved), caller)

    async def _discrepancies(self, request: server.Request, caller: Caller) -> Page:
        reservations, capped = await self._in_scope(caller, lambda r: True)
        found = await _bounded(reservations, self._compare)
        problems = [p for ps in found for p in ps]
        for entry in await self.store.unfinished_entries(eid=caller.principal.eid):
            problems.append(Discrepancy(entry.eid, entry.rno or "", entry.order_id or "",
                                        f"unfinished {entry.method} (journal {entry.id})",
                                        "pending", "unknown"))
        return self._page(200, "Discrepancies",
                          views.discrepancies(problems, len(reservations), capped), caller)

    async def _compare(self, res: Reservation) -> list[Discrepancy]:
        order, error = await self._read_order(res)
        if order is None:
            return [Discrepancy(res.eid, res.rno, res.order_id, "order unreadable",
                                "registered", error or "")]
        problems = differences(res, order, await self.store.invoices_for(res.id),
                               await self.store.known_refund_ids(res.order_id))
        if order.get("status") != res.status:
            problems.insert(0, Discrepancy(res.eid, res.rno, res.order_id,
                                           "status (reconcile updates it)",
                                           res.status or "-", str(order.get("status"))))
        return problems

    async def _expiring(self, request: server.Request, caller: Caller) -> Page:
        days = _int(_args(request).get("days") or "3")
        if days is None or not 1 <= days <= 365:
            raise ConsoleError(400, "days must be a whole number from 1 to 365")
        open_statuses = {None, *expiry.OPEN_STATUSES}
        reservations, capped = await self._in_scope(caller,
                                                    lambda r: r.status in open_statuses)
        found = await expiry.scan(self.config, self.om, reservations, self.clock,
                                  concurrency=CONCURRENCY, read_seconds=READ_SECONDS)
        items = found.within(days * 86400)
        errors = [(u.reservation, u.reason) for u in found.unreadable]
        return self._page(200, "Expiring authorizations",
                          views.expiring(days, items, errors, len(reservations), capped),
                          caller)

    async def _digest_form(self, request: server.Request, caller: Caller) -> Page:
        return self._page(200, "Digest self-test", views.digest_form(""), caller)

    async def _digest_check(self, request: server.Request, caller: Caller) -> Page:
        if caller.by_cookie and not auth.same_origin(request):
            raise ConsoleError(403, "the form must be posted from this console's own page")
        text = _args(request).get("request", "")
        if len(text) > self.config.gateway.max_body_bytes:
            raise ConsoleError(413, "the request is larger than the gateway accepts")
        body = request_bytes(text)
        verdict = check_digest(body, self.config, self.registry,
                               only_eid=caller.principal.eid)
        explanation: Explanation | None = None
        explain_error: str | None = None
        if verdict.problem is None and not verdict.matches:
            explain_error = "fault 9114: the gateway refuses a call whose digest does not match"
        elif verdict.problem is None:
            try:
                explanation = await self.explainer.explain(body)
            except GatewayError as e:
                explain_error = f"fault {int(e.fault_code)}: {e.fault_string}"
            except OmError as e:
                explain_error = f"Klarna could not be read: {_om_error(e)}"
        result = views.digest_result(verdict, explanation, explain_error)
        body_html = Html(views.digest_form(text) + h("<h2>Result</h2>") + result)
        return self._page(200, "Digest self-test", body_html, caller)

    # -- helpers -------------------------------------------------------------------------

    async def _in_scope(self, caller: Caller, keep: Callable[[Reservation], bool],
                        ) -> tuple[list[Reservation], bool]:
        """The caller's reservations worth a Klarna read, newest first, capped."""
        found = [r for r in await self.store.list_reservations(caller.principal.eid)
                 if keep(r)]
        found.reverse()
        return found[:KLARNA_READS], len(found) > KLARNA_READS

    async def _read_order(self, res: Reservation) -> tuple[dict[str, Any] | None, str | None]:
        merchant = self.config.merchant(res.eid)
        if merchant is None:
            return None, f"eid {res.eid} is not configured"
        try:
            order = await self.om.get_order(merchant, res.order_id,
                                            deadline=self.clock.seconds() + READ_SECONDS)
        except OmError as e:
            return None, _om_error(e)
        return order, None


_om_error = expiry.om_error_text


async def _bounded(items: Sequence[Any],
                   fn: Callable[[Any], Coroutine[defer.Deferred[Any], Any, T]]) -> list[T]:
    """``fn`` over ``items``, at most :data:`CONCURRENCY` at a time, results in order."""
    return await expiry.bounded(items, fn, CONCURRENCY)


def _args(request: server.Request) -> dict[str, str]:
    """Query string and form fields, first value of each, as text; a value that does not
    percent-decode to UTF-8 is a 400."""
    return _first_values(request.args or {})


def _form(request: server.Request) -> dict[str, str]:
    """The form body's fields only (never the query string: sign-in's token)."""
    content = request.content
    if content is None:
        return {}
    content.seek(0)
    return _first_values(parse_qs(content.read(), keep_blank_values=True))


def _first_values(args: dict[bytes, list[bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for key, values in args.items():
            if values:
                out.setdefault(key.decode("utf-8"), values[0].decode("utf-8"))
    except UnicodeDecodeError:
        raise ConsoleError(400, "the query or form does not percent-decode to UTF-8") from None
    return out


def _eid(text: str | None) -> int | None:
    """An eid as every entry point reads it (:func:`gateway.tools.inputs.parse_eid`)."""
    try:
        return inputs.parse_eid(text)
    except inputs.InputError:
        return None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) < 16 else None


def _cursor(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return js.decode_cursor(text)
    except js.FilterError as e:
        raise ConsoleError(400, str(e)) from None


class AdminListener(Resource):
    """The admin listener's root: ``/console…`` to the console, everything else to the
    admin API exactly as before (its routes see the full path)."""

    isLeaf = True

    def __init__(self, admin: Resource, console: ConsoleResource) -> None:
        super().__init__()
        self.admin = admin
        self.console = console

    def render(self, request: server.Request) -> Any:
        postpath, prepath = request.postpath or [], request.prepath
        if postpath[:1] == [b"console"] and prepath is not None:
            prepath.append(postpath.pop(0))
            return self.console.render(request)
        return self.admin.render(request)



def is_console_path(path: bytes) -> bool:
    """Whether :class:`AdminListener` hands ``path`` to the console (its first segment,
    percent-decoded, is ``console``)."""
    segments = path.split(b"/", 2)
    return len(segments) > 1 and segments[0] == b"" and unquote_to_bytes(segments[1]) == \
        b"console"


def access_log_line(timestamp: str, request: server.Request) -> str:
    """The admin listener's access log line (Twisted's combined format), with the query
    string of a console path replaced by ``?<redacted>``: a sign-in token, a search for a
    customer's order number or a pasted digest never reaches the log."""
    uri = request.uri or b""
    if b"?" in uri and is_console_path(request.path or uri):
        return combinedLogFormatter(timestamp, _WithUri(request, uri.split(b"?", 1)[0]
                                                        + b"?<redacted>"))
    return combinedLogFormatter(timestamp, request)


class _WithUri:
    """A request as the log formatter sees it, with another ``uri``."""

    def __init__(self, request: server.Request, uri: bytes) -> None:
        self._request = request
        self.uri = uri

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)
