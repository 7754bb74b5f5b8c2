"""Prometheus metrics of one gateway process (``GET /metrics`` on the admin listener).

One :class:`Metrics` per process, on its own ``CollectorRegistry`` (never the global one:
tests run several gateways in one interpreter). The parts record into it through small
methods, so none of them imports ``prometheus_client``; a part built without metrics gets
:data:`NO_METRICS`, which records nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "MetricInfo", "Metrics", "NO_METRICS", "endpoint_of"]

_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                           2.5, 5.0, 10.0)
#: Where ``database_errors_total`` counts failures (``source`` label).
DATABASE_ERROR_SOURCES: Final = ("call", "readiness", "background", "rate_limit")
_WAIT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DB_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_ID: Final = re.compile(r"(?<=/)(?!v\d+(?:/|$))[^/]*\d[^/]*")


def endpoint_of(path: str) -> str:
    """A REST path with its ids replaced (bounded label values): ``/ordermanagement/v1/
    orders/{id}/captures/{id}/trigger-send-out``."""
    return _ID.sub("{id}", path.split("?", 1)[0])


@dataclass(frozen=True)
class MetricInfo:
    """One metric as ``/metrics`` exposes it (``docs/operations.md`` lists them, generated)."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.registry = r = CollectorRegistry()
        p = "klarna_gateway_"
        self.legacy_calls = Counter(p + "legacy_calls_total",
                                    "Legacy XML-RPC calls answered, by method and outcome "
                                    "(ok, or the fault code)", ["method", "outcome"], registry=r)
        self.legacy_seconds = Histogram(p + "legacy_call_seconds",
                                        "Legacy call latency, request read to reply written",
                                        ["method"], buckets=_LATENCY_BUCKETS, registry=r)
        self.retry_later = Counter(p + "legacy_9119_total",
                                   "Calls answered 9119 (retry the same call)", ["method"],
                                   registry=r)
        self.replays = Counter(p + "legacy_replays_total",
                               "Replies replayed to a client that never received them",
                               ["method"], registry=r)
        self.rest_requests = Counter(p + "rest_requests_total",
                                     "Order Management requests, by endpoint and status "
                                     "(or error)", ["method", "endpoint", "status"], registry=r)
        self.rest_seconds = Histogram(p + "rest_request_seconds",
                                      "Order Management request latency (one attempt)",
                                      ["method", "endpoint"], buckets=_LATENCY_BUCKETS,
                                      registry=r)
        self.rest_retries = Counter(p + "rest_retries_total",
                                    "Order Management attempts retried (5xx, 429, timeout, "
                                    "connection loss)", ["method", "endpoint"], registry=r)
        self.journal_pending = Gauge(p + "journal_pending_entries",
                                     "Journal entries not finished (in flight or resumable)",
                                     registry=r)
        self.journal_unresolved = Gauge(p + "journal_unresolved_money_steps",
                                        "Captures/refunds journaled whose outcome is unknown",
                                        registry=r)
        self.takeovers = Counter(p + "lease_takeovers_total",
                                 "Journal entries taken over after their lease lapsed",
                                 registry=r)
        self.recovery_runs = Counter(p + "recovery_runs_total",
                                     "Recovery sweeps, by outcome of the entries resumed",
                                     ["outcome"], registry=r)
        self.db_seconds = Histogram(p + "database_seconds",
                                    "Time per database transaction (queue wait included)",
                                    ["interaction"], buckets=_DB_BUCKETS, registry=r)
        self.commit_batch = Histogram(p + "database_commit_interactions",
                                      "Interactions committed together (SQLite group commit)",
                                      buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.text_repairs = Counter(p + "text_repairs_total",
                                    "Free-text fields of legacy calls found mis-encoded "
                                    "(mojibake), by merchant, legacy field and the "
                                    "merchant's text_repair (report: sent as received; fix: "
                                    "sent repaired)", ["eid", "field", "mode"], registry=r)
        self.expiring = Gauge(p + "authorizations_expiring",
                              "Registered authorizations with money uncaptured that lapse "
                              "within the window (1d, 3d; refreshed every "
                              "expiry_check_seconds)", ["within"], registry=r)
        self.rate_limit_waits = Histogram(p + "rest_rate_limit_wait_seconds",
                                          "Waits for a REST request slot (the merchant's "
                                          "rest_rate_limit, or Klarna's Retry-After)",
                                          ["eid"], buckets=_WAIT_BUCKETS, registry=r)
        self.throttled_calls = Counter(p + "rest_throttled_calls_total",
                                       "REST requests not sent: no slot within the call's "
                                       "budget (the call answered 9119)", ["eid"],
                                       registry=r)
        self.database_errors = Counter(p + "database_errors_total",
                                       "Database failures met, by where: call (a legacy "
                                       "call failed on it), readiness, background (gauges, "
                                       "recovery), rate_limit", ["source"], registry=r)
        for source in DATABASE_ERROR_SOURCES:  # from 0, so the first failure is an increase
            self.database_errors.labels(source)
        self.ready = Gauge(p + "ready", "1 while /readyz would answer 200 (database reachable "
                           "and migrated, recovery sweeping, not draining), else 0; refreshed "
                           "every 15 s and on every /readyz", registry=r)
        self.journal_oldest_pending = Gauge(p + "journal_oldest_pending_seconds",
                                            "Age of the oldest unfinished journal entry "
                                            "(0: none)", registry=r)
        self.give_up = Gauge(p + "give_up_seconds", "The configured give_up_seconds: an "
                             "unresolved capture/refund is settled after this long",
                             registry=r)
        self.too_many_requests = Counter(p + "rest_429_total",
                                         "429 Too Many Requests received from Klarna",
                                         ["eid"], registry=r)

    def catalogue(self) -> list[MetricInfo]:
        """Every metric of this registry, in the order declared: the name as exposed (a
        counter's with ``_total``), its type, labels and help."""
        found = []
        for metric in vars(self).values():
            if hasattr(metric, "_labelnames"):
                suffix = "_total" if metric._type == "counter" else ""
                found.append(MetricInfo(metric._name + suffix, metric._type,
                                        tuple(metric._labelnames), metric._documentation))
        return found

    # -- recording (each part calls these) ------------------------------------------------

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once (every call records several; the
        lookup takes a lock and builds a key each time)."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def legacy_call(self, method: str | None, fault_code: int | None, seconds: float,
                    replayed: bool = False) -> None:
        name = method or "-"
        outcome = "ok" if fault_code is None else str(fault_code)
        self._child(self.legacy_calls, name, outcome).inc()
        self._child(self.legacy_seconds, name).observe(seconds)
        if fault_code == 9119:
            self.retry_later.labels(name).inc()
        if replayed:
            self.replays.labels(name).inc()

    def rest_request(self, method: str, path: str, status: int | str, seconds: float) -> None:
        endpoint = endpoint_of(path)
        self._child(self.rest_requests, method, endpoint, str(status)).inc()
        self._child(self.rest_seconds, method, endpoint).observe(seconds)

    def rest_retry(self, method: str, path: str) -> None:
        self.rest_retries.labels(method, endpoint_of(path)).inc()

    def rate_limit_wait(self, eid: int, seconds: float) -> None:
        self.rate_limit_waits.labels(str(eid)).observe(seconds)

    def throttled(self, eid: int) -> None:
        self.throttled_calls.labels(str(eid)).inc()

    def rate_limited(self, eid: int) -> None:
        self.too_many_requests.labels(str(eid)).inc()

    def database_error(self, source: str) -> None:
        self.database_errors.labels(source).inc()

    def readiness(self, ready: bool) -> None:
        self.ready.set(1 if ready else 0)

    def oldest_pending(self, seconds: float) -> None:
        self.journal_oldest_pending.set(seconds)

    def give_up_seconds(self, seconds: float) -> None:
        self.give_up.set(seconds)

    def takeover(self) -> None:
        self.takeovers.inc()

    def recovery(self, outcome: str, count: int = 1) -> None:
        self.recovery_runs.labels(outcome).inc(count)

    def database(self, interaction: str, seconds: float) -> None:
        self._child(self.db_seconds, interaction).observe(seconds)

    def committed(self, interactions: int) -> None:
        self.commit_batch.observe(interactions)

    def journal(self, pending: int, unresolved: int) -> None:
        self.journal_pending.set(pending)
        self.journal_unresolved.set(unresolved)

    def expiring_authorizations(self, within: str, count: int) -> None:
        self.expiring.labels(within).set(count)

    def text_repair(self, eid: int, field: str, mode: str) -> None:
        self.text_repairs.labels(str(eid), field, mode).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _NoMetrics(Metrics):
    """Records nothing (parts built without a registry: tools, unit tests)."""

    def __init__(self) -> None:  # noqa: D107 - deliberately no instruments
        pass

    def legacy_call(self, *args: object, **kwargs: object) -> None:
        pass

    def rest_request(self, *args: object, **kwargs: object) -> None:
        pass

    def rest_retry(self, *args: object, **kwargs: object) -> None:
        pass

    def rate_limit_wait(self, *args: object) -> None:
        pass

    def throttled(self, *args: object) -> None:
        pass

    def rate_limited(self, *args: object) -> None:
        pass

    def database_error(self, *args: object) -> None:
        pass

    def readiness(self, *args: object) -> None:
        pass

    def oldest_pending(self, *args: object) -> None:
        pass

    def give_up_seconds(self, *args: object) -> None:
        pass

    def takeover(self) -> None:
        pass

    def recovery(self, *args: object, **kwargs: object) -> None:
        pass

    def database(self, *args: object, **kwargs: object) -> None:
        pass

    def journal(self, *args: object, **kwargs: object) -> None:
        pass

    def committed(self, *args: object, **kwargs: object) -> None:
        pass

    def expiring_authorizations(self, *args: object, **kwargs: object) -> None:
        pass

    def text_repair(self, *args: object, **kwargs: object) -> None:
        pass

    def render(self) -> bytes:
        return b""


NO_METRICS: Final[Metrics] = _NoMetrics()
