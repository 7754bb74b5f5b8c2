"""Pure money rules of the engine: what to do with an old step, and whether a
capture/refund Klarna holds is the one a journaled step sent.

No I/O and no clock: each takes the facts (ages in seconds, bodies) and returns a value, so
the money rules can be read and tested on their own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.model import MoneyKind

#: Klarna honours an idempotency key for 24 h; past 23 h the engine stops trusting it and
#: settles a journaled step from the order's own captures/refunds before re-sending.
KEY_TRUST_SECONDS = 23 * 3600.0
#: After ``give_up_seconds`` a capture/refund is no longer sent, only looked for on the
#: order; it is given up only this much later, once no attempt of ours can still land (a
#: request whose answer timed out may be applied by Klarna after we stopped waiting).
GIVE_UP_QUIET_SECONDS = 120.0


@dataclass(frozen=True)
class StepDecision:
    """What to do with a planned step before (re)sending it.

    ``settle_first``: look for the step's effect on the order before sending (its key may
    have expired at Klarna, or the step has been unresolved long enough to settle).
    ``give_up``: when settling finds nothing, end the entry with this reason instead of
    sending.
    ``hold``: when settling finds nothing, neither send nor give up yet (the entry stays
    pending, the client is told 9119): an earlier attempt may still be landing.
    """

    settle_first: bool
    give_up: str | None = None
    hold: str | None = None


def step_decision(age: float, money: MoneyKind, *, key_trust_seconds: float,
                  give_up_seconds: float, quiet_seconds: float = GIVE_UP_QUIET_SECONDS
                  ) -> StepDecision:
    """Decide from how long ago the step's key was committed (its first send followed at
    once).

    - A capture/refund unresolved for longer than ``give_up_seconds``: it is not sent again
      (rather than move money much later than the merchant meant to), only looked for on
      the order. Until ``quiet_seconds`` more have passed an attempt sent just before may
      still be applied (its answer timed out, not its effect): hold. After that nobody can
      be sending it (we hold the lease; every attempt ended at least ``quiet_seconds``
      ago), so if the order shows no such capture/refund it was never applied: give up.
    - Any step older than the key's trust period: settle from the order first; a non-money
      step whose outcome cannot be read from the order is given up.
    - Otherwise: send (again) with the same key.
    """
    money_moves = money is not MoneyKind.NONE
    if money_moves and age > give_up_seconds + quiet_seconds:
        return StepDecision(True, f"gave up after {int(age // 60)} minutes: Klarna never "
                                  "applied it; send the call again")
    if money_moves and age > give_up_seconds:
        return StepDecision(True, hold="unresolved for too long to be sent again; its last "
                                       "attempt may still be applied: retry the same call")
    if age > key_trust_seconds:
        return StepDecision(True, None if money_moves else
                            f"gave up after {int(age // 3600)} hours: its outcome is "
                            "unknown; check the order")
    return StepDecision(False)


def _line_key(lines: Any) -> list[tuple[Any, ...]]:
    return sorted((str(ln.get("reference")), int(ln.get("quantity") or 0),
                   int(ln.get("total_amount") or 0)) for ln in lines or [])


def same_money(found: dict[str, Any], body: dict[str, Any], amount_key: str) -> bool:
    """Is a capture/refund we have no row for the one a journaled step sent? Same amount,
    same lines and same reference/description: never just the amount, or a portal capture
    of equal value would be booked as ours."""
    if int(found.get(amount_key, -1)) != int(body[amount_key]):
        return False
    if body.get("order_lines") and _line_key(found.get("order_lines")) != \
            _line_key(body.get("order_lines")):
        return False
    return all(found.get(k) == body[k] for k in ("reference", "description") if k in body)
