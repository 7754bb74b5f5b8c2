"""The binding: when an identical legacy call is a retry of an earlier one (pure).

A legacy client that never received its reply sends the same call again; a merchant who
ships a second parcel sends the same call again on purpose. v2 performed both. The gateway
must tell them apart, or it captures twice for a retry or swallows a second parcel. The
rule: an identical call is a retry exactly while the earlier call's reply has not reached
its client. Every other identical call is a new operation, answered as v2 would.

A journal entry's *phase* says where its call stands; while the phase is *bound*, an
identical call (same eid, method and parameters: the fingerprint) belongs to it:

- ``running``: a runner holds the entry's lease (``token``) until ``until``; an identical
  call joins it in flight (one operation: its outcome is ours). A lapsed lease (the runner
  died or stalled) is taken over: the steps go on with their journaled idempotency keys.
- ``released``: unfinished, nobody holds it (the retry budget ran out and the client was
  told 9119 "retry the same call", or a request's outcome is unknown): the retry continues it.
- ``replying``: finished; its reply is being handed to a client under a *delivery token*
  until ``until`` (a short grace). An identical call waits to learn whether it arrived:
  an ERP may send its deliberate repeat the instant the reply is in.
- ``undelivered``: finished; its reply reached nobody (the connection closed first, the
  process died while writing, or recovery finished it: its reply, or the fault it ended
  with after its steps were sent). Within the retry window the next identical call gets
  that outcome, once.

The other phases are not bound: ``delivered`` (the binding ended with the delivery),
``expired`` (its reply was never collected within the retry window), ``failed`` (a fault
handed to the client that waited for it) and ``answered`` (a read, or a call that had
nothing to send: never replayed, always worked out afresh).

Every change of phase is a compare-and-set on the entry's current ``token``: whoever
changes a phase presents the token it saw, and every change writes a new one. A late or
foreign mark (the undelivered report of an earlier hand-over, a runner that lost its
lease) therefore never undoes a newer change. :data:`TRANSITIONS` is that table; the store
builds its guarded ``UPDATE`` statements from it and ``docs/architecture.md`` draws it
(:func:`mermaid`).

A runner that lost its lease (another took the entry over) records what its requests did
(it happened) but never the outcome, and never hands its client a reply it does not own:
it answers 9119, and the retry is given the owner's outcome.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: How long a finished call's reply counts as being handed to its client: an identical call
#: waits that long at most to learn whether it arrived (normally a few milliseconds); past
#: it (the process died meanwhile) the reply counts as never delivered.
DELIVERY_GRACE_SECONDS = 5.0


class Phase(str, Enum):
    RUNNING = "running"
    RELEASED = "released"
    REPLYING = "replying"
    UNDELIVERED = "undelivered"
    DELIVERED = "delivered"
    EXPIRED = "expired"
    FAILED = "failed"
    ANSWERED = "answered"

    @property
    def bound(self) -> bool:
        """An identical call arriving now belongs to this entry (the store's unique index
        holds at most one bound entry per fingerprint)."""
        return self in _BOUND

    @property
    def unfinished(self) -> bool:
        """The call's outcome is not known yet (recovery finishes it)."""
        return self in (Phase.RUNNING, Phase.RELEASED)


_BOUND = frozenset({Phase.RUNNING, Phase.RELEASED, Phase.REPLYING, Phase.UNDELIVERED})
BOUND_PHASES: tuple[str, ...] = tuple(p.value for p in Phase if p in _BOUND)


@dataclass(frozen=True)
class Binding:
    """What the journal says about an entry, as far as the binding is concerned."""

    phase: Phase
    token: str | None
    #: The lease's end (``running``) or the delivery grace's end (``replying``).
    until: float | None
    #: When the phase last changed (for ``undelivered``: when the reply was last handed over).
    phase_at: float
    #: A reply of this entry reached a client while it was still unfinished. Only entries
    #: journal v1 left behind carry this (v1 let a runner that had lost its lease answer its
    #: client); such an entry is finished ``delivered``, and an identical call waits.
    delivered: bool = False

    def lapsed(self, now: float) -> bool:
        return self.until is None or self.until <= now

    def handed_at(self) -> float:
        """When the reply was last handed to a client: a replay whose delivery was never
        recorded counts from its hand-over, so a retry that waited it out is still a retry."""
        if self.phase is Phase.REPLYING and self.until is not None:
            return self.until - DELIVERY_GRACE_SECONDS
        return self.phase_at


class Arrival(str, Enum):
    """How the deciding call came to the entry."""

    #: It arrived and found the entry bound to its fingerprint.
    FIRST = "first"
    #: It joined the entry in flight earlier and is owed its outcome.
    JOINED = "joined"


class Decision(str, Enum):
    NEW = "new operation"
    JOIN = "join in flight"
    WAIT = "wait"
    REPLAY = "replay once"
    TAKEOVER = "continue after a takeover"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    why: str
    #: REPLAY: hand the reply over under a new delivery token (compare-and-set to
    #: ``replying``), so the next identical call waits for this delivery. False when the
    #: outcome is passed on as it is (a fault, or a joined twin whose binding has ended).
    claim_delivery: bool = False
    #: NEW: the entry is still bound but its retry window has passed: end its binding
    #: (``expired``) first.
    unbind: bool = False


def decide(entry: Binding | None, arrival: Arrival, now: float, retry_window: float
           ) -> Verdict:
    """What an identical call does about ``entry`` (None: no entry is bound)."""
    if entry is None:
        return Verdict(Decision.NEW, "no identical call is bound")
    if arrival is Arrival.JOINED:
        return _joined(entry, now)
    return _first(entry, now, retry_window)


def _first(e: Binding, now: float, window: float) -> Verdict:
    p = e.phase
    if p.unfinished and e.delivered:
        return Verdict(Decision.WAIT, "its reply reached a client already; the entry is "
                                      "being finished (then this call is a new operation)")
    if p is Phase.RUNNING and not e.lapsed(now):
        return Verdict(Decision.JOIN, "an identical call is in flight: one operation")
    if p.unfinished:
        return Verdict(Decision.TAKEOVER, "unfinished and nobody holds it: continue it")
    if p is Phase.REPLYING and not e.lapsed(now):
        return Verdict(Decision.WAIT, "its reply is being delivered: learn whether it arrived")
    if p in (Phase.REPLYING, Phase.UNDELIVERED):
        if e.handed_at() + window > now:
            return Verdict(Decision.REPLAY, "its reply never reached its client: a retry",
                           claim_delivery=True)
        return Verdict(Decision.NEW, "its reply was never collected within the retry window",
                       unbind=True)
    return Verdict(Decision.NEW, "the binding has ended")


def _joined(e: Binding, now: float) -> Verdict:
    p = e.phase
    if p is Phase.RUNNING and not e.lapsed(now):
        return Verdict(Decision.JOIN, "still in flight")
    if p.unfinished:
        return Verdict(Decision.TAKEOVER, "its runner stopped: continue it")
    if p is Phase.REPLYING and not e.lapsed(now):
        return Verdict(Decision.WAIT, "its reply is being delivered to the first caller")
    if p in (Phase.REPLYING, Phase.UNDELIVERED):
        return Verdict(Decision.REPLAY, "the first caller never got the reply: hand it on",
                       claim_delivery=True)
    return Verdict(Decision.REPLAY, "pass the outcome on as it is")


# -- every change of phase -------------------------------------------------------------


class Event(str, Enum):
    INTENT = "intent"  # the steps and their keys are journaled: a new operation
    ANSWER = "answer"  # a read, or nothing to send: recorded, never bound
    REFUSE = "refuse"  # refused before anything was journaled
    FINISH = "finish"  # the last step succeeded; a client waits for the reply
    FINISH_UNATTENDED = "finish unattended"  # ... recovery finished it: nobody waits
    FAULT = "fault"  # a refusal or a give-up after steps were journaled; a client waits
    FAULT_UNATTENDED = "fault unattended"  # ... recovery ended it: nobody waits
    RELEASE = "release"  # outcome unknown: leave it for the retry or recovery
    TAKEOVER = "takeover"  # a lapsed lease or a released entry is continued
    DELIVERED = "delivered"  # the reply was written to the client's connection
    UNDELIVERED = "undelivered"  # the connection was gone before the reply
    REPLAY = "replay"  # an undelivered reply is handed to the retry
    EXPIRE = "expire"  # an undelivered reply's retry window passed


class Guard(str, Enum):
    """The condition a transition needs besides the entry's current token."""

    NONE = "-"
    #: The writer's own lease token (fencing: a runner that was taken over writes nothing).
    LEASE_HELD = "lease held"
    #: ``running``: the lease's ``until`` has passed; ``replying``: its grace has passed.
    LAPSED = "lapsed"
    #: As ``LEASE_HELD``, and a reply of the entry already reached a client (v1 entries).
    LEASE_HELD_DELIVERED = "lease held, reply already delivered"


@dataclass(frozen=True)
class Transition:
    event: Event
    source: Phase | None  # None: the entry is created by this event
    target: Phase
    guard: Guard = Guard.NONE


#: The binding's whole state machine. ``source`` None: the entry is inserted in ``target``.
TRANSITIONS: tuple[Transition, ...] = (
    Transition(Event.INTENT, None, Phase.RUNNING),
    Transition(Event.ANSWER, None, Phase.ANSWERED),
    Transition(Event.REFUSE, None, Phase.FAILED),
    Transition(Event.FINISH, Phase.RUNNING, Phase.REPLYING, Guard.LEASE_HELD),
    Transition(Event.FINISH, Phase.RUNNING, Phase.DELIVERED, Guard.LEASE_HELD_DELIVERED),
    Transition(Event.FINISH_UNATTENDED, Phase.RUNNING, Phase.UNDELIVERED, Guard.LEASE_HELD),
    Transition(Event.FINISH_UNATTENDED, Phase.RUNNING, Phase.DELIVERED,
               Guard.LEASE_HELD_DELIVERED),
    Transition(Event.FAULT, Phase.RUNNING, Phase.FAILED, Guard.LEASE_HELD),
    Transition(Event.FAULT_UNATTENDED, Phase.RUNNING, Phase.UNDELIVERED, Guard.LEASE_HELD),
    Transition(Event.RELEASE, Phase.RUNNING, Phase.RELEASED, Guard.LEASE_HELD),
    Transition(Event.TAKEOVER, Phase.RUNNING, Phase.RUNNING, Guard.LAPSED),
    Transition(Event.TAKEOVER, Phase.RELEASED, Phase.RUNNING),
    Transition(Event.DELIVERED, Phase.REPLYING, Phase.DELIVERED),
    Transition(Event.UNDELIVERED, Phase.REPLYING, Phase.UNDELIVERED),
    Transition(Event.REPLAY, Phase.UNDELIVERED, Phase.REPLYING),
    Transition(Event.REPLAY, Phase.REPLYING, Phase.REPLYING, Guard.LAPSED),
    Transition(Event.EXPIRE, Phase.UNDELIVERED, Phase.EXPIRED),
    Transition(Event.EXPIRE, Phase.REPLYING, Phase.EXPIRED, Guard.LAPSED),
)


def transitions(event: Event) -> tuple[Transition, ...]:
    return tuple(t for t in TRANSITIONS if t.event is event)


def sources(event: Event) -> tuple[str, ...]:
    """The phases an event may change (what its compare-and-set accepts)."""
    return tuple(dict.fromkeys(t.source.value for t in transitions(event) if t.source))


def apply(phase: Phase | None, event: Event, *, token_matches: bool = True,
          lapsed: bool = False, delivered: bool = False) -> Phase | None:
    """The phase after ``event`` (None: refused, nothing changes). This is what the store's
    compare-and-set statements do, as a pure function the tests walk for every phase and
    event: ``token_matches``: the writer presents the entry's current token (for
    ``LEASE_HELD``: its own lease token); ``lapsed``: the lease (``running``) or the
    delivery grace (``replying``) has passed; ``delivered``: a reply of the entry already
    reached a client (v1 entries)."""
    if phase is not None and not token_matches:
        return None
    for t in transitions(event):
        if t.source is not phase or (t.guard is Guard.LAPSED and not lapsed):
            continue
        if t.guard in (Guard.LEASE_HELD, Guard.LEASE_HELD_DELIVERED) and \
                (t.guard is Guard.LEASE_HELD_DELIVERED) is not delivered:
            continue
        return t.target
    return None


def mermaid() -> str:
    """The state diagram, generated from :data:`TRANSITIONS` (``docs/architecture.md``)."""
    lines = ["stateDiagram-v2"]
    for t in TRANSITIONS:
        src = "[*]" if t.source is None else t.source.value
        label = t.event.value + ("" if t.guard is Guard.NONE else f" [{t.guard.value}]")
        lines.append(f"    {src} --> {t.target.value}: {label}")
    for p in Phase:
        if not p.bound:
            lines.append(f"    {p.value} --> [*]")
    return "\n".join(lines)
