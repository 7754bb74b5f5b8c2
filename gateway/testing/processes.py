"""Real ``klarna-gateway`` processes for kill tests, multi-process races and soak runs.

Blocking helpers (no reactor): they start the console script as a child process on a free
loopback port, wait until it answers, and can SIGKILL and restart it. Used by the
reliability tests, ``scripts/chaos.py`` and ``scripts/bench``.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ADMIN_TOKEN = "sandbox-admin"
REST_AUTH = {1234: ("PK1234_sandbox", "sandbox-password"),
             5678: ("PK5678_sandbox", "sandbox-password-2")}
SECRETS = {1234: "sandbox-secret", 5678: "sandbox-secret-2"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, *, auth: tuple[str, str] | None = None,
         bearer: str | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
    """A tiny blocking JSON HTTP client (stdlib only)."""
    import base64

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode())
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("latin-1")
        return e.code, dict(e.headers), payload


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def _cli() -> list[str]:
    return [sys.executable, "-m", "gateway.cli"]


@dataclass
class SandboxProcess:
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, config: str | None = None) -> SandboxProcess:
        args = _cli() + ["sandbox", "--listen", f"tcp:{self.port}:interface=127.0.0.1"]
        if config:
            args += ["--config", config]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        _wait_http(self.url + "/sandbox/v1/clock", self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # control API
    def fault(self, **spec: Any) -> Any:
        status, _, body = http("POST", self.url + "/sandbox/v1/faults", spec, bearer=ADMIN_TOKEN)
        assert status == 201, body
        return body

    def clear_faults(self) -> None:
        http("DELETE", self.url + "/sandbox/v1/faults", bearer=ADMIN_TOKEN)

    def requests(self) -> list[dict[str, Any]]:
        """The sandbox's request log: every Klarna-API request as it arrived."""
        status, _, body = http("GET", self.url + "/sandbox/v1/requests", bearer=ADMIN_TOKEN,
                               timeout=60.0)
        assert status == 200, body
        return list(body)

    def clear_requests(self) -> None:
        http("DELETE", self.url + "/sandbox/v1/requests", bearer=ADMIN_TOKEN)

    def operations(self, order_id: str) -> list[dict[str, Any]]:
        status, _, body = http("GET", f"{self.url}/sandbox/v1/orders/{order_id}/operations",
                               bearer=ADMIN_TOKEN)
        assert status == 200, body
        return list(body)

    def order(self, order_id: str, eid: int = 1234) -> dict[str, Any]:
        status, _, body = http("GET", f"{self.url}/ordermanagement/v1/orders/{order_id}",
                               auth=REST_AUTH[eid])
        assert status == 200, body
        return dict(body)

    def create_order(self, eid: int = 1234, lines: list[dict[str, Any]] | None = None,
                     token: str | None = None) -> str:
        import uuid

        lines = lines or [line("ART-1", "Blåbärssylt", 2, 10000),
                          line("ART-2", "Lingon", 3, 5000)]
        body = {"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
                "order_amount": sum(ln["total_amount"] for ln in lines),
                "order_tax_amount": sum(ln["total_tax_amount"] for ln in lines),
                "order_lines": lines}
        status, _, resp = http("POST", f"{self.url}/payments/v1/authorizations/"
                               f"{token or 'auth-' + str(uuid.uuid4())}/order", body,
                               auth=REST_AUTH[eid])
        assert status == 200, resp
        return str(resp["order_id"])


def line(reference: str, name: str, quantity: int, unit_price: int,
         tax_rate: int = 2500) -> dict[str, Any]:
    total = quantity * unit_price
    tax = total - round(total * 10000 / (10000 + tax_rate))
    return {"type": "physical", "reference": reference, "name": name, "quantity": quantity,
            "unit_price": unit_price, "tax_rate": tax_rate, "total_amount": total,
            "total_discount_amount": 0, "total_tax_amount": tax}


def write_config(path: Path, sandbox_url: str, merchants: dict[int, dict[str, Any]] | None = None,
                 **gateway: Any) -> Path:
    """A config with the two demo merchants pointed at ``sandbox_url``; ``merchants`` adds
    keys to a merchant's table (``{1234: {"rest_rate_limit": 20}}``)."""
    settings = "\n".join(f"{k} = {json.dumps(v)}" for k, v in gateway.items())
    extra = {eid: "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
             for eid, keys in (merchants or {}).items()}
    path.write_text(f"""[gateway]
admin_token = "{ADMIN_TOKEN}"
{settings}

[sandbox]
admin_token = "{ADMIN_TOKEN}"

[[merchants]]
eid = 1234
shared_secret = "sandbox-secret"
rest_username = "PK1234_sandbox"
rest_password = "sandbox-password"
base_url = "{sandbox_url}"
{extra.get(1234, "")}
[[merchants]]
eid = 5678
shared_secret = "sandbox-secret-2"
rest_username = "PK5678_sandbox"
rest_password = "sandbox-password-2"
base_url = "{sandbox_url}"
{extra.get(5678, "")}""", encoding="utf-8")
    return path


def db_upgrade(db_url: str) -> None:
    subprocess.run(_cli() + ["db", "upgrade", "--db", db_url], check=True,
                   stdout=subprocess.DEVNULL)


@dataclass
class GatewayProcess:
    config: Path
    db_url: str
    port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    kills: int = 0
    #: More ``serve`` flags (``--log-format json`` …).
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> GatewayProcess:
        args = _cli() + ["serve", "--config", str(self.config), "--db", self.db_url,
                         "--listen", f"tcp:{self.port}:interface=127.0.0.1",
                         "--admin-listen", f"tcp:{self.admin_port}:interface=127.0.0.1",
                         *self.extra_args]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        _wait_http(self.admin_url + "/healthz", self.proc)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing; whatever was in flight is cut."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def register(self, eid: int, order_id: str, rno: str | None = None) -> str:
        body: dict[str, Any] = {"eid": eid, "order_id": order_id}
        if rno:
            body["rno"] = rno
        status, _, resp = http("POST", self.admin_url + "/v1/reservations", body,
                               bearer=ADMIN_TOKEN)
        assert status == 201, resp
        return str(resp["rno"])

    def mapping(self, eid: int, rno: str) -> dict[str, Any]:
        status, _, resp = http("GET", f"{self.admin_url}/v1/reservations/{eid}/{rno}",
                               bearer=ADMIN_TOKEN)
        assert status == 200, resp
        return dict(resp)

    def sdk(self, eid: int = 1234, timeout: float = 10.0) -> Any:
        """The official SDK pointed at this process (socket timeout like PHP's ~9-10 s)."""
        import klarna

        k = klarna.Klarna({"eid": eid, "secret": SECRETS[eid], "country": "SE",
                           "language": "SV", "currency": "SEK", "mode": "beta",
                           "pcstorage": "json", "pcuri": "/tmp/kgw-pclasses.json",
                           "uri": self.url})
        k.init()
        set_sdk_timeout(k, timeout)
        return k


def set_sdk_timeout(k: Any, timeout: float) -> None:
    """A socket timeout for an official SDK client (it sets none: a hung server would hang
    the test for ever)."""
    transport = k.xmlrpc._ServerProxy__transport
    original = transport.make_connection

    def make_connection(host: Any) -> Any:
        conn = original(host)
        conn.timeout = timeout
        return conn
    transport.make_connection = make_connection


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli() + list(args), capture_output=True, text=True, timeout=timeout)
