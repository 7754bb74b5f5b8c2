"""The binding's state machine (``gateway/binding.py``), every pair, on a fake clock.

Two tables. The first says, for an entry in each phase and a call arriving (first, or as
a twin that joined in flight), with its lease or grace live or lapsed and its retry window
open or passed, what the call does; it is written out here by hand, so it checks
``decide`` rather than restating it. The second walks every phase x every event x token
right/wrong x lapsed/live through the real store's compare-and-set statements on SQLite
and checks the phase they leave against ``binding.apply`` (the table the store's
statements are built from, and the diagram in ``docs/architecture.md`` is drawn from).
"""
from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer, task

from gateway.binding import (
    DELIVERY_GRACE_SECONDS, TRANSITIONS, Arrival, Binding, Decision, Event, Phase, apply,
    decide, mermaid,
)
from gateway.engine.claim import Held
from gateway.store import journal, schema
from gateway.store.database import Database
from gateway.store.store import Store
from tests.store.journal_helpers import intend, succeed

NOW = 1_000_000.0
WINDOW = 3600.0
LEASE = 10.0

D = Decision
#: (phase, arrival, lapsed, window passed) -> decision. ``lapsed``: the lease (running)
#: or the delivery grace (replying) has passed; the window is measured from the hand-over.
DECISIONS: dict[tuple[Phase, Arrival, bool, bool], Decision] = {}
for lapsed_, passed_ in itertools.product((False, True), repeat=2):
    for arrival_ in Arrival:
        DECISIONS[(Phase.RUNNING, arrival_, lapsed_, passed_)] = \
            D.TAKEOVER if lapsed_ else D.JOIN
        DECISIONS[(Phase.RELEASED, arrival_, lapsed_, passed_)] = D.TAKEOVER
        for terminal in (Phase.DELIVERED, Phase.EXPIRED, Phase.FAILED, Phase.ANSWERED):
            # A first caller never sees these bound; a joined twin is passed the outcome.
            DECISIONS[(terminal, arrival_, lapsed_, passed_)] = \
                D.NEW if arrival_ is Arrival.FIRST else D.REPLAY
    DECISIONS[(Phase.REPLYING, Arrival.FIRST, lapsed_, passed_)] = \
        D.WAIT if not lapsed_ else (D.NEW if passed_ else D.REPLAY)
    DECISIONS[(Phase.REPLYING, Arrival.JOINED, lapsed_, passed_)] = \
        D.WAIT if not lapsed_ else D.REPLAY
    DECISIONS[(Phase.UNDELIVERED, Arrival.FIRST, lapsed_, passed_)] = \
        D.NEW if passed_ else D.REPLAY
    DECISIONS[(Phase.UNDELIVERED, Arrival.JOINED, lapsed_, passed_)] = D.REPLAY


def moment(phase: Phase, lapsed: bool, passed: bool) -> tuple[Binding, float]:
    """An entry in ``phase``, its phase changed (or reply handed over) at NOW, and the
    time to decide at."""
    until = {Phase.RUNNING: NOW + LEASE, Phase.REPLYING: NOW + DELIVERY_GRACE_SECONDS
             }.get(phase)
    at = NOW + WINDOW + LEASE + 1 if passed else NOW + LEASE + 1 if lapsed else NOW + 1
    return Binding(phase, "tok", until, NOW), at


@pytest.mark.parametrize("case", sorted(DECISIONS, key=str), ids=str)
def test_every_phase_and_arrival(case: tuple[Phase, Arrival, bool, bool]) -> None:
    phase, arrival, lapsed, passed = case
    if phase in (Phase.RUNNING, Phase.REPLYING) and passed and not lapsed:
        pytest.skip("a live lease or grace cannot outlast the window")
    entry, at = moment(phase, lapsed, passed)
    verdict = decide(entry, arrival, at, WINDOW)
    assert verdict.decision is DECISIONS[case], verdict.why
    if verdict.decision is D.NEW and arrival is Arrival.FIRST and phase.bound:
        assert verdict.unbind, "a bound entry must be unbound before a new operation"
    if verdict.decision is D.REPLAY:
        # Claim the delivery while the reply is still owed to someone; pass a finished
        # outcome on as it is.
        assert verdict.claim_delivery is (phase in (Phase.REPLYING, Phase.UNDELIVERED))


def test_no_entry_is_a_new_operation() -> None:
    assert decide(None, Arrival.FIRST, NOW, WINDOW).decision is D.NEW


def test_a_replay_counts_the_window_from_its_last_hand_over() -> None:
    """A replay whose delivery was never recorded (the process died): a retry arriving
    inside the window measured from that hand-over is still a retry, even if it came after
    the window measured from the first hand-over."""
    entry = Binding(Phase.REPLYING, "t", NOW + WINDOW - 1 + DELIVERY_GRACE_SECONDS, NOW)
    assert decide(entry, Arrival.FIRST, NOW + WINDOW + 10, WINDOW).decision is D.REPLAY


# -- the store's compare-and-set statements against the table --------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One migrated database for the module (each case makes its own entries)."""
    path = tmp_path_factory.mktemp("binding") / "binding.db"
    db = Database(f"sqlite:///{path}", task.Clock(), threaded=False)
    schema.upgrade(db.engine)
    yield db
    db.stop()


@pytest.fixture
def store(database: Database) -> Store:
    clock = task.Clock()
    clock.advance(NOW)
    return Store(database, clock)


def report(store: Store, mark: journal.Mark) -> None:
    """A delivery report, written as the store writes them (with its next transaction)."""
    store.report(mark)
    now(store.flush_reports())


def now(d: Any) -> Any:
    box: list[Any] = []
    defer.ensureDeferred(d).addBoth(box.append)
    if hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


class Entry:
    """One real journal entry brought into a phase through the store's own operations."""

    def __init__(self, store: Store, phase: Phase) -> None:
        self.store = store
        self.fp = uuid.uuid4().hex
        if phase is Phase.ANSWERED:
            self.id = now(store.record_answer(journal.Answered(
                1234, "activate", self.fp, "{}", None, None, None, reply_json='"ok"')))
            self.made = None
            return
        self.made, self.lease = now(intend(store, fingerprint=self.fp, lease_seconds=LEASE))
        self.id = self.made.journal_id
        if phase is Phase.RELEASED:
            now(store.release(self.id, self.lease, None))
        elif phase is Phase.FAILED:
            now(store.fail(self.id, self.lease, None, 9103, "not_allowed_operation: x"))
        elif phase in (Phase.REPLYING, Phase.UNDELIVERED, Phase.DELIVERED, Phase.EXPIRED):
            _, delivery = now(succeed(store, self.made, self.lease, None))
            if phase is not Phase.REPLYING:
                report(store, journal.Mark(self.id, delivery, phase is Phase.DELIVERED,
                                                    NOW))
            if phase is Phase.EXPIRED:
                now(store.expire(self.id, self.token))
        assert self.phase is phase

    @property
    def token(self) -> str:
        return str(now(self.store.get_entry(self.id)).token)

    @property
    def phase(self) -> Phase:
        return now(self.store.get_entry(self.id)).phase

    def fire(self, event: Event, token: str) -> None:
        s, i = self.store, self.id
        if event in (Event.FINISH, Event.FINISH_UNATTENDED) and self.made is None:
            held = Held(i, token, (), 1234, None)  # an entry without steps: outcome only
            now(s.finish(held, '"ok"', "d" if event is Event.FINISH else None))
        elif event in (Event.FINISH, Event.FINISH_UNATTENDED):
            assert self.made is not None
            now(succeed(s, self.made, token, None, client=event is Event.FINISH))
        elif event in (Event.FAULT, Event.FAULT_UNATTENDED):
            now(s.fail(i, token, None, 9103, "not_allowed_operation: x",
                       client=event is Event.FAULT))
        elif event is Event.RELEASE:
            now(s.release(i, token, None))
        elif event is Event.TAKEOVER:
            now(s.take_over(i, token, "new-lease", LEASE))
        elif event in (Event.DELIVERED, Event.UNDELIVERED):
            report(s, journal.Mark(i, token, event is Event.DELIVERED, NOW))
        elif event is Event.REPLAY:
            now(s.replay(i, token, "new-delivery"))
        elif event is Event.EXPIRE:
            now(s.expire(i, token))
        elif event is Event.INTENT:
            try:
                now(intend(s, fingerprint=self.fp))
            except journal.TwinBoundError:
                pass
        else:  # ANSWER, REFUSE: a new entry, never bound; this one is untouched
            now(s.record_answer(journal.Answered(
                1234, "activate", self.fp, json.dumps({}), None, None, None,
                reply_json='"ok"' if event is Event.ANSWER else None,
                fault_code=None if event is Event.ANSWER else 9103,
                fault_string=None if event is Event.ANSWER else "x")))


CASES = list(itertools.product(Phase, Event, (True, False), (True, False)))


@pytest.mark.parametrize("phase,event,token_matches,lapsed", CASES,
                         ids=[f"{p.value}-{e.value}-{'tok' if t else 'foreign'}-"
                              f"{'lapsed' if lp else 'live'}" for p, e, t, lp in CASES])
def test_every_phase_and_event_through_the_store(store: Store, phase: Phase, event: Event,
                                                 token_matches: bool, lapsed: bool) -> None:
    entry = Entry(store, phase)
    token = entry.token if token_matches else "foreign"
    if lapsed:
        store.clock.advance(LEASE + DELIVERY_GRACE_SECONDS + 1)
    timed = phase in (Phase.RUNNING, Phase.REPLYING)  # only these have an ``until``
    expected = apply(phase, event, token_matches=token_matches, lapsed=lapsed and timed)
    entry.fire(event, token)
    assert entry.phase is (expected or phase)


def test_every_event_has_a_transition_and_every_phase_is_reachable() -> None:
    assert {t.event for t in TRANSITIONS} == set(Event)
    assert {t.target for t in TRANSITIONS} == set(Phase)


def test_the_diagram_is_drawn_from_the_table() -> None:
    diagram = mermaid()
    for t in TRANSITIONS:
        assert f"--> {t.target.value}: {t.event.value}" in diagram
    for p in Phase:
        assert (f"    {p.value} --> [*]" in diagram) is (not p.bound)
