"""Standalone runner for the sandbox: build the site, listen on an endpoint, run the reactor.

``klarna-gateway sandbox [--listen ENDPOINT] [--config FILE] [--seed N]`` calls
:func:`run_sandbox`; tests call :func:`listen_sandbox` with ``tcp:0:interface=127.0.0.1``.
Endpoints are Twisted endpoint strings so operators can choose TCP or a UNIX socket without
code changes.

Every builder takes ``seed``: ``None`` uses ``[sandbox] seed`` of the config (unset: not
seeded); an integer >= 0 overrides it. A seeded sandbox gives reproducible ids and time
(README, "Seeded mode"); this is what ``serve --sandbox --sandbox-seed N`` passes on.
"""
from __future__ import annotations

import hmac
import sys
import time
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.python.failure import Failure
from twisted.logger import (
    Logger, LogLevel, eventAsJSON, globalLogBeginner, jsonFileLogObserver, textFileLogObserver,
)
from twisted.web.server import Site

from gateway.config import DEFAULT_SANDBOX_LISTEN, Config, default_sandbox_config_path, load_config
from gateway.errors import ConfigError
from gateway.sandbox.clock import format_timestamp, http_date
from gateway.sandbox.ids import check_seed
from gateway.sandbox.errors import OmError
from gateway.sandbox.resource import MAX_BODY_BYTES, SandboxResource
from gateway.sandbox.response import error_response, status_error_response
from gateway.web import ListenerLimits, Refusal, RefusalReason, guarded_site

log = Logger()


def make_sandbox_site(config: Config, reactor: Any, *, seed: int | None = None,
                      limits: ListenerLimits | None = None) -> Site:
    """A bounded :class:`Site` whose ``resource`` is a fresh :class:`SandboxResource`.

    Credentials are checked when the headers are complete, before a body byte is read
    (HTTP Basic of a configured merchant for Klarna's paths, the bearer token for the
    control API): an unauthenticated upload is answered 401 at once, in Klarna's error
    shape, and never buffered; a body over 1 MB is answered 413 the same way.

    Raises:
        ValueError: ``seed`` is negative or not an integer.
    """
    root = SandboxResource(config, reactor, seed=seed)
    passwords = {m.rest_username.encode(): m.rest_password.encode() for m in config.merchants}
    control = f"Bearer {config.sandbox.admin_token}".encode()

    def authorize(request: Any) -> bool:
        if request.path.startswith(b"/sandbox/"):
            return hmac.compare_digest(request.getHeader(b"authorization") or b"", control)
        password = passwords.get(request.getUser())
        return password is not None and hmac.compare_digest(request.getPassword(), password)

    def refusal(reason: RefusalReason, request: Any) -> Refusal:
        if reason is RefusalReason.UNAUTHORIZED:
            answer = error_response(OmError(401, "UNAUTHORIZED", "Unauthorized"),
                                    root.ids.correlation_id(),
                                    (("WWW-Authenticate", 'Basic realm="Klarna"'),))
        elif reason is RefusalReason.TOO_LARGE:
            answer = error_response(OmError(413, "REQUEST_TOO_LARGE", "Request is too large"),
                                    root.ids.correlation_id())
        else:
            answer = status_error_response(reason.value, root.ids.correlation_id())
        headers = [(k.encode(), v.encode()) for k, v in answer.headers]
        headers.append((b"Date", http_date(root.clock).encode()))  # refusals too
        return Refusal(answer.status, answer.body, headers)

    limits = replace(limits or ListenerLimits(), max_body_bytes=MAX_BODY_BYTES)
    site = guarded_site(root, limits, authorize=authorize, refusal=refusal, reactor=reactor)
    site.displayTracebacks = False
    return site


def listen_sandbox(reactor: Any, config: Config, endpoint: str, *,
                   seed: int | None = None) -> Deferred[IListeningPort]:
    """Listen on ``endpoint`` (e.g. ``tcp:0:interface=127.0.0.1``); fires with the port.

    The site is reachable as ``port.factory`` and its root as ``port.factory.resource``.

    Raises:
        ValueError: a malformed ``endpoint``, or a negative ``seed`` (raised at once, not
            through the Deferred).
    """
    site = make_sandbox_site(config, reactor, seed=seed)
    return serverFromString(reactor, endpoint).listen(site)


def _url_of(port: IListeningPort) -> str:
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        return f"unix:{getattr(address, 'name', address)}"
    return f"http://{host}:{address.port}"


def run_sandbox(listen: str = DEFAULT_SANDBOX_LISTEN, config_path: str | None = None,
                seed: int | None = None, log_format: str = "text") -> int:
    """Run the sandbox until SIGINT/SIGTERM; returns the process exit status (0 stopped,
    2 unusable configuration, seed or endpoint, a port in use included).

    Orders live in memory only and vanish when the process stops. ``seed`` overrides
    ``[sandbox] seed`` of the config. Every refusal is one line on stderr; listening is
    tried before the reactor runs, so a busy port ends the process at once. ``log_format``
    ``json``: every line on stderr is a JSON event (``gateway.logs``), refusals included.
    """
    from twisted.internet import reactor

    try:
        config = load_config(config_path or default_sandbox_config_path())
    except ConfigError as e:
        return _refuse(str(e), log_format)
    try:
        check_seed(seed)
    except ValueError as e:
        return _refuse(f"--seed: {e}", log_format)
    try:
        d = listen_sandbox(reactor, config, listen, seed=seed)
    except ValueError as e:  # malformed endpoint string
        return _refuse(f"--listen {listen!r}: not a listening endpoint ({e})", log_format)
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    status = {"code": 0}
    if not outcome:  # an endpoint that listens later (systemd, a slow resolver)
        d.addBoth(lambda result: _listened(reactor, result, config, listen, status,
                                           log_format))
    elif isinstance(outcome[0], Failure):
        return _refuse(_listen_failure(outcome[0], listen), log_format)
    else:
        reactor.callWhenRunning(_announce, reactor, outcome[0], config)
    globalLogBeginner.beginLoggingTo(
        [jsonFileLogObserver(sys.stderr, recordSeparator="") if log_format == "json"
         else textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    reactor.run()  # installs SIGINT/SIGTERM handlers that stop the reactor cleanly
    return status["code"]


def _refuse(message: str, log_format: str = "text") -> int:
    if log_format == "json":  # the event Twisted's JSON observer would write (the emulator
        # imports nothing of the gateway's logging: tests/sandbox/test_sandbox_orders.py)
        print(eventAsJSON({"log_format": "klarna-gateway: {message}",
                           "log_level": LogLevel.critical, "log_namespace": "gateway.sandbox",
                           "log_source": None, "log_time": time.time(),
                           "message": message, "exit_status": 2}),
              file=sys.stderr, flush=True)
    else:
        print(f"klarna-gateway: {message}", file=sys.stderr)
    return 2


def _listen_failure(failure: Failure, listen: str) -> str:
    error = failure.value
    reason = getattr(getattr(error, "socketError", None), "strerror", None) or \
        failure.getErrorMessage()
    return (f"sandbox cannot listen on {listen}: {reason}: another process holds it (stop "
            "it) or choose another --listen")


def _announce(reactor: Any, port: IListeningPort, config: Config) -> None:
    resource = port.factory.resource  # type: ignore[attr-defined]
    log.info("Klarna sandbox listening on {url} (config {source}, merchants {eids}, {mode})",
             url=_url_of(port), source=config.source,
             eids=", ".join(str(m.eid) for m in config.merchants),
             mode="not seeded" if resource.seed is None else
             f"seed {resource.seed}, clock frozen at {format_timestamp(resource.clock.now())}")
    reactor.addSystemEventTrigger("before", "shutdown", port.stopListening)


def _listened(reactor: Any, result: Any, config: Config, listen: str,
              status: dict[str, int], log_format: str = "text") -> None:
    if isinstance(result, Failure):
        status["code"] = _refuse(_listen_failure(result, listen), log_format)
        reactor.callWhenRunning(reactor.stop)
    else:
        _announce(reactor, result, config)
