"""The console's parts on their own: the escaping helper, tokens and sessions, the console
token configuration, and the digest self-test on the PHP 2.4.0 wire captures."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st
from twisted.internet import task

from gateway.calls import REGISTRY
from gateway.config import load_config, parse_config
from gateway.console import auth
from gateway.console.digest_check import PLACEHOLDER, check, request_bytes
from gateway.console.html import Html, esc, h, link, table
from gateway.errors import ConfigError
from gateway.wire.digest import Dialect
from tests.console.conftest import CONSOLE_TOKENS, console_config
from tests.harness import SANDBOX_CONFIG

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures" / "php-2.4.0"


# -- escaping ----------------------------------------------------------------------------


@given(st.text())
def test_escaped_text_never_contains_markup(value: str) -> None:
    out = h('<td title="{}">{}</td>', value, value)
    inner = out[len('<td title="'):-len("</td>")]
    assert "<" not in inner and '"' not in inner.split('">', 1)[1]
    assert esc(value).count("<") == 0 and esc(value).count('"') == 0


def test_markup_built_here_is_not_escaped_twice() -> None:
    cell = h("<b>{}</b>", "a & b")
    assert cell == "<b>a &amp; b</b>" and isinstance(cell, Html)
    assert h("<td>{}</td>", cell) == "<td><b>a &amp; b</b></td>"
    assert esc(None) == "" and esc(3) == "3"
    assert link("/console/reservation", "<x>", eid=1, rno="a&b c") == (
        '<a href="/console/reservation?eid=1&amp;rno=a%26b+c">&lt;x&gt;</a>')
    assert "&lt;script&gt;" in table(("h",), [["<script>"]])


# -- tokens and sessions -----------------------------------------------------------------


def test_tokens_name_one_principal() -> None:
    config = console_config()
    assert auth.principal_for_token(config, "sandbox-admin") == auth.Principal(None)
    assert auth.principal_for_token(config, CONSOLE_TOKENS[5678]) == auth.Principal(5678)
    for wrong in ("", "sandbox-admi", CONSOLE_TOKENS[5678] + " ", "é"):
        assert auth.principal_for_token(config, wrong) is None
    merchant = auth.Principal(1234)
    assert merchant.may_see(1234) and not merchant.may_see(5678)
    assert auth.Principal(None).may_see(5678) and auth.Principal(None).label == "admin"


def test_sessions_expire_and_stay_bounded() -> None:
    clock = task.Clock()
    sessions = auth.Sessions(clock, lifetime=60, limit=3)
    sid = sessions.create(auth.Principal(1234))
    assert len(sid) >= 43 and sessions.get(sid) == auth.Principal(1234)
    assert sessions.get(sid + "x") is None and sessions.get(None) is None
    clock.advance(60)
    assert sessions.get(sid) is None and len(sessions) == 0
    sids = [sessions.create(auth.Principal(None)) for _ in range(4)]
    assert len(sessions) == 3 and sessions.get(sids[0]) is None
    sessions.drop(sids[1])
    assert sessions.get(sids[1]) is None and sessions.get(sids[3]) is not None


class FakeRequest:
    def __init__(self, **headers: str) -> None:
        self.headers = {k.lower().encode(): v.encode() for k, v in headers.items()}

    def getHeader(self, name: bytes) -> bytes | None:  # noqa: N802 (Twisted's name)
        return self.headers.get(name.lower())


@pytest.mark.parametrize("headers, ok", [
    ({"Host": "127.0.0.1:8081", "Origin": "http://127.0.0.1:8081"}, True),
    ({"Host": "127.0.0.1:8081", "Referer": "http://127.0.0.1:8081/console/signin"}, True),
    ({"Host": "127.0.0.1:8081", "Origin": "null"}, False),
    ({"Host": "127.0.0.1:8081", "Origin": "http://127.0.0.1:8082"}, False),
    ({"Host": "127.0.0.1:8081", "Referer": "http://127.0.0.1:8081.evil/x"}, False),
    ({"Host": "127.0.0.1:8081"}, False),
    ({"Origin": "http://127.0.0.1:8081"}, False),
])
def test_same_origin(headers: dict[str, str], ok: bool) -> None:
    assert auth.same_origin(FakeRequest(**headers)) is ok


# -- configuration -----------------------------------------------------------------------


def raw_config() -> dict[str, Any]:
    return tomllib.loads(SANDBOX_CONFIG.read_text(encoding="utf-8"))


def test_console_tokens_from_inline_env_and_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    raw = raw_config()
    token_file = tmp_path / "token"
    token_file.write_text("file-token-0123456789\n")
    monkeypatch.setenv("KGW_CONSOLE", "env-token-0123456789")
    raw["merchants"][0]["console_token_env"] = "KGW_CONSOLE"
    raw["merchants"][1]["console_token_file"] = str(token_file)
    config = parse_config(raw)
    assert [m.console_token for m in config.merchants] == ["env-token-0123456789",
                                                           "file-token-0123456789"]
    assert "token" not in repr(config.merchants[0]).replace("console_token", "")
    assert load_config(SANDBOX_CONFIG).merchants[0].console_token is None


@pytest.mark.parametrize("change, where", [
    ({"console_token": "short"}, "merchants[0].console_token"),
    ({"console_token": "has a space in it ....."}, "merchants[0].console_token"),
    ({"console_token": "sandbox-admin-is-not-it", "console_token_env": "X"},
     "merchants[0].console_token_env"),
    ({"console_token_env": "KGW_UNSET_VARIABLE"}, "merchants[0].console_token_env"),
    ({"console_tokn": "x"}, "merchants[0].console_tokn"),
])
def test_bad_console_tokens_are_named(change: dict[str, str], where: str) -> None:
    raw = raw_config()
    raw["merchants"][0].update(change)
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert where in str(e.value)


def test_a_console_token_is_never_shared() -> None:
    raw = raw_config()
    raw["merchants"][0]["console_token"] = raw["merchants"][1]["console_token"] = "x" * 20
    with pytest.raises(ConfigError, match=r"merchants\[1\].console_token"):
        parse_config(raw)
    raw = raw_config()
    raw["gateway"]["admin_token"] = "the-same-token-everywhere"
    raw["merchants"][1]["console_token"] = "the-same-token-everywhere"
    with pytest.raises(ConfigError, match="admin token"):
        parse_config(raw)


# -- the digest self-test ----------------------------------------------------------------


@pytest.mark.parametrize("capture", sorted(p.name for p in CAPTURES.glob("*.xml")))
def test_every_php_capture_matches_in_the_php2_dialect(capture: str) -> None:
    """Served or not, each captured PHP 2.4.0 request's digest matches for eid 1234 in the
    PHP 2 dialect (drop-falsy), as the gateway itself would accept it."""
    text = (CAPTURES / capture).read_bytes().decode("latin-1")
    verdict = check(request_bytes(text), console_config(), REGISTRY)
    if verdict.problem == "the gateway does not check a digest for this method":
        assert not verdict.served
        return
    assert verdict.problem is None, verdict.problem
    assert verdict.eid == 1234 and verdict.matches and Dialect.DROP_FALSY in verdict.dialects
    assert verdict.served == (verdict.method in REGISTRY.names)


def test_a_wrong_secret_shows_what_each_sdk_hashes() -> None:
    text = (CAPTURES / "04-cancel_reservation.xml").read_bytes().decode("latin-1")
    raw = raw_config()
    raw["merchants"][0]["shared_secret"] = "not-the-secret"
    verdict = check(request_bytes(text), parse_config(raw), REGISTRY)
    assert not verdict.matches and verdict.hash_name == "sha512"
    assert [s for _, s in verdict.expected] == [f"1234:8000000001:{PLACEHOLDER}"]
    assert verdict.expected[0][0] == "no-filter, drop-empty, drop-falsy"
    assert "not-the-secret" not in repr(verdict)


def test_what_stops_the_check() -> None:
    config = console_config()
    text = (CAPTURES / "04-cancel_reservation.xml").read_bytes().decode("latin-1")
    assert "-32700" in (check(b"<nope", config, REGISTRY).problem or "")
    other = check(request_bytes(text.replace("<int>1234</int>", "<int>999</int>")), config,
                  REGISTRY)
    assert other.problem and "9113" in other.problem
    scoped = check(request_bytes(text), config, REGISTRY, only_eid=5678)
    assert scoped.problem == "this request is for eid 1234; you may check eid 5678"
    unknown = text.replace("cancel_reservation", "no_such_method")
    assert "-32601" in (check(request_bytes(unknown), config, REGISTRY).problem or "")


def test_pasted_text_is_encoded_as_declared() -> None:
    assert request_bytes('<?xml version="1.0" encoding="ISO-8859-1"?><a>å</a>')[-5:] == \
        b"\xe5</a>"
    assert request_bytes("<a>å</a>") == "<a>å</a>".encode("utf-8")
    assert request_bytes('<?xml version="1.0" encoding="ISO-8859-1"?><a>€</a>').endswith(
        "€</a>".encode("utf-8"))
    assert request_bytes("<?xml version='1.0' encoding='bogus'?><a/>") == \
        b"<?xml version='1.0' encoding='bogus'?><a/>"
