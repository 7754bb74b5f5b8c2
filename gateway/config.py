"""Configuration: one TOML file, one small frozen dataclass per section.

The same merchant table serves the gateway (shared secret for digests, REST credentials for
Klarna) and the sandbox (which accepts those REST credentials), so a demo cannot drift
between the two. Secrets may be written inline, read from an environment variable
(``<key>_env``) or from a file (``<key>_file``). Every problem raises :class:`ConfigError`
naming the offending key, e.g. ``merchants[1].rest_password_env``.
"""
from __future__ import annotations

import os
import tomllib
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError

#: Klarna's documented base URLs (order-management.md §1).
REGION_BASE_URLS: dict[tuple[str, str], str] = {
    ("eu", "production"): "https://api.klarna.com",
    ("eu", "playground"): "https://api.playground.klarna.com",
    ("na", "production"): "https://api-na.klarna.com",
    ("na", "playground"): "https://api-na.playground.klarna.com",
    ("oc", "production"): "https://api-oc.klarna.com",
    ("oc", "playground"): "https://api-oc.playground.klarna.com",
}

DEFAULT_LISTEN = "tcp:8080"
DEFAULT_ADMIN_LISTEN = "tcp:8081:interface=127.0.0.1"
DEFAULT_SANDBOX_LISTEN = "tcp:8089:interface=127.0.0.1"
DEFAULT_DB_URL = "sqlite:///gateway.db"
DEFAULT_ADMIN_TOKEN = "sandbox-admin"
#: Behaviour profiles (``gateway.calls.profiles``): REST-friendly, or v2's refusals.
PROFILES = ("default", "v2-strict")
#: What the gateway does with mis-encoded free text (``gateway.calls.text_repair``): nothing,
#: note it (sent as received), or send it repaired (noted too).
TEXT_REPAIR_MODES = ("off", "report", "fix")


@dataclass(frozen=True)
class Merchant:
    """One legacy estore (eid) and the REST credentials that act for it."""

    eid: int
    shared_secret: str = field(repr=False)
    rest_username: str
    rest_password: str = field(repr=False)
    base_url: str
    pass_through: bool = True
    #: ``default`` (REST-friendly) or ``v2-strict`` (refuse what v2 refused): see
    #: ``gateway.calls.profiles``.
    profile: str = "default"
    #: ``off``, ``report`` (the default: mojibake in free text sent to REST is noted in the
    #: journal and counted, the text sent as received) or ``fix`` (sent repaired, noted):
    #: see ``gateway.calls.text_repair``.
    text_repair: str = "report"
    #: Client networks whose legacy calls are accepted for this eid (empty: any). The
    #: legacy digest covers neither the method nor a nonce, so a captured request can be
    #: replayed as another call: TLS and this list are the defence.
    allowed_networks: tuple[IPv4Network | IPv6Network, ...] = ()

    def accepts(self, client: str) -> bool:
        if not self.allowed_networks:
            return True
        try:
            address = ip_address(client)
        except ValueError:
            return False
        return any(address in net for net in self.allowed_networks)
    #: Read-only token for this merchant's view of the console (its own eid only); None:
    #: the merchant has no console access (the admin token still sees everything).
    console_token: str | None = field(default=None, repr=False)
    #: REST requests per second to Klarna for this merchant, shared by every process on one
    #: store (0: no limit). See ``gateway.om.ratelimit``.
    rest_rate_limit: float = 0.0
    #: Requests that may leave at once after a quiet spell (the bucket's size); 1 paces every
    #: request, so no window of any length sees more than the rate allows.
    rest_rate_burst: int = 1

    @property
    def secret_bytes(self) -> bytes:
        """The secret as the SDKs hash it: ISO-8859-1 bytes."""
        return self.shared_secret.encode("iso-8859-1")


@dataclass(frozen=True)
class GatewaySettings:
    """Tunables of the gateway process. Defaults are what production should run with."""

    admin_token: str = DEFAULT_ADMIN_TOKEN
    max_body_bytes: int = 1024 * 1024
    max_xml_depth: int = 32
    #: Every listener: a request (headers and body) must arrive within this many seconds.
    request_deadline_seconds: float = 30.0
    #: Every listener: a keep-alive connection idle this long is closed.
    idle_timeout_seconds: float = 15.0
    #: Every listener: connections beyond this many open ones are closed at once.
    max_connections: int = 512
    #: Mark the console's session cookie ``Secure`` even on a plain-HTTP admin listener:
    #: set it when a TLS-terminating proxy serves the console (over a TLS listener the
    #: cookie is ``Secure`` anyway).
    console_cookie_secure: bool = False
    rno_start: int = 8000000000
    invno_start: int = 9000000000
    rest_timeout_seconds: float = 3.0
    retry_budget_seconds: float = 7.5
    #: Ignored since identical calls are bound by delivery, not by time (kept so older
    #: configuration files still load).
    coalesce_window_seconds: float = 30.0
    #: A finished call whose reply never reached its client (9119, a closed connection, a
    #: process death) is replayed to the next identical call for at most this long; after
    #: that, an identical call is a new operation.
    retry_window_seconds: float = 86400.0
    #: A capture/refund still unresolved this long after its call is settled from the
    #: order itself (attached if Klarna has it, otherwise given up: it was never applied),
    #: so one stuck request cannot block new money on its order for ever.
    give_up_seconds: float = 900.0
    recover_on_start: bool = True
    #: Seconds between the background refreshes of the gauge
    #: ``klarna_gateway_authorizations_expiring{within}`` (each reads the orders that may
    #: still lapse); 0 turns them off.
    expiry_check_seconds: float = 600.0


@dataclass(frozen=True)
class SandboxSettings:
    """``[sandbox]``: the emulator's control token and, for regression suites, its seed.

    ``seed = N`` (N >= 0) makes every generated id and the starting clock reproducible
    (``gateway/sandbox/README.md``, "Seeded mode"). The default -1 means "not seeded": the
    section loader types keys by their default, so the absence of a seed cannot be ``None``;
    a negative value in the file is refused like any other negative number.
    """

    admin_token: str = DEFAULT_ADMIN_TOKEN
    seed: int = -1


@dataclass(frozen=True)
class Config:
    merchants: tuple[Merchant, ...]
    gateway: GatewaySettings = GatewaySettings()
    sandbox: SandboxSettings = SandboxSettings()
    source: str = "<memory>"
    #: False when ``[gateway] admin_token`` was left at the demo default: fine for
    #: ``serve --sandbox``, refused for a real gateway (the admin API registers orders).
    admin_token_configured: bool = False

    def merchant(self, eid: int) -> Merchant | None:
        for m in self.merchants:
            if m.eid == eid:
                return m
        return None

    def with_base_url(self, base_url: str) -> Config:
        """Every merchant pointed at ``base_url`` (how ``serve --sandbox`` aims at the sandbox)."""
        from dataclasses import replace

        return replace(self, merchants=tuple(replace(m, base_url=base_url) for m in self.merchants))


def _secret(section: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    inline, env, file = section.get(key), section.get(f"{key}_env"), section.get(f"{key}_file")
    given = [k for k, v in ((key, inline), (f"{key}_env", env), (f"{key}_file", file)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give only one of {', '.join(given)}", f"{path}.{given[1]}")
    if inline is not None:
        if not isinstance(inline, str) or not inline:
            raise ConfigError("must be a non-empty string", f"{path}.{key}")
        return inline
    if env is not None:
        if not isinstance(env, str) or env not in os.environ:
            raise ConfigError(f"environment variable {env!r} is not set", f"{path}.{key}_env")
        return os.environ[env]
    if file is not None:
        try:
            return Path(str(file)).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"cannot read file: {e.strerror}", f"{path}.{key}_file") from None
    if required:
        raise ConfigError(f"missing (give {key}, {key}_env or {key}_file)", f"{path}.{key}")
    return None


def _merchant(raw: Any, index: int) -> Merchant:
    path = f"merchants[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError("must be a table", path)
    known = {"eid", "shared_secret", "shared_secret_env", "shared_secret_file", "rest_username",
             "rest_password", "rest_password_env", "rest_password_file", "region", "environment",
             "base_url", "pass_through", "profile", "allowed_networks", "console_token",
             "console_token_env", "console_token_file", "text_repair", "rest_rate_limit",
             "rest_rate_burst"}
    for key in raw:
        if key not in known:
            raise ConfigError("unknown key", f"{path}.{key}")
    eid = raw.get("eid")
    if isinstance(eid, str) and eid.isdigit():
        eid = int(eid)
    if not isinstance(eid, int) or isinstance(eid, bool) or eid <= 0:
        raise ConfigError("must be a positive integer", f"{path}.eid")
    secret = _secret(raw, "shared_secret", path)
    assert secret is not None
    try:
        secret.encode("iso-8859-1")
    except UnicodeEncodeError:
        raise ConfigError("must be ISO-8859-1 text (the SDKs hash Latin-1 bytes)",
                          f"{path}.shared_secret") from None
    username = raw.get("rest_username")
    if not isinstance(username, str) or not username:
        raise ConfigError("must be a non-empty string", f"{path}.rest_username")
    password = _secret(raw, "rest_password", path)
    assert password is not None
    base_url = raw.get("base_url")
    if base_url is not None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError("must be an http(s) URL", f"{path}.base_url")
    else:
        region = raw.get("region", "eu")
        environment = raw.get("environment", "playground")
        if (region, environment) not in REGION_BASE_URLS:
            bad = "region" if region not in {r for r, _ in REGION_BASE_URLS} else "environment"
            raise ConfigError("must be one of eu/na/oc and production/playground", f"{path}.{bad}")
        base_url = REGION_BASE_URLS[(region, environment)]
    pass_through = raw.get("pass_through", True)
    if not isinstance(pass_through, bool):
        raise ConfigError("must be true or false", f"{path}.pass_through")
    profile = raw.get("profile", "default")
    if profile not in PROFILES:
        raise ConfigError(f"must be one of {', '.join(PROFILES)}", f"{path}.profile")
    text_repair = raw.get("text_repair", "report")
    if text_repair not in TEXT_REPAIR_MODES:
        raise ConfigError(f"must be one of {', '.join(TEXT_REPAIR_MODES)}",
                          f"{path}.text_repair")
    return Merchant(eid=eid, shared_secret=secret, rest_username=username,
                    rest_password=password, base_url=base_url.rstrip("/"),
                    pass_through=pass_through, profile=profile, text_repair=text_repair,
                    allowed_networks=_networks(raw.get("allowed_networks", []),
                                               f"{path}.allowed_networks"),
                    console_token=_console_token(raw, path),
                    rest_rate_limit=_rate(raw.get("rest_rate_limit", 0),
                                          f"{path}.rest_rate_limit"),
                    rest_rate_burst=_burst(raw.get("rest_rate_burst", 1),
                                           f"{path}.rest_rate_burst"))


def _rate(raw: Any, path: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != raw:
        raise ConfigError("must be a number of requests per second (0: no limit)", path)
    if raw < 0:
        raise ConfigError("must not be negative (0: no limit)", path)
    return float(raw)


def _burst(raw: Any, path: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ConfigError("must be a whole number of requests, at least 1", path)
    return raw


def _networks(raw: Any, path: str) -> tuple[IPv4Network | IPv6Network, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise ConfigError("must be a list of networks such as \"10.0.0.0/8\"", path)
    try:
        return tuple(ip_network(x, strict=False) for x in raw)
    except ValueError as e:
        raise ConfigError(f"not a network: {e}", path) from None


#: The shortest console token accepted: it reads a merchant's journal (addresses included).
MIN_CONSOLE_TOKEN = 16
#: A console sign-in token must take at least 10**this many guesses by zxcvbn's estimate
#: (about 66 bits; zxcvbn counts a random character as 10 guesses, so 20 random characters).
MIN_TOKEN_GUESSES_LOG10 = 20.0


def _console_token(raw: dict[str, Any], path: str) -> str | None:
    token = _secret(raw, "console_token", path, required=False)
    if token is None:
        return None
    key = next(k for k in ("console_token", "console_token_env", "console_token_file")
               if k in raw)
    if len(token) < MIN_CONSOLE_TOKEN or any(c.isspace() or ord(c) < 32 for c in token):
        raise ConfigError(f"must be at least {MIN_CONSOLE_TOKEN} characters without spaces",
                          f"{path}.{key}")
    return token


@dataclass(frozen=True)
class WeakToken:
    """A sign-in token an attacker could guess: where it is configured, and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def weak_tokens(config: Config, *, admin: bool = True) -> list[WeakToken]:
    """The console sign-in tokens (each merchant's ``console_token`` and, with ``admin``,
    the admin token, which signs in to every merchant) that are guessable.

    Why an estimate and not a length rule: ``console-1234-token-abcdef`` has 25 characters
    and is made of a word, a count and a sequence. zxcvbn (Dropbox's estimator: dictionary
    words, keyboard walks, sequences, repeats, dates) counts the guesses an attacker who
    knows those patterns needs; below :data:`MIN_TOKEN_GUESSES_LOG10` a token is weak.
    """
    candidates = [(f"merchants[{i}].console_token (eid {m.eid})", m.console_token)
                  for i, m in enumerate(config.merchants) if m.console_token is not None]
    if admin:
        candidates.insert(0, ("gateway.admin_token", config.gateway.admin_token))
    return [WeakToken(path, message) for path, token in candidates
            if (message := _guessable(token)) is not None]


def _guessable(token: str) -> str | None:
    from zxcvbn import zxcvbn  # imported only when checked: its word lists are large

    guesses = float(zxcvbn(token[:100])["guesses_log10"])
    if guesses >= MIN_TOKEN_GUESSES_LOG10 and len(token) <= 100:
        return None
    return (f"guessable: about 10^{guesses:.0f} guesses, at least 10^"
            f"{MIN_TOKEN_GUESSES_LOG10:.0f} wanted; use 20 or more random characters, e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'")


def _check_console_tokens(merchants: tuple[Merchant, ...], admin_token: str) -> None:
    """Each token names one principal: shared with another merchant or the admin, a token
    would open more than its merchant's journal."""
    seen: set[str] = {admin_token}
    for i, m in enumerate(merchants):
        if m.console_token is None:
            continue
        if m.console_token in seen:
            raise ConfigError("must differ from the admin token and every other merchant's "
                              "console token", f"merchants[{i}].console_token")
        seen.add(m.console_token)


def _section(raw: dict[str, Any], name: str, cls: type, path: str) -> Any:
    section = raw.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError("must be a table", name)
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for key, value in section.items():
        if key in ("admin_token", "admin_token_env", "admin_token_file"):
            kwargs["admin_token"] = _secret(section, "admin_token", name)
            continue
        if not hasattr(defaults, key):
            raise ConfigError("unknown key", f"{name}.{key}")
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(f"must be of type {expected.__name__}", f"{name}.{key}")
        if expected in (int, float) and value < 0:
            raise ConfigError("must not be negative", f"{name}.{key}")
        kwargs[key] = value
    return cls(**kwargs)


def parse_config(raw: dict[str, Any], source: str = "<memory>") -> Config:
    """Build a :class:`Config` from a decoded TOML document, naming any bad key."""
    for key in raw:
        if key not in {"merchants", "gateway", "sandbox"}:
            raise ConfigError("unknown section", key)
    merchants_raw = raw.get("merchants", [])
    if not isinstance(merchants_raw, list):
        raise ConfigError("must be an array of tables ([[merchants]])", "merchants")
    merchants = tuple(_merchant(m, i) for i, m in enumerate(merchants_raw))
    seen: set[int] = set()
    for i, m in enumerate(merchants):
        if m.eid in seen:
            raise ConfigError(f"duplicate eid {m.eid}", f"merchants[{i}].eid")
        seen.add(m.eid)
    gateway = _section(raw, "gateway", GatewaySettings, "gateway")
    gateway_raw = raw.get("gateway", {})
    admin_token_configured = any(k in gateway_raw for k in
                                 ("admin_token", "admin_token_env", "admin_token_file"))
    if gateway.retry_budget_seconds >= 9.0:
        raise ConfigError("must end before legacy clients give up (under 9 s)",
                          "gateway.retry_budget_seconds")
    _check_console_tokens(merchants, gateway.admin_token)
    sandbox = _section(raw, "sandbox", SandboxSettings, "sandbox")
    return Config(merchants=merchants, gateway=gateway, sandbox=sandbox, source=source,
                  admin_token_configured=admin_token_configured)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", str(path)) from None
    return parse_config(raw, source=str(path))


def default_sandbox_config_path() -> Path:
    """``config/sandbox.toml`` of the source tree (the demo merchants), or the copy packaged
    in ``gateway/data`` when installed without the source tree (a test keeps them equal)."""
    source = Path(__file__).resolve().parent.parent / "config" / "sandbox.toml"
    if source.exists():
        return source
    return Path(__file__).resolve().parent / "data" / "sandbox.toml"
