"""The running gateway: its listeners around the parts :func:`gateway.app.build` makes.

``Gateway.start()`` brings up, in order: the in-process sandbox (with ``--sandbox``), the
parts (database with its schema checked, or upgraded in place for a single-process SQLite
store; REST client; engine), the XML-RPC listener and the admin listener, then recovers
unfinished journal entries in the background. ``stop()`` closes listeners first and the
database last, and a start that fails half-way stops what it had started. The CLI and the
tests use this same path; there is no second way to start.
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
from gateway.app import Components, SchemaMode, build
from gateway.config import Config
from gateway.console import AdminListener, ConsoleResource
from gateway.engine.recovery import recover_unfinished
from gateway.errors import ConfigError
from gateway.legacy.resource import LegacyResource, make_site

log = Logger()

#: Seconds between sweeps for unfinished journal entries whose lease has lapsed.
RECOVERY_INTERVAL = 5.0


@dataclass
class GatewayOptions:
    listen: str = "tcp:8080"
    admin_listen: str = "tcp:8081:interface=127.0.0.1"
    sandbox_listen: str | None = None  # set → run the sandbox in-process
    sandbox_seed: int | None = None  # None: [sandbox] seed from the config
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
        self.parts: Components | None = None
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

            self.sandbox_port = await listen_sandbox(self.reactor, self.config,
                                                     opts.sandbox_listen,
                                                     seed=opts.sandbox_seed)
            self.sandbox_url = _url_of(self.sandbox_port)
            self.config = self.config.with_base_url(self.sandbox_url)
            log.info("sandbox listening on {url}", url=self.sandbox_url)
        sqlite = opts.db_url.startswith("sqlite")
        self.parts = parts = await build(
            self.config, opts.db_url, self.reactor,
            schema_mode=SchemaMode.UPGRADE if sqlite and opts.upgrade_sqlite
            else SchemaMode.CHECK)
        s = self.config.gateway
        legacy = LegacyResource(parts.legacy_dispatch(), max_body_bytes=s.max_body_bytes,
                                max_depth=s.max_xml_depth,
                                eid_of=parts.authenticator.eid_of)
        self.legacy_port = await serverFromString(self.reactor, opts.listen).listen(
            make_site(legacy, max_body_bytes=s.max_body_bytes))
        admin = AdminResource(self.config, parts.store, parts.om,
                              sandbox_mode=opts.sandbox_listen is not None)
        console = ConsoleResource(parts, clock=self.reactor)
        self.admin_port = await serverFromString(self.reactor, opts.admin_listen).listen(
            server.Site(AdminListener(admin, console)))
        log.info("legacy XML-RPC listening on {url}; admin API on {admin}",
                 url=self.legacy_url, admin=self.admin_url)
        if opts.recover:
            # Periodically (and at once unless recover_on_start is off): entries whose lease
            # lapsed (a dead process, a client that never retried) are finished without
            # waiting for anyone, so unresolved money never blocks an order for long.
            self.recovery_loop = task.LoopingCall(self._recover_once)
            self.recovery_loop.clock = self.reactor
            self.recovery_loop.start(RECOVERY_INTERVAL, now=s.recover_on_start)

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
        self.recovery = defer.ensureDeferred(recover_unfinished(self.parts.engine))
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
        if self.parts is not None:
            await self.parts.close()
            self.parts = None
