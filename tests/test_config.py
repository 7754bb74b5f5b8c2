"""Configuration loading and `klarna-gateway config check`: every bad key is named."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config, parse_config
from gateway.errors import ConfigError

GOOD = {"merchants": [{"eid": 1, "shared_secret": "s", "rest_username": "u",
                       "rest_password": "p", "region": "na", "environment": "production"}]}


def test_sandbox_config_has_the_contracted_demo_merchants() -> None:
    """config/sandbox.toml ships eid 1234 and 5678 with the exact demo credentials."""
    config = load_config(Path(__file__).resolve().parents[1] / "config" / "sandbox.toml")
    m1, m2 = config.merchant(1234), config.merchant(5678)
    assert m1 and (m1.shared_secret, m1.rest_username, m1.rest_password) == (
        "sandbox-secret", "PK1234_sandbox", "sandbox-password")
    assert m2 and (m2.shared_secret, m2.rest_username, m2.rest_password) == (
        "sandbox-secret-2", "PK5678_sandbox", "sandbox-password-2")
    assert config.gateway.admin_token == config.sandbox.admin_token == "sandbox-admin"


def test_region_and_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Region picks Klarna's base URL; secrets come inline, from env or from a file."""
    assert parse_config(GOOD).merchants[0].base_url == "https://api-na.klarna.com"
    monkeypatch.setenv("KGW_PW", "from-env")
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    raw = {"merchants": [{"eid": "7", "shared_secret_file": str(secret), "rest_username": "u",
                          "rest_password_env": "KGW_PW"}]}
    m = parse_config(raw).merchants[0]
    assert (m.eid, m.shared_secret, m.rest_password) == (7, "from-file", "from-env")
    assert "from-env" not in repr(m) and "from-file" not in repr(m)


@pytest.mark.parametrize("mutate, path", [
    (lambda r: r["merchants"][0].pop("rest_username"), "merchants[0].rest_username"),
    (lambda r: r["merchants"][0].update(eid=-1), "merchants[0].eid"),
    (lambda r: r["merchants"][0].update(region="mars"), "merchants[0].region"),
    (lambda r: r["merchants"][0].update(rest_password_env="NOPE_UNSET"),
     "merchants[0].rest_password_env"),
    (lambda r: r["merchants"][0].update(colour="blue"), "merchants[0].colour"),
    (lambda r: r["merchants"].append(dict(r["merchants"][0])), "merchants[1].eid"),
    (lambda r: r.update(gateway={"retry_budget_seconds": 12.0}), "gateway.retry_budget_seconds"),
    (lambda r: r.update(gateway={"max_body_bytes": "big"}), "gateway.max_body_bytes"),
    (lambda r: r.update(extra={}), "extra"),
    (lambda r: r["merchants"][0].update(rest_rate_limit=-1), "merchants[0].rest_rate_limit"),
    (lambda r: r["merchants"][0].update(rest_rate_limit=-0.5), "merchants[0].rest_rate_limit"),
    (lambda r: r["merchants"][0].update(rest_rate_limit="20"), "merchants[0].rest_rate_limit"),
    (lambda r: r["merchants"][0].update(rest_rate_limit=float("nan")),
     "merchants[0].rest_rate_limit"),
    (lambda r: r["merchants"][0].update(rest_rate_burst=0), "merchants[0].rest_rate_burst"),
    (lambda r: r["merchants"][0].update(rest_rate_burst=2.5), "merchants[0].rest_rate_burst"),
    (lambda r: r["merchants"][0].update(text_repair="auto"), "merchants[0].text_repair"),
    (lambda r: r["merchants"][0].update(text_repair=True), "merchants[0].text_repair"),
])
def test_bad_keys_are_named(mutate: object, path: str) -> None:
    """Each mistake raises ConfigError pointing at the exact key."""
    import copy

    raw = copy.deepcopy(GOOD)
    raw["merchants"][0].pop("rest_password")
    raw["merchants"][0]["rest_password"] = "p"
    mutate(raw)  # type: ignore[operator]
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert e.value.path == path
    assert f"'{path}'" in str(e.value)


def test_rest_rate_limit_keys() -> None:
    """``rest_rate_limit`` (requests per second, 0 = off, the default) and ``rest_rate_burst``
    (requests sent at once after a quiet spell, default 1)."""
    m = parse_config(GOOD).merchants[0]
    assert (m.rest_rate_limit, m.rest_rate_burst) == (0.0, 1)
    raw = {"merchants": [{**GOOD["merchants"][0], "rest_rate_limit": 20,
                          "rest_rate_burst": 5}]}
    m = parse_config(raw).merchants[0]
    assert (m.rest_rate_limit, m.rest_rate_burst) == (20.0, 5)
    raw["merchants"][0]["rest_rate_limit"] = 0.5
    assert parse_config(raw).merchants[0].rest_rate_limit == 0.5


def _config_check_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        merchant_line: str) -> str:
    """``config check`` of one merchant with ``merchant_line`` added: exit 1, its stderr."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[[merchants]]\neid = 1\nshared_secret = "s"\nrest_username = "u"\n'
                   f'rest_password = "p"\n{merchant_line}\n')
    assert main(["config", "check", "--config", str(bad)]) == 1
    return capsys.readouterr().err


def test_config_check_names_a_negative_rate(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    err = _config_check_error(tmp_path, capsys, "rest_rate_limit = -5")
    assert "merchants[0].rest_rate_limit" in err and "negative" in err


def test_config_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`config check` prints OK for a good file and names the bad key, exit 1, otherwise."""
    good = Path(__file__).resolve().parents[1] / "config" / "sandbox.toml"
    assert main(["config", "check", "--config", str(good)]) == 0
    assert "OK, 2 merchant(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[[merchants]]\neid = 1\nshared_secret = "s"\nrest_username = "u"\n')
    assert main(["config", "check", "--config", str(bad)]) == 1
    assert "merchants[0].rest_password" in capsys.readouterr().err


def test_packaged_demo_config_is_the_source_one() -> None:
    """The copy shipped inside the package (non-editable installs) equals config/sandbox.toml."""
    root = Path(__file__).resolve().parents[1]
    assert (root / "gateway" / "data" / "sandbox.toml").read_bytes() == \
        (root / "config" / "sandbox.toml").read_bytes()


def test_a_real_gateway_refuses_the_demo_admin_token(tmp_path: Path) -> None:
    """Without --sandbox, serve refuses to start when no admin token was configured."""
    from gateway.testing.processes import run_cli

    cfg = tmp_path / "gw.toml"
    cfg.write_text('[[merchants]]\neid = 1\nshared_secret = "s"\nrest_username = "u"\n'
                   'rest_password = "p"\n')
    result = run_cli("serve", "--config", str(cfg), "--db", f"sqlite:///{tmp_path}/x.db",
                     "--listen", "tcp:0:interface=127.0.0.1",
                     "--admin-listen", "tcp:0:interface=127.0.0.1", timeout=60)
    assert result.returncode == 2  # unusable configuration (docs/cli.md#exit-status)
    assert "gateway.admin_token" in result.stderr


def test_text_repair_defaults_to_report_and_config_check_names_a_bad_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_config(GOOD).merchants[0].text_repair == "report"
    for mode in ("off", "report", "fix"):
        raw = {"merchants": [{**GOOD["merchants"][0], "text_repair": mode}]}
        assert parse_config(raw).merchants[0].text_repair == mode
    err = _config_check_error(tmp_path, capsys, 'text_repair = "repair"')
    assert "merchants[0].text_repair" in err and "off, report, fix" in err
