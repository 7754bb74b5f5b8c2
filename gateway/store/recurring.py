"""KCO v2 recurring tokens → Customer Token API tokens, scoped by merchant."""
from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.store import models as m

_T = m.recurring_tokens


class TokenConflictError(Exception):
    """The recurring token already maps to another customer token for this eid."""


def customer_token(conn: Connection, eid: int, recurring_token: str) -> str | None:
    row = conn.execute(select(_T.c.customer_token).where(and_(
        _T.c.eid == eid, _T.c.recurring_token == recurring_token))).first()
    return None if row is None else str(row.customer_token)


def map_token(conn: Connection, now: float, eid: int, recurring_token: str,
              customer_token_: str, origin: str) -> bool:
    """Record the mapping; True if new, False if already there; a different customer token
    for the same recurring token is a conflict."""
    existing = customer_token(conn, eid, recurring_token)
    if existing is not None:
        if existing != customer_token_:
            raise TokenConflictError(f"recurring token {recurring_token} already maps to "
                                     f"{existing} for eid {eid}")
        return False
    try:
        with conn.begin_nested():
            conn.execute(_T.insert().values(eid=eid, recurring_token=recurring_token,
                                            customer_token=customer_token_, origin=origin,
                                            created_at=now))
    except IntegrityError:
        return map_token(conn, now, eid, recurring_token, customer_token_, origin)
    return True


def tokens_of(conn: Connection, recurring_token: str) -> list[tuple[int, str]]:
    """(eid, customer token) of every merchant that mapped this recurring token."""
    return [(int(r.eid), str(r.customer_token)) for r in conn.execute(
        select(_T.c.eid, _T.c.customer_token).where(_T.c.recurring_token == recurring_token))]
