"""Operating real `klarna-gateway serve` processes: UNIX sockets, systemd socket activation,
JSON logs reopened on SIGHUP, and a SIGTERM that drains a call in flight."""
from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest

from gateway.testing.processes import (
    GatewayProcess, SandboxProcess, _cli, free_port, write_config,
)
from gateway.testing.processes import http as http_call
from tests.harness import order_line
from tests.process_fixtures import sandbox  # noqa: F401
from tests.waiting import wait_until

#: Every test here starts ``serve`` as a child process and signals it (slow: not in the
#: default run; CI runs them).
pytestmark = pytest.mark.slow


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def _wait_for(path: Path, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    def there() -> bool:
        assert proc.poll() is None, "serve exited"
        return path.exists()
    wait_until(there, f"{path} appeared", timeout=timeout)


def test_serve_on_unix_sockets(tmp_path: Path) -> None:
    """`serve --sandbox --listen unix:PATH --admin-listen unix:PATH`: XML-RPC and the admin
    API answer over the sockets, and the start-up lines name them and the database."""
    legacy, admin = tmp_path / "legacy.sock", tmp_path / "admin.sock"
    proc = subprocess.Popen(
        _cli() + ["serve", "--sandbox", "--db", f"sqlite:///{tmp_path}/gw.db",
                  "--listen", f"unix:{legacy}", "--admin-listen", f"unix:{admin}",
                  "--sandbox-listen", f"tcp:{free_port()}:interface=127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_for(admin, proc)
        lines = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        assert f"unix:{legacy}" in lines[0] and f"unix:{admin}" in lines[1], lines
        assert "database sqlite:///" in lines[2], lines
        conn = UnixHTTPConnection(str(admin))
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn = UnixHTTPConnection(str(legacy))
        body = xmlrpc.client.dumps(("4.1", "python:api:3.1.0", "8000000000", 1234, "x"),
                                   "cancel_reservation")
        conn.request("POST", "/", body, {"Content-Type": "text/xml"})
        answer = conn.getresponse().read()
        with pytest.raises(xmlrpc.client.Fault) as info:
            xmlrpc.client.loads(answer)
        assert info.value.faultCode == 9114  # a real answer: the made-up digest is wrong
    finally:
        proc.terminate()
        proc.wait(15)


def test_systemd_socket_activation(tmp_path: Path) -> None:
    """A socket passed the systemd way (LISTEN_FDS=1, fd 3) serves XML-RPC with
    `--listen systemd:domain=INET:index=0`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    admin_port = free_port()
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                "os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_FDNAMES'] = 'legacy'; "
                "os.environ['LISTEN_PID'] = str(os.getpid()); "
                "os.execv(sys.executable, [sys.executable, '-m', 'gateway.cli'] + sys.argv[2:])")
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, str(listener.fileno()), "serve", "--sandbox",
         "--db", f"sqlite:///{tmp_path}/gw.db", "--listen", "systemd:domain=INET:index=0",
         "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1",
         "--sandbox-listen", f"tcp:{free_port()}:interface=127.0.0.1"],
        pass_fds=(listener.fileno(),), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listener.close()
    try:
        def healthy() -> bool:
            assert proc.poll() is None, "serve exited"
            try:
                http_call("GET", f"http://127.0.0.1:{admin_port}/healthz")
            except OSError:
                return False
            return True
        wait_until(healthy, "serve answers /healthz", timeout=30)
        proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/")
        with pytest.raises(xmlrpc.client.Fault) as info:
            proxy.cancel_reservation("4.1", "python:api:3.1.0", "8000000000", 1234, "x")
        assert info.value.faultCode == 9114
    finally:
        proc.terminate()
        proc.wait(15)


def test_json_logs_reopened_on_sighup(tmp_path: Path, sandbox: SandboxProcess) -> None:
    """`--log-format json --log-file`: one JSON object per line; the access line of a call
    carries journal_id, eid, method, rno, invno; no digest or secret anywhere; SIGHUP
    after the file was moved away (logrotate) opens a new one."""
    log_file = tmp_path / "gw.log"
    config = write_config(tmp_path / "gw.toml", sandbox.url)
    gw = GatewayProcess(config, f"sqlite:///{tmp_path}/gw.db", log_path=tmp_path / "out.log",
                        extra_args=["--log-format", "json", "--log-file", str(log_file)])
    gw.start()
    try:
        rno = gw.register(1234, sandbox.create_order())
        k = gw.sdk()
        k.add_art_no(qty=1, artno="ART-1")
        _, invno = k.activate(rno)

        def access_lines() -> list[dict[str, Any]]:
            events = [json.loads(line) for line in log_file.read_text().splitlines() if line]
            return [e for e in events if e.get("method") == "activate" and "outcome" in e]
        [access] = wait_until(access_lines, "the call's access line was logged")
        assert (access["eid"], access["rno"], access["invno"], access["outcome"]) == (
            1234, rno, invno, "ok")
        assert isinstance(access["journal_id"], int) and "correlation_id" in access
        text = log_file.read_text()
        assert "sandbox-secret" not in text and "sandbox-password" not in text
        rotated = tmp_path / "gw.log.1"
        log_file.rename(rotated)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        def reopened() -> bool:
            gw.sdk().check_order_status(rno, 0)  # something to log
            return log_file.exists()
        wait_until(reopened, "SIGHUP reopened the log file", every=0.2)
        gw.sdk().check_order_status(rno, 0)
        wait_until(lambda: any(json.loads(line).get("method") == "check_order_status"
                               for line in log_file.read_text().splitlines() if line),
                   "a call logged to the new file")
    finally:
        gw.stop()


def test_sigterm_drains_a_call_in_flight(tmp_path: Path, sandbox: SandboxProcess) -> None:
    """SIGTERM while Klarna is slow to answer a capture: the client still gets its invno,
    the capture exists once, and the process exits 0."""
    config = write_config(tmp_path / "gw.toml", sandbox.url)
    gw = GatewayProcess(config, f"sqlite:///{tmp_path}/gw.db", log_path=tmp_path / "gw.log")
    gw.start()
    order_id = sandbox.create_order()
    rno = gw.register(1234, order_id)
    sandbox.fault(method="POST", path=r"/captures$", action="latency", delay_ms=2000, times=1)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(gw.sdk().activate(rno)), daemon=True)
    t.start()
    wait_until(lambda: sandbox.operations(order_id), "the capture reached Klarna")
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)
    t.join(15)
    assert out and out[0][0] == "ok", out
    assert gw.proc.wait(15) == 0
    assert len([op for op in sandbox.operations(order_id)
                if op["path"].endswith("/captures")]) == 1


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 (an IP SAN, so the client checks the host)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = tmp_path / "key.pem", tmp_path / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_serve_legacy_over_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--listen ssl:PORT:privateKey=…:certKey=…` (docs/operations.md's defence against
    replayed digests): the official SDK activates over TLS, verifying the certificate, and the
    listener speaks nothing but TLS."""
    import ssl

    import klarna

    key, cert = _self_signed(tmp_path)
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        _cli() + ["serve", "--sandbox", "--db", f"sqlite:///{tmp_path}/gw.db",
                  "--listen", f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}",
                  "--admin-listen", f"tcp:{admin}:interface=127.0.0.1",
                  "--sandbox-listen", f"tcp:{free_port()}:interface=127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert f"127.0.0.1:{port}" in line, line
        line = order_line("ART-1", "Sylt", 1, 10000)
        status, _, created = http_call(
            "POST", f"http://127.0.0.1:{admin}/v1/sandbox/orders", {
                "eid": 1234, "purchase_country": "SE", "purchase_currency": "SEK",
                "locale": "sv-SE", "order_amount": line["total_amount"],
                "order_tax_amount": line["total_tax_amount"], "order_lines": [line]},
            bearer="sandbox-admin")
        assert status == 201, created
        # The SDK builds its own ServerProxy: it trusts our certificate through the
        # standard SSL_CERT_FILE, as an ERP would through its system store.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        k = klarna.Klarna({"eid": 1234, "secret": "sandbox-secret", "country": "SE",
                           "language": "SV", "currency": "SEK", "mode": "beta",
                           "pcstorage": "json", "pcuri": str(tmp_path / "pclasses.json"),
                           "uri": f"https://127.0.0.1:{port}/"})
        k.init()
        risk, invno = k.activate(created["rno"])
        assert risk == "ok" and invno.isdigit()
        # Plain HTTP on the TLS port gets no XML-RPC answer.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.request("POST", "/", b"<methodCall/>", {"Content-Type": "text/xml"})
            conn.getresponse().read()
        # A client that does not trust the certificate refuses the connection itself.
        monkeypatch.delenv("SSL_CERT_FILE")
        untrusting = xmlrpc.client.ServerProxy(f"https://127.0.0.1:{port}/",
                                               context=ssl.create_default_context())
        with pytest.raises(ssl.SSLError):
            untrusting.cancel_reservation("4.1", "python:api:3.1.0", created["rno"], 1234, "x")
    finally:
        proc.terminate()
        proc.wait(15)
