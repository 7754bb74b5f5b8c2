"""Review of 9f2ced5: replays that are not marked as being delivered."""
from __future__ import annotations

from pathlib import Path

from tests.engine.test_engine_clock import OneArticle
from tests.engine.world import World


def test_a_repeat_right_after_a_together_replay_waits_for_its_delivery(world: World) -> None:
    """The client's first attempt A is abandoned mid-capture (its connection closed) and
    the client retries: B joins A in flight. A finishes; its reply is undelivered (which
    clears delivering_until). B is handed A's outcome (the `together` replay, unmarked).
    The ERP sends a deliberate repeat C the instant B's reply arrives, before B's delivery
    is recorded: C must wait and be a new operation, not get the same reply again."""
    parcel = OneArticle.on(world)
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "latency",
                              "delay_ms": 500, "times": 1})
    a, b = parcel.start(), parcel.start()
    first = world.drive(a, parcel.proc)
    parcel.undelivered(first)  # A's client had gone
    second = world.drive(b, parcel.proc)
    assert second.replayed and second.reply == first.reply
    # B's reply is on the wire; its delivery is not recorded yet. The repeat arrives now.
    repeat = parcel.start()
    world.pump(parcel.proc, step=0.01)
    assert not repeat.called or not world._result(repeat).replayed, \
        "the deliberate repeat was answered with the reply being written to B"
    parcel.delivered(second)
    third = world.drive(repeat, parcel.proc)
    assert not third.replayed and third.reply[1] != first.reply[1]
    assert parcel.captures() == 2


def test_a_retry_inside_the_window_waiting_on_a_dead_replay_is_still_replayed(
        tmp_path: Path) -> None:
    """A replay written near the end of retry_window whose delivery is never recorded (the
    process died): the client's retry arrives inside the window, waits out the 5 s mark,
    then re-claims after the window and becomes a NEW operation: a second capture. Before
    9f2ced5 that retry was replayed at once."""
    world = World(str(tmp_path / "gw.db"), retry_window_seconds=20.0)
    try:
        parcel = OneArticle.on(world)
        first = parcel.send()
        parcel.undelivered(first)
        world.clock.advance(18.0)
        parcel.send()  # replayed; the process died before recording its delivery
        world.clock.advance(1.0)
        again = parcel.send()
        assert again.replayed and again.reply == first.reply
        assert parcel.captures() == 1
    finally:
        world.close()
