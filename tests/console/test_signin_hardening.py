"""Console sign-in on a real gateway: the token only from the form body, no query string of
a console path in the access log, failed sign-ins logged and backed off per address,
sessions capped per principal, weak tokens named by `config check`, and the ``Secure``
cookie for deployments behind a TLS proxy."""
from __future__ import annotations

import secrets
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import task
from twisted.logger import formatEvent, globalLogPublisher

from gateway.cli import main
from gateway.config import parse_config
from gateway.console import auth
from tests.console.conftest import CONSOLE_TOKENS, console_config
from tests.harness import SANDBOX_CONFIG, Harness, running


class Captured:
    """Every log event while active, and their text as the log file would show it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Captured:
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *_: Any) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    @property
    def text(self) -> str:
        return "\n".join(str(formatEvent(e)) for e in self.events)


async def post(gw: Harness, path: str, data: Any = None, **headers: str) -> Any:
    resp = await treq.post(gw.admin + path, data=data, allow_redirects=False,
                           headers={"Origin": gw.admin, **headers})
    await resp.content()
    return resp


@pytest_twisted.ensureDeferred
async def test_the_token_is_taken_only_from_the_form_body(gwc: Harness) -> None:
    """Before: ``POST /console/signin?token=…`` signed in (303 and a cookie). Now: 400,
    no cookie; the same token in the form body signs in."""
    resp = await post(gwc, "/console/signin?token=sandbox-admin")
    assert resp.code == 400 and resp.headers.getRawHeaders("set-cookie") is None
    resp = await post(gwc, "/console/signin?token=sandbox-admin", data={"token": "nope"})
    assert resp.code == 400 and resp.headers.getRawHeaders("set-cookie") is None
    resp = await post(gwc, "/console/signin", data={"token": "sandbox-admin"})
    assert resp.code == 303 and resp.headers.getRawHeaders("set-cookie")


@pytest_twisted.ensureDeferred
async def test_console_query_strings_are_redacted_in_the_access_log(gwc: Harness) -> None:
    """Before: the access log held ``/console/signin?token=…`` verbatim. Now the query of
    a console path is ``?<redacted>``; other admin paths keep theirs."""
    token = CONSOLE_TOKENS[1234]
    with Captured() as log:
        await post(gwc, f"/console/signin?token={token}")
        resp = await treq.get(gwc.admin + "/console/?q=ERP-secret-order",
                              headers={"Authorization": f"Bearer {token}"})
        await resp.content()
        resp = await treq.get(gwc.admin + "/healthz?probe=1")
        await resp.content()
    assert token not in log.text and "ERP-secret-order" not in log.text
    assert '"POST /console/signin?<redacted> HTTP/1.1"' in log.text
    assert '"GET /console/?<redacted> HTTP/1.1"' in log.text
    assert '"GET /healthz?probe=1 HTTP/1.1"' in log.text


@pytest_twisted.ensureDeferred
async def test_failed_signins_are_logged_and_backed_off_per_address(gwc: Harness) -> None:
    """Before: 300 wrong tokens in 0.18 s, all 401, nothing logged. Now every failure is
    logged with the address; after the free attempts the address waits (429 with
    Retry-After, the token not even compared), doubling with each failure."""
    console = gwc.gateway.admin_port.factory.resource.console  # type: ignore[union-attr]
    with Captured() as log:
        codes = [(await post(gwc, "/console/signin", data={"token": f"wrong-{n}"})).code
                 for n in range(auth.FREE_SIGNIN_FAILURES + 3)]
    assert codes[:auth.FREE_SIGNIN_FAILURES + 1] == [401] * (auth.FREE_SIGNIN_FAILURES + 1)
    assert codes[auth.FREE_SIGNIN_FAILURES + 1:] == [429, 429]
    failed = [e for e in log.events if e.get("log_namespace") == "gateway.console.signin"]
    assert len(failed) >= auth.FREE_SIGNIN_FAILURES + 1
    assert all(e["client"] == "127.0.0.1" for e in failed)
    assert "wrong-" not in log.text  # the attempted tokens are not logged
    resp = await post(gwc, "/console/signin", data={"token": "sandbox-admin"})
    assert resp.code == 429 and int(resp.headers.getRawHeaders("retry-after")[0]) >= 1
    resp = await treq.get(gwc.admin + "/console/", headers={"Authorization":
                                                            "Bearer sandbox-admin"})
    assert resp.code == 429  # a bearer token is no way around the backoff
    await resp.content()
    console.signins.forget("127.0.0.1")
    resp = await post(gwc, "/console/signin", data={"token": "sandbox-admin"})
    assert resp.code == 303
    for n in range(auth.FREE_SIGNIN_FAILURES + 2):
        resp = await treq.get(gwc.admin + "/console/pending",
                              headers={"Authorization": f"Bearer wrong-{n}"})
        await resp.content()
    assert resp.code == 429  # nor the other way round


def test_backoff_doubles_and_is_forgotten_only_after_a_quiet_while() -> None:
    clock = task.Clock()
    throttle = auth.SigninThrottle(clock)
    for _ in range(auth.FREE_SIGNIN_FAILURES):
        assert throttle.wait("192.0.2.1") == 0
        throttle.failed("192.0.2.1")
    assert throttle.wait("192.0.2.1") == 0
    throttle.failed("192.0.2.1")
    first = throttle.wait("192.0.2.1")
    assert first == auth.BACKOFF_BASE_SECONDS and throttle.wait("192.0.2.2") == 0
    clock.advance(first)
    assert throttle.wait("192.0.2.1") == 0
    throttle.failed("192.0.2.1")
    assert throttle.wait("192.0.2.1") == 2 * first
    for _ in range(40):
        clock.advance(throttle.wait("192.0.2.1"))
        throttle.failed("192.0.2.1")
    assert throttle.wait("192.0.2.1") == auth.BACKOFF_MAX_SECONDS
    clock.advance(auth.FORGET_AFTER_SECONDS + 1)
    throttle.failed("192.0.2.1")  # a quiet while: counted from 1 again
    assert throttle.wait("192.0.2.1") == 0
    small = auth.SigninThrottle(clock, max_addresses=3)
    for n in range(10):
        small.failed(f"192.0.2.{n}")
    assert len(small) == 3


def test_sessions_are_capped_per_principal() -> None:
    """Before: one global cap, oldest first: a merchant's sign-ins evicted the admin's
    session. Now each principal has its own cap."""
    sessions = auth.Sessions(task.Clock(), lifetime=60, limit=3)
    admin = sessions.create(auth.Principal(None))
    other = sessions.create(auth.Principal(5678))
    merchant = [sessions.create(auth.Principal(1234)) for _ in range(10)]
    assert sessions.get(admin) == auth.Principal(None)
    assert sessions.get(other) == auth.Principal(5678)
    assert [sessions.get(s) is not None for s in merchant] == [False] * 7 + [True] * 3


@pytest_twisted.ensureDeferred
async def test_a_merchant_cannot_sign_the_admin_out(gwc: Harness) -> None:
    """Over HTTP, with the cap lowered to 5: twenty sign-ins with a merchant's console
    token leave the admin's session alone."""
    console = gwc.gateway.admin_port.factory.resource.console  # type: ignore[union-attr]
    console.sessions.limit = 5
    resp = await post(gwc, "/console/signin", data={"token": "sandbox-admin"})
    admin = resp.headers.getRawHeaders("set-cookie")[0].split(";")[0].split("=", 1)[1]
    for _ in range(20):
        assert (await post(gwc, "/console/signin",
                           data={"token": CONSOLE_TOKENS[1234]})).code == 303
    resp = await treq.get(gwc.admin + "/console/", cookies={"kgw_console": admin},
                          allow_redirects=False)
    assert resp.code == 200 and "signed in as admin" in (await resp.text())


def config_file(tmp_path: Path, **tokens: str) -> Path:
    raw = SANDBOX_CONFIG.read_text(encoding="utf-8")
    path = tmp_path / "gw.toml"
    lines = raw.splitlines()
    out: list[str] = []
    eids = iter(tokens.items())
    for line in lines:
        out.append(line)
        if line.startswith("eid = "):
            name, token = next(eids, (None, None))
            if name is not None:
                out.append(f'console_token = "{token}"')
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def test_config_check_names_a_guessable_console_token(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: any 16 characters passed. Now `config check` estimates each console token's
    strength (zxcvbn) and names the guessable one, exit 1; random tokens pass."""
    weak = config_file(tmp_path, first=CONSOLE_TOKENS[1234])
    assert main(["config", "check", "--config", str(weak)]) == 1
    err = capsys.readouterr().err
    assert "merchants[0].console_token" in err and "guess" in err
    strong = config_file(tmp_path, first=secrets.token_urlsafe(24),
                         second=secrets.token_urlsafe(24))
    assert main(["config", "check", "--config", str(strong)]) == 0
    assert "OK" in capsys.readouterr().out


def test_console_cookie_secure_setting() -> None:
    raw = tomllib.loads(SANDBOX_CONFIG.read_text(encoding="utf-8"))
    assert parse_config(raw).gateway.console_cookie_secure is False
    raw["gateway"]["console_cookie_secure"] = True
    assert parse_config(raw).gateway.console_cookie_secure is True


@pytest_twisted.async_yield_fixture
async def gw_behind_tls_proxy(tmp_path: Any) -> AsyncIterator[Harness]:
    from dataclasses import replace

    config = console_config()
    config = replace(config, gateway=replace(config.gateway, console_cookie_secure=True))
    async with running(tmp_path, config) as h:
        yield h


@pytest_twisted.ensureDeferred
async def test_the_cookie_is_secure_behind_a_tls_proxy(gw_behind_tls_proxy: Harness,
                                                        gwc: Harness) -> None:
    """``console_cookie_secure = true``: the cookie is ``Secure`` though the listener is
    plain HTTP (TLS ends at the proxy); without it, plain HTTP gets no ``Secure``."""
    resp = await post(gw_behind_tls_proxy, "/console/signin", data={"token": "sandbox-admin"})
    assert "; Secure" in resp.headers.getRawHeaders("set-cookie")[0]
    resp = await post(gwc, "/console/signin", data={"token": "sandbox-admin"})
    assert "Secure" not in resp.headers.getRawHeaders("set-cookie")[0]
