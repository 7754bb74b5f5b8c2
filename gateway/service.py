"""The composition root: the only place that builds the gateway's objects.

``Gateway.start()`` brings up, in order: the in-process sandbox (with ``--sandbox``), the
database (schema checked; a single-process SQLite store is upgraded in place), the REST
client, the call engine, the XML-RPC listener and the admin listener, then recovers
unfinished journal entries in the background. ``stop()`` closes listeners first and the
database last. The CLI and the tests use this same path; there is no second way to start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web import server

from gateway.admin import AdminResource
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.engine import CallEngine
from gateway.legacy.resource import LegacyResource, make_site
from gateway.om.client import OmClient
from gateway.store import schema
from gateway.store.database import Database
from gateway.store.store import Store

log = Logger()

#: Seconds between sweeps for unfinished journal entries whose lease has lapsed.
RECOVERY_INTERVAL = 5.0


@dataclass
class GatewayOptions:
    listen: str = "tcp:8080"
    admin_listen: str = "tcp:8081:interface=127.0.0.1"
    sandbox_listen: str | None = None  # set → run the sandbox in-process
    db_url: str = "sqlite:///gateway.db"
    upgrade_sqlite: bool = True
    recover: bool = True


def _url_of(port: IListeningPort) -> str:
    host = port.getHost()
    addr = "127.0.0.1" if host.host in ("0.0.0.0", "::", "") else host.host
    return f"http://{addr}:{host.port}"


class Gateway:
    """A running gateway: listeners, engine, store, and (optionally) the sandbox."""

    def __init__(self, config: Config, options: GatewayOptions, reactor: Any) -> None:
        self.config = config
        self.options = options
        self.reactor = reactor
        self.ports: list[IListeningPort] = []
        self.sandbox_port: IListeningPort | None = None
        self.sandbox_url: str | None = None
        self.db: Database | None = None
        self.store: Store | None = None
        self.om: OmClient | None = None
        self.engine: CallEngine | None = None
        self.legacy_port: IListeningPort | None = None
        self.admin_port: IListeningPort | None = None
        self.recovery: defer.Deferred[Any] | None = None
        self.recovery_loop: task.LoopingCall | None = None

    @property
    def legacy_url(self) -> str:
        assert self.legacy_port is not None
        return _url_of(self.legacy_port) + "/"

    @property
    def admin_url(self) -> str:
        assert self.admin_port is not None
        return _url_of(self.admin_port)

    async def start(self) -> None:
        opts = self.options
        if opts.sandbox_listen is None and not self.config.admin_token_configured:
            raise ConfigError("set admin_token, admin_token_env or admin_token_file: the "
                              "admin API must not run with the demo token outside --sandbox",
                              "gateway.admin_token")
        if opts.sandbox_listen is not None:
            from gateway.sandbox.service import listen_sandbox

            self.sandbox_port = await listen_sandbox(self.reactor, self.config,
                                                     opts.sandbox_listen)
            self.sandbox_url = _url_of(self.sandbox_port)
            self.config = self.config.with_base_url(self.sandbox_url)
            log.info("sandbox listening on {url}", url=self.sandbox_url)
        self.db = Database(opts.db_url, self.reactor)
        if self.db.is_sqlite and opts.upgrade_sqlite:
            await self.db.run_interaction("noop", lambda conn: None)
            await _in_thread(self.reactor, schema.upgrade, self.db.engine)
        else:
            await _in_thread(self.reactor, schema.check, self.db.engine)
        s = self.config.gateway
        self.store = Store(self.db, self.reactor, rno_start=s.rno_start,
                           invno_start=s.invno_start)
        await self.store.install_id()
        self.om = OmClient(self.reactor, timeout=s.rest_timeout_seconds)
        self.engine = CallEngine(self.config, self.store, self.om, self.reactor)
        legacy = LegacyResource(self.engine.dispatch, max_body_bytes=s.max_body_bytes,
                                max_depth=s.max_xml_depth)
        self.legacy_port = await serverFromString(self.reactor, opts.listen).listen(
            make_site(legacy, max_body_bytes=s.max_body_bytes))
        admin = AdminResource(self.config, self.store, self.om,
                              sandbox_mode=opts.sandbox_listen is not None)
        self.admin_port = await serverFromString(self.reactor, opts.admin_listen).listen(
            server.Site(admin))
        log.info("legacy XML-RPC listening on {url}; admin API on {admin}",
                 url=self.legacy_url, admin=self.admin_url)
        if opts.recover:
            # Periodically (and at once unless recover_on_start is off): entries whose lease
            # lapsed (a dead process, a client that never retried) are finished without
            # waiting for anyone, so unresolved money never blocks an order for long.
            self.recovery_loop = task.LoopingCall(self._recover_once)
            self.recovery_loop.clock = self.reactor
            self.recovery_loop.start(RECOVERY_INTERVAL, now=s.recover_on_start)

    def _recover_once(self) -> defer.Deferred[Any]:
        from gateway.recovery import recover_unfinished

        assert self.engine is not None and self.store is not None
        if self.recovery is not None and not self.recovery.called:
            return defer.succeed(None)
        self.recovery = defer.ensureDeferred(recover_unfinished(self.engine, self.store))
        self.recovery.addErrback(lambda f: log.failure("recovery failed", f))
        return defer.succeed(None)

    async def stop(self) -> None:
        if self.recovery_loop is not None and self.recovery_loop.running:
            self.recovery_loop.stop()
        for port in (self.legacy_port, self.admin_port, self.sandbox_port):
            if port is not None:
                await port.stopListening()
        if self.recovery is not None and not self.recovery.called:
            self.recovery.cancel()
        if self.om is not None:
            await self.om.close()
        if self.db is not None:
            self.db.stop()


def _in_thread(reactor: Any, fn: Any, *args: Any) -> defer.Deferred[Any]:
    from twisted.internet import threads

    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)
