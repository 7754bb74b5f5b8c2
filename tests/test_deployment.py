"""The deployment files under config/ and scripts/ are real: the sample production
configuration names every key and loads, the systemd units hand the gateway a socket it
serves on, and the Prometheus job scrapes where the admin listener is by default."""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from gateway.config import DEFAULT_ADMIN_LISTEN, GatewaySettings, Merchant, load_config
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "production.example.toml"
SERVICE = ROOT / "scripts" / "systemd" / "klarna-gateway.service"
SOCKET = ROOT / "scripts" / "systemd" / "klarna-gateway.socket"
SECRETS = ("admin_token", "shared_secret", "rest_password", "console_token")


def _keys(text: str) -> set[str]:
    """Every key the file sets or shows commented out (``# key = …``)."""
    return set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, flags=re.MULTILINE))


def test_the_production_example_names_every_key() -> None:
    keys = _keys(EXAMPLE.read_text())
    expected = {f.name for f in dataclasses.fields(GatewaySettings)}
    expected |= {f.name for f in dataclasses.fields(Merchant)} | {"region", "environment"}
    expected.add("seed")
    for name in sorted(expected):
        variants = {name, f"{name}_env", f"{name}_file"} if name in SECRETS else {name}
        assert keys & variants, f"{name} is not in {EXAMPLE.name}"
    assert "profile" in keys and "allowed_networks" in keys
    # secrets only through the environment or files
    for secret in SECRETS:
        assert not re.search(rf"^{secret}\s*=", EXAMPLE.read_text(), flags=re.MULTILINE)


def test_the_production_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = EXAMPLE.read_text()
    for path in set(re.findall(r'_file = "([^"]+)"', text)):
        local = tmp_path / Path(path).name
        local.write_text("from-a-file\n")
        text = text.replace(path, str(local))
    config_path = tmp_path / "gateway.toml"
    config_path.write_text(text)
    for name in set(re.findall(r'_env = "([A-Z0-9_]+)"', text)):
        monkeypatch.setenv(name, f"value-of-{name.lower()}-1234567890")
    config = load_config(config_path)
    assert config.admin_token_configured
    assert [m.eid for m in config.merchants] == [1234, 5678]
    first, second = config.merchants
    assert first.shared_secret == "from-a-file" and first.base_url == "https://api.klarna.com"
    assert [str(n) for n in first.allowed_networks] == ["10.20.0.0/16", "192.0.2.10/32"]
    assert second.profile == "v2-strict" and second.rest_password == "from-a-file"
    assert config.gateway == GatewaySettings(admin_token=config.gateway.admin_token)


def _exec_start() -> list[str]:
    text = SERVICE.read_text().replace("\\\n", " ")
    [line] = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
    return shlex.split(line.removeprefix("ExecStart="))


def test_the_service_takes_the_socket_and_keeps_secrets_out_of_argv() -> None:
    argv = _exec_start()
    assert argv[1] == "serve"
    assert argv[argv.index("--listen") + 1] == "systemd:domain=INET:index=0"
    assert argv[argv.index("--admin-listen") + 1] == DEFAULT_ADMIN_LISTEN
    assert "--db-file" in argv and "--db" not in argv and "--config" not in argv
    service = SERVICE.read_text()
    assert "Environment=KLARNA_GATEWAY_CONFIG=/etc/klarna-gateway/gateway.toml" in service
    assert "Requires=klarna-gateway.socket" in service
    sock = SOCKET.read_text()
    assert re.search(r"^ListenStream=8080$", sock, flags=re.MULTILINE)
    assert re.search(r"^Accept=no$", sock, flags=re.MULTILINE)


@pytest.mark.slow
def test_the_gateway_serves_on_a_socket_handed_over_like_systemd(tmp_path: Path) -> None:
    """The unit's --listen string with a socket passed as systemd does (fd 3, LISTEN_FDS,
    LISTEN_PID, LISTEN_FDNAMES): legacy XML-RPC answers on it."""
    listen = _exec_start()[_exec_start().index("--listen") + 1]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port, fd = sock.getsockname()[1], sock.fileno()
    # What systemd does before it execs the service: the socket as fd 3, and the variables
    # naming it for that very process (exec keeps the pid).
    handover = ("import os, sys\n"
                "fd = int(sys.argv[1])\n"
                "if fd != 3:\n"
                "    os.dup2(fd, 3)\n"
                "    os.close(fd)\n"
                "os.environ.update(LISTEN_FDS='1', LISTEN_FDNAMES='klarna-gateway.socket',\n"
                "                  LISTEN_PID=str(os.getpid()))\n"
                "os.execv(sys.executable, [sys.executable] + sys.argv[2:])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KLARNA_GATEWAY_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", handover, str(fd), "-m", "gateway.cli", "serve", "--sandbox",
         "--listen", listen, "--admin-listen", "tcp:0:interface=127.0.0.1",
         "--sandbox-listen", "tcp:0:interface=127.0.0.1", "--db",
         f"sqlite:///{tmp_path}/gw.db"],
        pass_fds=(fd,), stdout=(tmp_path / "gw.log").open("wb"), stderr=subprocess.STDOUT,
        env={**env, "PYTHONPATH": str(ROOT)})
    sock.close()
    try:
        body = (b"<?xml version='1.0'?><methodCall><methodName>no_such_call</methodName>"
                b"<params></params></methodCall>")
        def answer() -> bytes:
            assert proc.poll() is None, (tmp_path / "gw.log").read_text()
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body,
                                                 headers={"Content-Type": "text/xml"})
                with urllib.request.urlopen(request, timeout=5) as resp:
                    return resp.read()
            except OSError:
                return b""
        assert b"<methodResponse><fault>" in wait_until(answer, "the gateway answers",
                                                        timeout=60, every=0.2)
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_prometheus_job_scrapes_the_admin_listener() -> None:
    [job] = yaml.safe_load((ROOT / "scripts" / "prometheus.yml").read_text())["scrape_configs"]
    assert job["job_name"] == "klarna-gateway" and job["metrics_path"] == "/metrics"
    [group] = job["static_configs"]
    port, interface = re.fullmatch(r"tcp:(\d+):interface=(.+)", DEFAULT_ADMIN_LISTEN).groups()
    assert group["targets"] == [f"{interface}:{port}"] == ["127.0.0.1:8081"]
