"""The alert rules and the Grafana dashboard that ship in scripts/, against a real gateway.

- ``promtool check rules`` accepts ``scripts/prometheus-alerts.yml``;
- every metric the rules and the dashboard name is on a running gateway's ``/metrics``;
- each alert is tested with ``promtool test rules`` on series a running gateway exported:
  a real gateway (and sandbox) is driven through a healthy spell, then Klarna rate limiting
  every call (9119s, unfinished journal entries), an authorization about to lapse, then its
  database breaking; its ``/metrics`` is scraped at each step, and the scrapes become the
  test's input series, one minute apart. Each alert must be silent before its trouble and
  firing after it.

promtool comes from Debian's ``prometheus`` package (``.ci/run`` installs it); without it
these tests are skipped, except in CI, where they fail.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from twisted.internet import reactor, task

from gateway.config import load_config
from tests.e2e.sdk import fault_of
from tests.harness import ADMIN, SANDBOX_CONFIG, Harness, start_gateway

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "scripts" / "prometheus-alerts.yml"
DASHBOARD = ROOT / "scripts" / "grafana-dashboard.json"
PROMTOOL = os.environ.get("KGW_PROMTOOL", shutil.which("promtool") or "/usr/bin/promtool")
METRIC = re.compile(r"\bklarna_gateway_[a-z0-9_]+")
SERIES_LABELS = {"job": "klarna-gateway", "instance": "gateway-1:8081"}


@pytest.fixture
def promtool() -> str:
    if os.access(PROMTOOL, os.X_OK):
        return PROMTOOL
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must test the alert rules: no promtool at {PROMTOOL} "
                    "(apt-get install -y prometheus)")
    pytest.skip(f"no promtool at {PROMTOOL} (apt-get install -y prometheus)")


def _named(path: Path) -> set[str]:
    return set(METRIC.findall(path.read_text(encoding="utf-8")))


def _exported(exposition: str) -> set[str]:
    """Every series name a /metrics text can carry, families without samples included
    (a labelled counter nobody incremented yet is still exported, with HELP and TYPE)."""
    names: set[str] = set()
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
                                                                 "_created"),
                "gauge": ("",)}
    for family in text_string_to_metric_families(exposition):
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


async def _scrape(h: Harness) -> str:
    await h.gateway.refresh_gauges()
    resp = await treq.get(h.admin + "/metrics")
    assert resp.code == 200
    return (await resp.text()).strip()


def test_rules_pass_promtool_check(promtool: str) -> None:
    out = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 5 rules found" in out.stdout


def test_the_prometheus_config_loads_the_rules(promtool: str) -> None:
    out = subprocess.run([promtool, "check", "config", str(ROOT / "scripts" /
                                                        "prometheus.yml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 5 rules found" in out.stdout


def test_the_dashboard_is_grafana_json_over_the_gateways_metrics() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = [p for p in board["panels"] if p.get("type") != "row"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert len(panels) >= 12 and all(p.get("targets") for p in panels)
    assert all(METRIC.search(e) for e in exprs)
    assert {v["name"] for v in board["templating"]["list"]} >= {"datasource", "job",
                                                                 "instance"}
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("calls", "faults", "rest", "retries", "journal", "recover", "expiring",
                  "rate limit", "text repairs", "ready", "database"):
        assert topic in titles, topic


@pytest_twisted.ensureDeferred
async def test_every_metric_the_rules_and_dashboard_name_is_exported(gw: Harness) -> None:
    exported = _exported(await _scrape(gw))
    named = _named(RULES) | _named(DASHBOARD)
    assert len(named) >= 20
    assert named <= exported, sorted(named - exported)


def _config() -> Any:
    config = load_config(SANDBOX_CONFIG)
    return replace(config, gateway=replace(config.gateway, give_up_seconds=2.0,
                                           retry_budget_seconds=2.0,
                                           rest_timeout_seconds=1.0))


async def _sandbox(h: Harness, method: str, path: str, body: Any = None) -> Any:
    resp = await treq.request(method, h.sandbox + path, json=body, headers=ADMIN)
    assert resp.code < 300, await resp.text()
    return await resp.json() if resp.code != 204 else None


async def _order_expiring_within_a_day(h: Harness) -> None:
    """An order placed 27.5 days ago (the sandbox's clock set back for its birth, then put
    right again: Klarna's clock and the gateway's agree it lapses in half a day)."""
    await _sandbox(h, "POST", "/sandbox/v1/clock", {"advance_seconds": -27.5 * 86400})
    await h.create_order()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    await _sandbox(h, "POST", "/sandbox/v1/clock", {"now": now})
    assert h.gateway.expiry is not None
    await h.gateway.expiry.refresh()


def _break_the_database(path: Path) -> None:
    """Tables gone from under the running gateway: every read of them fails."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE alembic_version RENAME TO alembic_version_gone"))
        conn.execute(text("ALTER TABLE journal RENAME TO journal_gone"))
    engine.dispose()


def _input_series(scrapes: list[str], names: set[str]) -> list[dict[str, str]]:
    """The scrapes as promtool input series, one minute apart (``_``: not exported yet)."""
    series: dict[str, list[str]] = {}
    for i, exposition in enumerate(scrapes):
        for family in text_string_to_metric_families(exposition):
            for s in family.samples:
                if s.name not in names:
                    continue
                labels = {**s.labels, **SERIES_LABELS}
                key = s.name + "{" + ", ".join(f'{k}="{v}"' for k, v in
                                               sorted(labels.items())) + "}"
                series.setdefault(key, ["_"] * len(scrapes))[i] = repr(float(s.value))
    return [{"series": k, "values": " ".join(v)} for k, v in sorted(series.items())]


def _expected(rule: dict[str, Any], labels: dict[str, str], value: str = "") -> dict[str, Any]:
    annotations = {k: v.replace("{{ $value }}", value)
                   .replace("{{ $labels.instance }}", SERIES_LABELS["instance"])
                   for k, v in rule["annotations"].items()}
    return {"exp_labels": {**rule["labels"], **labels}, "exp_annotations": annotations}


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_each_alert_against_series_the_gateway_produced(tmp_path: Path,
                                                              promtool: str) -> None:
    db = tmp_path / "gateway.db"
    h = await start_gateway(f"sqlite:///{db}", _config())
    scrapes: list[str] = []
    try:
        # 0-5 min: healthy, one activation a minute.
        for _ in range(6):
            created = await h.create_order()
            assert (await h.call(h.sdk().activate, created["rno"]))[0] == "ok"
            scrapes.append(await _scrape(h))
        # 6-13 min: an authorization about to lapse; Klarna answers the first capture 429
        # with Retry-After: 60, so the merchant may send nothing for a minute: every
        # activation is answered 9119, and the one whose capture is journaled cannot be
        # settled from its order: it stays unfinished past give_up_seconds.
        await _order_expiring_within_a_day(h)
        orders = [await h.create_order() for _ in range(16)]
        await h.fault(method="POST", path="/captures$", action="rate_limit", retry_after=60)
        for i in range(8):
            for created in orders[2 * i:2 * i + 2]:
                assert (await fault_of(h, h.sdk().activate, created["rno"])).faultCode \
                    == 9119
            await task.deferLater(reactor, 0.6, lambda: None)
            scrapes.append(await _scrape(h))
        # 14-17 min: the database breaks under the gateway; calls keep coming (and fail).
        _break_the_database(db)
        for created in orders[:4]:
            await fault_of(h, h.sdk().activate, created["rno"])
            scrapes.append(await _scrape(h))
    finally:
        await h.gateway.stop()

    rules = {r["alert"]: r for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]}
    job = {"job": SERIES_LABELS["job"]}
    cases = [
        ("KlarnaGatewayAuthorizationsExpiring", "5m", "7m", job, "1"),
        ("KlarnaGateway9119Rising", "6m", "13m", job, ""),
        ("KlarnaGatewayJournalEntriesStuck", "5m", "13m", job, ""),
        ("KlarnaGatewayNotReady", "13m", "17m", SERIES_LABELS, ""),
        ("KlarnaGatewayDatabaseErrors", "13m", "15m", SERIES_LABELS, ""),
    ]
    assert set(rules) == {c[0] for c in cases}  # every alert is tested
    tests = [{"alertname": name, "eval_time": before, "exp_alerts": []}
             for name, before, _, _, _ in cases]
    tests += [{"alertname": name, "eval_time": after,
               "exp_alerts": [_expected(rules[name], labels, value)]}
              for name, _, after, labels, value in cases]
    unit = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": _input_series(scrapes, _named(RULES)),
                       "alert_rule_test": tests}]}
    path = tmp_path / "alerts.test.yml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False, width=1000))
    out = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr + path.read_text()
    assert "SUCCESS" in out.stdout
