"""Run-time fault injection for reliability tests (docs/order-management.md#fault-injection).

A fault matches requests by method (absent = any) and a regular expression searched in the
request path. Control paths (``/sandbox/v1/...``) are never matched. ``times`` is a budget of
*matching* requests: each one consumes a unit, and fires the fault when a draw from the
fault's own ``random.Random(seed)`` is below ``probability``. With the default probability of
1.0 that simply means "the next ``times`` matching requests". ``times: null`` means unlimited.

Actions (what the resource does when a fault fires):

* ``fail``            answer ``status`` (default 503) with a Klarna error body; nothing applied.
* ``apply_then_fail`` apply the operation (and store its idempotent response), then answer
                      ``status`` -- or drop the connection when ``status`` is 0.
* ``hang``            never answer; the request is released when the client disconnects.
* ``reset``           abort the TCP connection; nothing applied.
* ``latency``         answer normally, ``delay_ms`` later.
* ``rate_limit``      answer 429 TOO_MANY_REQUESTS; nothing applied.

``delay_ms`` also delays the answer of ``fail``, ``apply_then_fail`` and ``rate_limit``.

Klarna's rate limit, emulated: ``eid`` restricts a fault to one merchant's requests (by its
HTTP Basic credentials), ``per_second`` makes a ``rate_limit`` fault spare the requests
within that many per second (a sliding one-second window of the requests it let through,
on the host's clock) and fire on the ones beyond, and ``retry_after`` puts a ``Retry-After``
(seconds) on the answer of ``rate_limit`` and ``fail``.
"""
from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("fail", "apply_then_fail", "hang", "reset", "latency", "rate_limit")
CONTROL_PREFIX = "/sandbox/"


class FaultSpecError(ValueError):
    """A fault definition that cannot be used; the message names the field."""


@dataclass
class Fault:
    id: str
    path: str
    action: str
    method: str | None = None
    status: int = 503
    times: int | None = 1
    probability: float = 1.0
    delay_ms: int = 0
    seed: int = 0
    eid: int | None = None
    per_second: int | None = None
    retry_after: int | None = None
    hits: int = 0
    matched: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)
    _random: random.Random = field(init=False, repr=False)
    _passed: deque[float] = field(init=False, repr=False, default_factory=deque)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)
        self._random = random.Random(self.seed)

    @property
    def remaining(self) -> int | None:
        return None if self.times is None else max(self.times - self.matched, 0)

    def matches(self, method: str, path: str, eid: int | None = None) -> bool:
        if self.remaining == 0:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.eid is not None and self.eid != eid:
            return False
        return self._pattern.search(path) is not None

    def within_rate(self, now: float) -> bool:
        """``per_second``: whether this request fits the last second's allowance (it is then
        let through, and counted in the window)."""
        if self.per_second is None:
            return False
        while self._passed and self._passed[0] <= now - 1.0:
            self._passed.popleft()
        if len(self._passed) < self.per_second:
            self._passed.append(now)
            return True
        return False

    def draw(self) -> bool:
        """Consume one unit of the budget and decide whether the fault fires."""
        self.matched += 1
        fired = self.probability >= 1.0 or self._random.random() < self.probability
        if fired:
            self.hits += 1
        return fired

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "method": self.method, "path": self.path, "action": self.action,
                "status": self.status, "times": self.times, "probability": self.probability,
                "delay_ms": self.delay_ms, "seed": self.seed, "eid": self.eid,
                "per_second": self.per_second, "retry_after": self.retry_after,
                "hits": self.hits,
                "matched": self.matched, "remaining": self.remaining}


def _field(spec: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = spec.get(name, default)
    if value is default:
        return value
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise FaultSpecError(f"{name}: wrong type")
    return value


def parse_fault(spec: Any, fault_id: str) -> Fault:
    """Build a :class:`Fault` from the control API's JSON.

    Raises:
        FaultSpecError: a field is missing, of the wrong type or out of range.
    """
    if not isinstance(spec, dict):
        raise FaultSpecError("body: must be a JSON object")
    path = spec.get("path")
    if not isinstance(path, str) or not path:
        raise FaultSpecError("path: required regular expression")
    try:
        re.compile(path)
    except re.error as e:
        raise FaultSpecError(f"path: not a regular expression ({e})") from None
    action = spec.get("action")
    if action not in ACTIONS:
        raise FaultSpecError(f"action: must be one of {', '.join(ACTIONS)}")
    method = _field(spec, "method", str, None)
    if method is not None:
        method = method.upper()
    times = spec.get("times", 1)
    if times is not None and (not isinstance(times, int) or isinstance(times, bool) or times < 1):
        raise FaultSpecError("times: must be a positive integer or null (unlimited)")
    probability = _field(spec, "probability", (int, float), 1.0)
    if not 0.0 <= float(probability) <= 1.0:
        raise FaultSpecError("probability: must be between 0 and 1")
    delay_ms = _field(spec, "delay_ms", int, 0)
    if delay_ms < 0:
        raise FaultSpecError("delay_ms: must not be negative")
    seed = _field(spec, "seed", int, 0)
    status = _field(spec, "status", int, 429 if action == "rate_limit" else 503)
    if action == "rate_limit":
        status = 429
    elif action == "apply_then_fail":
        if status != 0 and not 400 <= status <= 599:
            raise FaultSpecError("status: must be 0 (drop the connection) or 400-599")
    elif action == "fail" and not 400 <= status <= 599:
        raise FaultSpecError("status: must be 400-599")
    eid = _field(spec, "eid", int, None)
    if eid is not None and eid < 1:
        raise FaultSpecError("eid: must be a positive integer")
    per_second = _field(spec, "per_second", int, None)
    if per_second is not None and (action != "rate_limit" or per_second < 1):
        raise FaultSpecError("per_second: a positive integer, for rate_limit only")
    retry_after = _field(spec, "retry_after", int, None)
    if retry_after is not None and (action not in ("rate_limit", "fail") or retry_after < 0):
        raise FaultSpecError("retry_after: seconds (0 or more), for rate_limit and fail only")
    return Fault(id=fault_id, path=path, action=action, method=method, status=status,
                 times=times, probability=float(probability), delay_ms=delay_ms, seed=seed,
                 eid=eid, per_second=per_second, retry_after=retry_after)


class FaultRegistry:
    """The active faults of one sandbox, in creation order (the first match fires)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, spec: Any) -> Fault:
        fault = parse_fault(spec, f"fault-{self._next_id}")
        self._next_id += 1
        self._faults.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.id != fault_id]
        return len(self._faults) != before

    def clear(self) -> None:
        self._faults.clear()

    def restart_numbering(self) -> None:
        """Number the next fault ``fault-1`` again (a seeded sandbox's reset)."""
        self._next_id = 1

    def list(self) -> list[Fault]:
        return list(self._faults)

    def select(self, method: str, path: str, eid: int | None = None,
               now: float = 0.0) -> Fault | None:
        """The fault that fires for this request of merchant ``eid`` (None: no valid
        credentials) arriving at ``now``, if any (consumes budgets of matches)."""
        if path.startswith(CONTROL_PREFIX):
            return None
        for fault in self._faults:
            if fault.matches(method, path, eid) and not fault.within_rate(now) \
                    and fault.draw():
                return fault
        return None
