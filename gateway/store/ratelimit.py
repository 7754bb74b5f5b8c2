"""Request slots per merchant shared by every gateway process on one PostgreSQL.

The :class:`~gateway.om.ratelimit.RateLimiter` the composition root gives the REST client
when the store is PostgreSQL (a SQLite store belongs to one process, whose buckets live in
memory: :class:`~gateway.om.ratelimit.LocalRateLimiter`).

- A limited merchant's slot is one statement, one round trip: an ``INSERT … ON CONFLICT DO
  UPDATE … WHERE … RETURNING`` on the merchant's row of ``rest_rate_limits`` runs
  :func:`gateway.om.ratelimit.take` in SQL. The row lock makes concurrent takers, in any
  process, queue one behind the other; a taker whose slot would come too late matches no
  row, takes nothing and gets no row back.
- Time is the database's (``statement_timestamp()``), and the statement returns a wait
  relative to it, so the processes' clocks need not agree. A row lock waited for makes that
  time a little old, which only makes the wait longer: never a request early.
- A pause (a 429's ``Retry-After``) is written to the row, so the merchant's next slot in
  any process waits for it. Merchants without a limit take no slot at all (no round trip):
  their calls wait for the pauses this process knows, which it records itself and reads
  from the table every :data:`REFRESH_SECONDS` (:meth:`SharedRateLimiter.refresh`).
- A clock that jumped back (a row far in the database's future) is treated as empty rather
  than holding a merchant until the clock catches up.
"""
from __future__ import annotations

from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import Connection
from twisted.logger import Logger

from gateway.metrics import NO_METRICS, Metrics
from gateway.om.ratelimit import MAX_PAUSE_SECONDS, Limit, LocalRateLimiter
from gateway.store.database import Database

log = Logger()

#: Seconds between reads of the pauses other processes recorded: well under the shortest
#: Retry-After (1 s), so this process's requests already waiting for their slots learn of
#: a pause before most of them would be sent into it. One small read, off any call's path.
REFRESH_SECONDS: Final = 0.25
#: The furthest ahead a row's arrival time can legitimately be, beyond the bucket's own span:
#: a pause plus the longest budget a call waits for a slot, with room to spare.
_HORIZON: Final = MAX_PAUSE_SECONDS + 60.0

_NOW = "extract(epoch FROM statement_timestamp())::float8"
_TAT = f"(CASE WHEN b.tat > {_NOW} + :span + {_HORIZON} THEN {_NOW} ELSE b.tat END)"
_PAUSED = (f"(CASE WHEN b.paused_until > {_NOW} + {MAX_PAUSE_SECONDS + 1} THEN 0 "
           "ELSE b.paused_until END)")
_START = f"greatest({_TAT}, {_NOW}, {_PAUSED} + :lead)"

_ACQUIRE = text(f"""
INSERT INTO rest_rate_limits AS b (eid, tat, paused_until)
VALUES (:eid, {_NOW} + :interval, 0)
ON CONFLICT (eid) DO UPDATE SET tat = {_START} + :interval
WHERE {_START} + :interval - :span <= {_NOW} + :max_wait
RETURNING b.tat - :span - {_NOW}
""")

_PAUSE = text(f"""
INSERT INTO rest_rate_limits AS b (eid, tat, paused_until)
VALUES (:eid, 0, {_NOW} + :seconds)
ON CONFLICT (eid) DO UPDATE SET paused_until = greatest({_PAUSED}, excluded.paused_until)
""")

_PAUSES = text(f"""
SELECT eid, paused_until - {_NOW} FROM rest_rate_limits
WHERE paused_until > {_NOW} AND paused_until <= {_NOW} + {MAX_PAUSE_SECONDS + 1}
""")


def _acquire(conn: Connection, eid: int, limit: Limit, max_wait: float) -> float | None:
    interval = limit.interval
    row = conn.execute(_ACQUIRE, {"eid": eid, "interval": interval,
                                  "span": limit.burst * interval,
                                  "lead": (limit.burst - 1) * interval,
                                  "max_wait": max_wait}).first()
    return None if row is None else max(0.0, float(row[0]))


def _pause(conn: Connection, eid: int, seconds: float) -> None:
    conn.execute(_PAUSE, {"eid": eid, "seconds": seconds})


def _pauses(conn: Connection) -> list[tuple[int, float]]:
    return [(int(eid), float(left)) for eid, left in conn.execute(_PAUSES)]


class SharedRateLimiter:
    """Request slots and pauses in ``rest_rate_limits`` (PostgreSQL)."""

    def __init__(self, db: Database, clock: Any, metrics: Metrics = NO_METRICS) -> None:
        if db.is_sqlite:
            raise ValueError("a SQLite store belongs to one process: use LocalRateLimiter")
        self.db = db
        self.clock = clock
        self.metrics = metrics
        #: The pauses this process knows (its own 429s, and the table's, refreshed).
        self.local = LocalRateLimiter(clock)

    async def acquire(self, eid: int, limit: Limit | None, max_wait: float) -> float | None:
        if limit is None or self.local.paused_for(eid) > max_wait:
            return self.local.wait_for_pause(eid, max_wait)
        try:
            return await self.db.run_interaction("rate_limit_acquire", _acquire, eid, limit,
                                                 max_wait)
        except Exception:
            self.metrics.database_error("rate_limit")
            raise

    async def pause(self, eid: int, seconds: float) -> None:
        self.local.note_pause(eid, seconds)
        try:
            await self.db.run_interaction("rate_limit_pause", _pause, eid,
                                          min(seconds, MAX_PAUSE_SECONDS))
        except Exception as e:  # noqa: BLE001 - this process keeps the pause regardless
            self.metrics.database_error("rate_limit")
            log.warn("pause of eid {eid} ({seconds:.1f} s) not shared with other processes: "
                     "{error}", eid=eid, seconds=seconds, error=type(e).__name__)

    def paused_for(self, eid: int) -> float:
        return self.local.paused_for(eid)

    async def refresh(self) -> None:
        """Learn the pauses other processes recorded (``serve`` calls it every
        :data:`REFRESH_SECONDS`). Never raises: the pauses known stay as they are."""
        try:
            pauses = await self.db.run_interaction("rate_limit_pauses", _pauses)
        except Exception as e:  # noqa: BLE001 - retried at the next refresh
            self.metrics.database_error("rate_limit")
            log.debug("rate-limit pauses not refreshed: {e}", e=e)
            return
        for eid, left in pauses:
            self.local.note_pause(eid, left)
