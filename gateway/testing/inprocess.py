"""A Klarna sandbox, and a klarna-gateway in front of it, started inside the test process:
what the fixtures of :mod:`gateway.testing.pytest_plugin` yield (usable without pytest).

Both run on a private reactor on a background thread (:mod:`.reactor_thread`), so every
helper here is an ordinary blocking call (stdlib HTTP over loopback) and works the same in
a synchronous suite and under pytest-twisted, in ``def`` and ``async def`` tests alike;
so does the official SDK client :meth:`KlarnaGateway.sdk` returns.

The sandbox is seeded (reproducible ids, clock frozen at 2026-01-01T12:00:00Z, see the
sandbox README's "Seeded mode"); the helpers send the same requests in the same order run
after run (authorization tokens are numbered, not random), so a suite that does the same
gets the same order, capture and refund ids every run.

A start that fails after something was started stops it again: no port or thread is left
behind by a fixture that errored.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import Config, default_sandbox_config_path, load_config
from gateway.testing.processes import http, line, set_sdk_timeout
from gateway.testing.reactor_thread import ReactorThread

LOOPBACK = "tcp:0:interface=127.0.0.1"
#: Seconds a helper's HTTP request may take.
HTTP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Credentials:
    """A demo merchant: its legacy eid and shared secret, and its REST credentials."""

    eid: int
    shared_secret: str
    rest_username: str
    rest_password: str

    @property
    def rest_auth(self) -> tuple[str, str]:
        return self.rest_username, self.rest_password


@dataclass(frozen=True)
class Registered:
    """An order placed at the sandbox and registered at the gateway as a reservation."""

    eid: int
    rno: str
    order_id: str


def default_lines() -> list[dict[str, Any]]:
    """2 × ART-1 at 100.00 and 3 × ART-2 at 50.00 (SEK, 25 % VAT): 350.00 in all."""
    return [line("ART-1", "Blåbärssylt", 2, 10000), line("ART-2", "Lingon", 3, 5000)]


def _expect(status: int, body: Any, *wanted: int) -> Any:
    if status not in wanted:
        raise AssertionError(f"HTTP {status}: {body}")
    return body


class KlarnaSandbox:
    """A started sandbox (Order Management, Klarna Payments, control API) on loopback."""

    def __init__(self, config: Config, seed: int | None, runner: ReactorThread,
                 port: Any, *, owns_runner: bool) -> None:
        self.config = config
        self.seed = seed
        self.runner = runner
        self.port = port
        self._owns_runner = owns_runner
        host = port.getHost()
        self.url = f"http://{host.host}:{host.port}"
        self.admin_token = config.sandbox.admin_token
        self.merchants = {m.eid: Credentials(m.eid, m.shared_secret, m.rest_username,
                                             m.rest_password) for m in config.merchants}
        self._tokens = itertools.count(1)

    @classmethod
    def start(cls, seed: int | None = 0, config: Config | None = None,
              runner: ReactorThread | None = None) -> KlarnaSandbox:
        """Listen on a free loopback port. ``seed`` None: not seeded (random ids, a clock
        that ticks from the wall clock)."""
        from gateway.sandbox.service import listen_sandbox

        config = config or load_config(default_sandbox_config_path())
        owns = runner is None
        runner = runner or ReactorThread().start()
        port = None
        try:
            port = runner.call(listen_sandbox, runner.reactor, config, LOOPBACK, seed=seed)
            sandbox = cls(config, seed, runner, port, owns_runner=owns)
            sandbox.clock()  # it answers
            return sandbox
        except BaseException:
            if port is not None:
                runner.call(port.stopListening)
            if owns:
                runner.stop()
            raise

    def stop(self) -> None:
        """Stop listening (and the reactor thread, when this sandbox started it)."""
        try:
            if self.port is not None and self.runner.alive:
                self.runner.call(self.port.stopListening)
            self.port = None
        finally:
            if self._owns_runner:
                self.runner.stop()

    @property
    def resource(self) -> Any:
        """The sandbox's root resource (``on_response`` hook, state), for white-box checks."""
        return self.port.factory.resource

    def merchant(self, eid: int = 1234) -> Credentials:
        return self.merchants[eid]

    # -- Klarna's side ---------------------------------------------------------------------

    def create_order(self, eid: int = 1234, lines: list[dict[str, Any]] | None = None, *,
                     token: str | None = None, **extra: Any) -> str:
        """Place an order (Klarna Payments) → its order id. ``extra`` adds or overrides
        body fields (``auto_capture``, ``merchant_reference1``, ...); a ``pending-`` or
        ``rejected-`` token selects that outcome."""
        lines = lines if lines is not None else default_lines()
        body = {"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
                "order_amount": sum(ln["total_amount"] for ln in lines),
                "order_tax_amount": sum(ln["total_tax_amount"] for ln in lines),
                "order_lines": lines, **extra}
        token = token or f"kgw-test-auth-{next(self._tokens)}"
        status, _, answer = http("POST", f"{self.url}/payments/v1/authorizations/{token}/order",
                                 body, auth=self.merchant(eid).rest_auth, timeout=HTTP_TIMEOUT)
        return str(_expect(status, answer, 200)["order_id"])

    def order(self, order_id: str, eid: int = 1234) -> dict[str, Any]:
        """The order as Klarna holds it (``GET /ordermanagement/v1/orders/{id}``)."""
        status, _, answer = http("GET", f"{self.url}/ordermanagement/v1/orders/{order_id}",
                                 auth=self.merchant(eid).rest_auth, timeout=HTTP_TIMEOUT)
        return dict(_expect(status, answer, 200))

    # -- the control API -----------------------------------------------------------------

    def _control(self, method: str, path: str, body: Any = None, *wanted: int) -> Any:
        status, _, answer = http(method, f"{self.url}/sandbox/v1/{path}", body,
                                 bearer=self.admin_token, timeout=HTTP_TIMEOUT)
        return _expect(status, answer, *(wanted or (200,)))

    def fault(self, **spec: Any) -> str:
        """Install a fault (``path`` regex, ``action``, ``method``, ``status``, ``times``,
        ``delay_ms``, ``probability``) → its id."""
        return str(self._control("POST", "faults", spec, 201)["id"])

    def faults(self) -> list[dict[str, Any]]:
        return list(self._control("GET", "faults"))

    def clear_faults(self) -> None:
        self._control("DELETE", "faults", None, 204)

    def clock(self) -> dict[str, Any]:
        """``{"now": ISO-8601, "frozen": bool}``."""
        return dict(self._control("GET", "clock"))

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the sandbox clock (expiry, extension caps, idempotency windows) → the clock."""
        return dict(self._control("POST", "clock", {"advance_seconds": seconds}))

    def set_clock(self, now: str) -> dict[str, Any]:
        return dict(self._control("POST", "clock", {"now": now}))

    def operations(self, order_id: str) -> list[dict[str, Any]]:
        """Every mutation applied to the order, its creation included (exactly-once)."""
        return list(self._control("GET", f"orders/{order_id}/operations"))

    def set_fraud_status(self, order_id: str, fraud_status: str) -> dict[str, Any]:
        return dict(self._control("POST", f"orders/{order_id}/fraud_status",
                                  {"fraud_status": fraud_status}))

    def reset(self) -> None:
        """Forget orders, tokens, idempotency records and faults (seeded: ids and clock
        restart too, as if freshly started)."""
        self._control("POST", "reset", None, 204)
        self._tokens = itertools.count(1)


class KlarnaGateway:
    """A started gateway (legacy XML-RPC + admin API) whose merchants use ``sandbox``.

    It runs as in production (not ``serve --sandbox``): SQLite store in ``directory``,
    the demo merchants pointed at the sandbox, the admin API behind its bearer token.
    """

    def __init__(self, sandbox: KlarnaSandbox, gateway: Any, directory: Path) -> None:
        self.sandbox = sandbox
        self.gateway = gateway
        self.directory = directory
        self.url: str = gateway.legacy_url
        self.admin_url: str = gateway.admin_url
        self.admin_token: str = gateway.config.gateway.admin_token
        self.db_url: str = gateway.options.db_url
        self._clients: list[Any] = []

    @classmethod
    def start(cls, sandbox: KlarnaSandbox, directory: Path,
              db_url: str | None = None) -> KlarnaGateway:
        from gateway.service import Gateway, GatewayOptions

        config = sandbox.config.with_base_url(sandbox.url)
        options = GatewayOptions(listen=LOOPBACK, admin_listen=LOOPBACK,
                                 db_url=db_url or f"sqlite:///{directory}/gateway.db")
        gateway = Gateway(config, options, sandbox.runner.reactor)
        sandbox.runner.call(gateway.start)  # a start that fails stops what it started
        try:
            started = cls(sandbox, gateway, directory)
            started._probe()
            return started
        except BaseException:
            sandbox.runner.call(gateway.stop)
            raise

    def _probe(self) -> None:
        status, _, body = http("GET", self.admin_url + "/healthz", timeout=HTTP_TIMEOUT)
        _expect(status, body, 200)

    def stop(self) -> None:
        """Drain and close the gateway (its sandbox is stopped by whoever started it), and
        the connections of the SDK clients :meth:`sdk` made."""
        try:
            if self.sandbox.runner.alive:
                self.sandbox.runner.call(self.gateway.stop)
        finally:
            for k in self._clients:
                k.xmlrpc("close")()  # the SDK keeps its connection open (HTTP keep-alive)
            self._clients.clear()

    def merchant(self, eid: int = 1234) -> Credentials:
        return self.sandbox.merchant(eid)

    def register(self, order_id: str, eid: int = 1234, rno: str | None = None) -> Registered:
        """Register an existing order as a reservation (``POST /v1/reservations``)."""
        body: dict[str, Any] = {"eid": eid, "order_id": order_id}
        if rno is not None:
            body["rno"] = rno
        status, _, answer = http("POST", self.admin_url + "/v1/reservations", body,
                                 bearer=self.admin_token, timeout=HTTP_TIMEOUT)
        answer = _expect(status, answer, 201)
        return Registered(int(answer["eid"]), str(answer["rno"]), str(answer["order_id"]))

    def create_order(self, eid: int = 1234, lines: list[dict[str, Any]] | None = None, *,
                     rno: str | None = None, token: str | None = None,
                     **extra: Any) -> Registered:
        """Place an order at the sandbox and register it → its eid, rno and order id (the
        gateway issues the rno unless given)."""
        order_id = self.sandbox.create_order(eid, lines, token=token, **extra)
        return self.register(order_id, eid, rno)

    def reservation(self, eid: int, rno: str) -> dict[str, Any]:
        """The gateway's view: the mapping, its status, invoices and credits."""
        status, _, answer = http("GET", f"{self.admin_url}/v1/reservations/{eid}/{rno}",
                                 bearer=self.admin_token, timeout=HTTP_TIMEOUT)
        return dict(_expect(status, answer, 200))

    def sdk(self, eid: int = 1234, *, timeout: float = 10.0, **settings: Any) -> Any:
        """An official ``klarna.Klarna`` client (``Klarna_API`` 3.1.0) of merchant ``eid``,
        pointed at this gateway; ``settings`` override its config (country, currency...)."""
        try:
            import klarna
        except ImportError:
            raise RuntimeError("sdk() needs the official SDK: pip install "
                               "Klarna_API==3.1.0") from None
        creds = self.merchant(eid)
        k = klarna.Klarna({"eid": eid, "secret": creds.shared_secret, "country": "SE",
                           "language": "SV", "currency": "SEK", "mode": "beta",
                           "pcstorage": "json",
                           "pcuri": str(self.directory / "pclasses.json"), "uri": self.url,
                           **settings})
        k.init()
        set_sdk_timeout(k, timeout)
        self._clients.append(k)
        return k
