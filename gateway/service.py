"""The running gateway: its listeners around the parts :func:`gateway.app.build` makes.

``Gateway.start()`` brings up, in order: the in-process sandbox (with ``--sandbox``), the
parts (database with its schema checked, or upgraded in place for a single-process SQLite
store; REST client; engine), the XML-RPC listener and the admin listener (each bounded by
``gateway.web``: a deadline per request, an idle timeout, a connection cap, credentials
before any body byte), then recovers unfinished journal entries in the background and
refreshes the expiring-authorizations gauge (``gateway.tools.expiring.ExpiryWatch``).

``stop()`` drains: it stops accepting, lets calls in flight finish for up to the retry
budget plus a margin (a call cut off then is no worse than a killed one: its journal entry
is resumed by the next process), then closes the database. A start that fails half-way
stops what it had started. The CLI and the tests use this same path.
"""
from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger

from gateway import files
from gateway.admin import AdminResource
from gateway.app import Components, build
from gateway.calls import REGISTRY
from gateway.config import Config, weak_tokens
from gateway.console import AdminListener, ConsoleResource
from gateway.console.resource import access_log_line
from gateway.edge.resource import CallRecord, LegacyResource, make_site
from gateway.engine.recovery import recover_unfinished
from gateway.errors import ConfigError
from gateway.metrics import Metrics
from gateway.recurring.resource import EdgeRoot, RecurringResource
from gateway.recurring.service import RecurringService
from gateway.replay.recording import RecordingWriter
from gateway.store.health import oldest_pending_age
from gateway.store.database import caused_by_database
from gateway.store.models import SCHEMA_HEAD
from gateway.store.ratelimit import REFRESH_SECONDS as PAUSE_REFRESH_SECONDS
from gateway.store.ratelimit import SharedRateLimiter
from gateway.store.schema import SchemaMode
from gateway.tools.expiring import ExpiryWatch
from gateway.web import ListenerLimits, Refusal, RefusalReason, guarded_site

log = Logger()

#: Seconds between sweeps for unfinished journal entries whose lease has lapsed.
RECOVERY_INTERVAL = 5.0
#: Seconds between refreshes of the journal gauges (pending, unresolved).
GAUGE_INTERVAL = 15.0
#: /readyz answers within this, database or not (a probe that hangs tells nobody anything).
READINESS_SECONDS = 3.0
#: Admin paths that need no bearer token, exactly these (probes); and the console's own
#: ``/console`` and ``/console/…`` (it signs its users in itself), nothing that merely
#: starts with one of them.
_OPEN_ADMIN_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics", b"/console"})
_CONSOLE_TREE = b"/console/"
_CONSOLE_SIGNIN = b"/console/signin"
#: The console's session cookie as it appears in a ``Cookie`` header.
_CONSOLE_COOKIE = b"kgw_console="


@dataclass
class GatewayOptions:
    listen: str = "tcp:8080"
    admin_listen: str = "tcp:8081:interface=127.0.0.1"
    sandbox_listen: str | None = None  # set → run the sandbox in-process
    sandbox_seed: int | None = None  # None: [sandbox] seed from the config
    db_url: str = "sqlite:///gateway.db"
    upgrade_sqlite: bool = True
    recover: bool = True
    #: ``serve --record DIR``: every legacy exchange written there (gateway.replay.recording)
    record_dir: str | None = None
    record_max_bytes: int = 64 << 20


def _unix_name(address: Any) -> str:
    name = getattr(address, "name", address)
    return name.decode() if isinstance(name, bytes) else str(name)


def _url_of(port: IListeningPort) -> str:
    """A URL a local client can use (``0.0.0.0`` → 127.0.0.1), or ``unix:PATH``."""
    host = port.getHost()
    if not hasattr(host, "port"):
        return f"unix:{_unix_name(host)}"
    addr = "127.0.0.1" if host.host in ("0.0.0.0", "::", "") else host.host
    return f"http://{addr}:{host.port}"


def describe(port: IListeningPort) -> str:
    """What the port really is bound to, for the start-up lines (all interfaces said)."""
    host = port.getHost()
    if not hasattr(host, "port"):
        return f"unix:{_unix_name(host)}"
    scope = " (all interfaces)" if host.host in ("0.0.0.0", "::", "") else ""
    return f"{host.host}:{host.port}{scope}"


def redact_url(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - never let a display helper break start-up
        return url.split("@")[-1]


async def _as_flag(flag: str, listening: Awaitable[IListeningPort]) -> IListeningPort:
    """The port ``listening`` gives; a port that cannot be bound names the flag that chose
    it (``CannotListenError.flag``), so the error can say which flag to change."""
    try:
        return await listening
    except CannotListenError as e:
        e.flag = flag  # type: ignore[attr-defined]
        raise


class Gateway:
    """A running gateway: listeners, engine, store, and (optionally) the sandbox."""

    def __init__(self, config: Config, options: GatewayOptions, reactor: Any) -> None:
        self.config = config
        self.options = options
        self.reactor = reactor
        self.ports: list[IListeningPort] = []
        self.sandbox_port: IListeningPort | None = None
        self.sandbox_url: str | None = None
        self.parts: Components | None = None
        self.legacy_port: IListeningPort | None = None
        self.admin_port: IListeningPort | None = None
        self.admin_resource: Any = None
        self.recovery: defer.Deferred[Any] | None = None
        self.recovery_loop: task.LoopingCall | None = None
        self.gauge_loop: task.LoopingCall | None = None
        self.pause_loop: task.LoopingCall | None = None
        #: Refreshes the expiring-authorizations gauge in the background (None: off).
        self.expiry: ExpiryWatch | None = None
        self.metrics = Metrics()
        self.legacy: LegacyResource | None = None
        self.recorder: RecordingWriter | None = None
        self.draining = False
        self.last_recovery: float | None = None
        self.recovery_started: float | None = None

    @property
    def legacy_url(self) -> str:
        assert self.legacy_port is not None
        url = _url_of(self.legacy_port)
        return url if url.startswith("unix:") else url + "/"

    @property
    def admin_url(self) -> str:
        assert self.admin_port is not None
        return _url_of(self.admin_port)

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        opts = self.options
        if opts.sandbox_listen is None and not self.config.admin_token_configured:
            raise ConfigError("set admin_token, admin_token_env or admin_token_file: the "
                              "admin API must not run with the demo token outside --sandbox",
                              "gateway.admin_token")
        if opts.sandbox_listen is not None:
            from gateway.sandbox.service import listen_sandbox

            self.sandbox_port = await _as_flag("--sandbox-listen", listen_sandbox(
                self.reactor, self.config, opts.sandbox_listen, seed=opts.sandbox_seed))
            self.sandbox_url = _url_of(self.sandbox_port)
            self.config = self.config.with_base_url(self.sandbox_url)
            log.info("sandbox listening on {url}", url=self.sandbox_url)
        self._warn_about_secrets_at_rest()
        sqlite = opts.db_url.startswith("sqlite")
        self.parts = parts = await build(
            self.config, opts.db_url, self.reactor,
            schema_mode=SchemaMode.UPGRADE if sqlite and opts.upgrade_sqlite
            else SchemaMode.CHECK, metrics=self.metrics)
        s = self.config.gateway
        limits = ListenerLimits(request_deadline_seconds=s.request_deadline_seconds,
                                idle_timeout_seconds=s.idle_timeout_seconds,
                                max_connections=s.max_connections)
        if opts.record_dir is not None:
            self.recorder = RecordingWriter(opts.record_dir, max_bytes=opts.record_max_bytes,
                                            source="serve")
            self.recorder.start()
            log.info("recording legacy exchanges to {dir}", dir=opts.record_dir)
        self.legacy = legacy = LegacyResource(
            parts.dispatch, max_body_bytes=s.max_body_bytes,
            max_depth=s.max_xml_depth, eid_of=parts.authenticator.eid_of,
            on_call=self._observe_call, clock=self.reactor,
            on_exchange=self.recorder.submit if self.recorder is not None else None)
        recurring = RecurringService(parts.config, parts.store, parts.om, parts.engine)
        edge = EdgeRoot(legacy, RecurringResource(recurring, max_body_bytes=s.max_body_bytes))
        self.legacy_port = await _as_flag("--listen", serverFromString(
            self.reactor, opts.listen).listen(make_site(
                edge, max_body_bytes=s.max_body_bytes, limits=limits, reactor=self.reactor)))
        self.admin_resource = admin = AdminResource(
            self.config, parts.store, parts.om, sandbox_mode=opts.sandbox_listen is not None,
            metrics=self.metrics, readiness=self.readiness)
        console = ConsoleResource(parts.config, parts.store, parts.om, parts.registry,
                                  parts.explainer, clock=self.reactor)
        self.admin_port = await _as_flag("--admin-listen", serverFromString(
            self.reactor, opts.admin_listen).listen(admin_site(
                AdminListener(admin, console), self.config.gateway.admin_token,
                replace(limits, max_body_bytes=1 << 20), self.reactor)))
        log.info("legacy XML-RPC on {legacy}; admin API on {admin}; database {db}",
                 legacy=describe(self.legacy_port), admin=describe(self.admin_port),
                 db=redact_url(opts.db_url))
        self.metrics.give_up_seconds(s.give_up_seconds)
        if s.expiry_check_seconds > 0:
            self.expiry = ExpiryWatch(self.config, parts.store, parts.om, self.metrics,
                                      self.reactor)
            self.expiry.start(s.expiry_check_seconds)
        if opts.recover:
            # Periodically (and at once unless recover_on_start is off): entries whose lease
            # lapsed (a dead process, a client that never retried) are finished without
            # waiting for anyone, so unresolved money never blocks an order for long.
            self.recovery_loop = task.LoopingCall(self._recover_once)
            self.recovery_loop.clock = self.reactor
            self.recovery_loop.start(RECOVERY_INTERVAL, now=s.recover_on_start)
        if isinstance(parts.limiter, SharedRateLimiter):
            # Retry-After pauses other processes met, for merchants without a rate limit
            # (a limited merchant's slots read them from the store anyway).
            self.pause_loop = task.LoopingCall(self._refresh_pauses)
            self.pause_loop.clock = self.reactor
            self.pause_loop.start(PAUSE_REFRESH_SECONDS, now=True)
        # Last: the first refresh reads readiness, which needs recovery's loop running.
        self.gauge_loop = task.LoopingCall(self._refresh_gauges)
        self.gauge_loop.clock = self.reactor
        self.gauge_loop.start(GAUGE_INTERVAL, now=True)

    def _refresh_pauses(self) -> defer.Deferred[Any]:
        if self.parts is not None and isinstance(self.parts.limiter, SharedRateLimiter):
            defer.ensureDeferred(self.parts.limiter.refresh())
        return defer.succeed(None)  # a slow database never stalls the loop

    def _warn_about_secrets_at_rest(self) -> None:
        """Warnings, never refusals: an existing SQLite database others can read (it holds
        personal data), and guessable console sign-in tokens (``config check`` names them)."""
        path = files.sqlite_file(self.options.db_url)
        if path is not None and files.readable_by_others(path):
            log.warn("the database {path} is readable by others (mode {mode}): it holds "
                     "personal data; chmod 600 {path} (new databases are created 0600)",
                     path=path, mode=oct(os.stat(path).st_mode & 0o777))
        for token in weak_tokens(self.config, admin=self.options.sandbox_listen is None):
            log.warn("{token}", token=str(token))

    def _observe_call(self, record: CallRecord) -> None:
        method = record.method
        if method is not None and method not in REGISTRY.served \
                and method not in REGISTRY.not_offered:
            method = "unknown"  # a label value per name a client makes up would be unbounded
        self.metrics.legacy_call(method, record.fault_code, record.duration,
                                 replayed=bool(record.context.get("replayed")))

    async def refresh_gauges(self) -> None:
        """The journal gauges, and ``ready`` (so it is current without /readyz polled):
        every :data:`GAUGE_INTERVAL` seconds, or now (tests). Never raises."""
        await self.readiness()
        if self.parts is None:
            return
        try:
            self.metrics.journal(*await self.parts.store.journal_counts())
            self.metrics.oldest_pending(await self.parts.db.run_interaction(
                "journal_oldest_pending", oldest_pending_age, self.reactor.seconds()))
        except Exception as e:  # noqa: BLE001 - the gauges keep their last values
            if caused_by_database(e):
                self.metrics.database_error("background")
            log.warn("journal gauges not refreshed: {e}", e=e)

    def _refresh_gauges(self) -> defer.Deferred[Any]:
        defer.ensureDeferred(self.refresh_gauges())
        return defer.succeed(None)

    async def readiness(self) -> dict[str, Any]:
        """Ready: database reachable, at this code's schema and taking writes, recovery
        sweeping (its last sweep recent), and not draining. Answered within
        :data:`READINESS_SECONDS` whatever the database does."""
        state: dict[str, Any] = {"draining": self.draining}
        try:
            asked = defer.ensureDeferred(self.store.schema_revision())
            revision = await asked.addTimeout(READINESS_SECONDS, self.reactor)
            failing = self.parts.db.writes_failing() if self.parts is not None else None
            state["database"] = f"schema {revision}" if revision != SCHEMA_HEAD else \
                f"writes failing: {failing}" if failing else "ok"
        except defer.TimeoutError:
            state["database"] = f"unreachable: no answer within {READINESS_SECONDS:g} s"
            self.metrics.database_error("readiness")
        except Exception as e:  # noqa: BLE001 - any failure means not ready
            state["database"] = f"unreachable: {type(e.__cause__ or e).__name__}"
            self.metrics.database_error("readiness")
        running = self.recovery_loop is not None and self.recovery_loop.running
        state["recovery"] = "ok" if running and self._sweeping_on_schedule() else \
            "not running" if not running else "stalled"
        state["ready"] = (state["database"] == "ok" and state["recovery"] == "ok"
                          and not self.draining)
        self.metrics.readiness(state["ready"])
        return state

    def _sweeping_on_schedule(self) -> bool:
        """Recovery's last sweep ended recently, or the one under way (the first one, right
        after start) began recently; stalled only when neither is so."""
        if self.recovery is None:
            return True  # recover_on_start off: the first sweep is not due yet
        now, limit = self.reactor.seconds(), 4 * RECOVERY_INTERVAL + 60
        if self.last_recovery is not None and now - self.last_recovery < limit:
            return True
        return not self.recovery.called and self.recovery_started is not None \
            and now - self.recovery_started < limit

    @property
    def store(self) -> Any:
        assert self.parts is not None
        return self.parts.store

    @property
    def engine(self) -> Any:
        assert self.parts is not None
        return self.parts.engine

    def _recover_once(self) -> defer.Deferred[Any]:
        assert self.parts is not None
        if self.recovery is not None and not self.recovery.called:
            return defer.succeed(None)
        self.recovery_started = self.reactor.seconds()
        self.recovery = defer.ensureDeferred(recover_unfinished(self.parts.engine))
        self.recovery.addCallback(self._recovered)
        self.recovery.addErrback(self._recovery_failed)
        return defer.succeed(None)

    def _recovered(self, _: Any) -> None:
        self.last_recovery = self.reactor.seconds()

    def _recovery_failed(self, failure: Any) -> None:
        if caused_by_database(failure.value):
            self.metrics.database_error("background")
        log.failure("recovery failed", failure)

    async def stop(self) -> None:
        """Drain, then close: listeners stop accepting, calls in flight get up to the retry
        budget plus a margin to finish, then the database closes."""
        self.draining = True
        self.metrics.readiness(False)
        for loop in (self.recovery_loop, self.gauge_loop, self.pause_loop):
            if loop is not None and loop.running:
                loop.stop()
        if self.expiry is not None:
            self.expiry.stop()
        ports = [p for p in (self.legacy_port, self.admin_port, self.sandbox_port) if p]
        self.legacy_port = self.admin_port = self.sandbox_port = None
        for port in ports:
            await port.stopListening()
        if self.legacy is not None:
            budget = self.config.gateway.retry_budget_seconds
            left = await self.legacy.drain(self.reactor, budget + 2.0)
            if left:
                log.warn("stopped with {n} legacy call(s) unfinished; their journal entries "
                         "are resumed by the next process", n=left)
        if self.recorder is not None:
            # After the drain: every exchange answered is written before stop() returns.
            await self.recorder.close(self.reactor)
            self.recorder = None
        if self.recovery is not None and not self.recovery.called:
            self.recovery.cancel()
        if self.parts is not None:
            try:  # the last delivery reports, so no delivered reply is replayed after us
                await self.parts.store.flush_reports()
            except Exception:  # noqa: BLE001 - unwritten reports only cost a replay
                log.failure("writing the last delivery reports failed")
            await self.parts.close()
            self.parts = None


def _console_may_send_a_body(request: Any) -> bool:
    """Whether a request for the console's tree may be read past its head: one without a
    body, the sign-in form, or one that carries a session cookie or a bearer token (the
    console checks them itself). Anything else is a post from nobody, refused before any
    body byte is read rather than after reading up to ``max_body_bytes`` of it."""
    if request.method in (b"GET", b"HEAD") or request.path == _CONSOLE_SIGNIN:
        return True
    cookies = b";".join(request.requestHeaders.getRawHeaders(b"cookie", []))
    return (_CONSOLE_COOKIE in cookies
            or (request.getHeader(b"authorization") or b"").startswith(b"Bearer "))


def admin_site(admin: Any, token: str, limits: ListenerLimits, reactor: Any
               ) -> Any:
    """The admin listener: the bearer token is checked before any body byte is read, so an
    unauthenticated upload is answered 401 at once (the exact probe paths and the console's
    own tree excepted)."""
    want = f"Bearer {token}".encode()

    def authorize(request: Any) -> bool:
        path = request.path
        if path in _OPEN_ADMIN_PATHS:
            return True
        if path.startswith(_CONSOLE_TREE):
            return _console_may_send_a_body(request)
        return hmac.compare_digest(request.getHeader(b"authorization") or b"", want)

    def refusal(reason: RefusalReason, request: Any) -> Refusal:
        if (reason is RefusalReason.UNAUTHORIZED and request is not None
                and request.path.startswith(_CONSOLE_TREE)):
            # what the console itself answers a post from nobody: its sign-in page
            return Refusal(303, b"", [(b"Location", b"/console/signin")])
        messages = {RefusalReason.UNAUTHORIZED: "missing or wrong bearer token",
                    RefusalReason.TOO_LARGE: "request body too large",
                    RefusalReason.TIMEOUT: "request not received in time"}
        body = ('{"error": "%s"}' % messages.get(reason, "refused")).encode()
        headers = [(b"Content-Type", b"application/json")]
        if reason is RefusalReason.UNAUTHORIZED:
            headers.append((b"WWW-Authenticate", b"Bearer"))
        return Refusal(reason.value, body, headers)
    # The console's forms (sign-in, digest self-test) are form posts: parse them. The
    # access log keeps the query strings of console paths out (access_log_line).
    return guarded_site(admin, limits, authorize=authorize, refusal=refusal, reactor=reactor,
                        parse_form_bodies=True, log_formatter=access_log_line)
