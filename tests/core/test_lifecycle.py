"""The lifecycle machine: legal moves only, and every phase can reach a terminal one."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remotegpu.core.environments.lifecycle import (
    TRANSITIONS,
    IllegalTransitionError,
    Trigger,
    allowed_triggers,
    destination,
    next_phase,
    sources,
)
from remotegpu.core.environments.states import Phase


def test_the_happy_path_moves_phase_by_phase() -> None:
    phase = Phase.PENDING
    for trigger, expected in [
        (Trigger.ADMIT, Phase.ADMITTED),
        (Trigger.SCHEDULE, Phase.SCHEDULED),
        (Trigger.PROVISION, Phase.PROVISIONING),
        (Trigger.BECOME_RUNNING, Phase.RUNNING),
        (Trigger.STOP, Phase.STOPPING),
        (Trigger.FINISH_STOP, Phase.STOPPED),
        (Trigger.DELETE, Phase.DELETING),
        (Trigger.FINISH_DELETE, Phase.DELETED),
    ]:
        phase = next_phase(phase, trigger)
        assert phase is expected


def test_illegal_moves_raise_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(IllegalTransitionError, match="'start' is not allowed"),
    ):
        next_phase(Phase.RUNNING, Trigger.START)
    assert "Illegal transition refused" in caplog.text
    with pytest.raises(IllegalTransitionError):
        next_phase(Phase.DELETED, Trigger.DELETE)
    with pytest.raises(IllegalTransitionError):
        next_phase(Phase.PENDING, "no-such-trigger")  # type: ignore[arg-type]  # a stray string, as from a bug


def test_the_table_holds_exactly_the_declared_moves() -> None:
    """Invariant: the look-up table read from the machine is the declaration, no move more or less."""
    declared = {(phase, t.trigger): t.dest for t in TRANSITIONS for phase in t.sources}
    for phase in Phase:
        for trigger in Trigger:
            if (phase, trigger) in declared:
                assert next_phase(phase, trigger) is declared[phase, trigger]
            else:
                with pytest.raises(IllegalTransitionError):
                    next_phase(phase, trigger)


def test_failed_is_left_only_by_start_or_delete() -> None:
    assert allowed_triggers(Phase.FAILED) == {Trigger.START, Trigger.DELETE}
    assert allowed_triggers(Phase.DELETED) == frozenset()


def test_sources_and_destination_read_the_same_table() -> None:
    """Invariant: a trigger leaves exactly its sources, always for its one destination."""
    assert sources(Trigger.ADMIT) == {Phase.PENDING}
    assert sources(Trigger.SCHEDULE) == {Phase.ADMITTED}
    assert destination(Trigger.SCHEDULE) is Phase.SCHEDULED
    for trigger in Trigger:
        assert sources(trigger), f"{trigger} leaves no phase"
        for phase in Phase:
            assert (phase in sources(trigger)) == (trigger in allowed_triggers(phase))
        for phase in sources(trigger):
            assert next_phase(phase, trigger) is destination(trigger)


@given(st.sampled_from(list(Phase)), st.sampled_from(list(Trigger)))
def test_a_trigger_either_moves_legally_or_raises(phase: Phase, trigger: Trigger) -> None:
    """Invariant: no trigger is ever silently ignored."""
    if trigger in allowed_triggers(phase):
        assert isinstance(next_phase(phase, trigger), Phase)
    else:
        with pytest.raises(IllegalTransitionError):
            next_phase(phase, trigger)


def test_every_phase_can_reach_a_terminal_phase() -> None:
    """Invariant: from every phase some sequence of legal triggers ends in stopped, deleted or failed."""
    for start in Phase:
        seen, frontier = {start}, [start]
        while frontier:
            phase = frontier.pop()
            for trigger in allowed_triggers(phase):
                following = next_phase(phase, trigger)
                if following not in seen:
                    seen.add(following)
                    frontier.append(following)
        assert any(phase.is_terminal() for phase in seen), start
        assert Phase.DELETED in seen, f"{start} can never be deleted"


def test_next_phase_is_safe_to_call_from_many_threads_at_once() -> None:
    """The reconciler's workers share the table: concurrent look-ups never refuse a legal move."""
    threads, calls = 8, 3_000
    barrier = threading.Barrier(threads)

    def worker() -> list[str]:
        barrier.wait()
        wrong = []
        for _ in range(calls):
            try:
                if next_phase(Phase.STOPPING, Trigger.FINISH_STOP) is not Phase.STOPPED:
                    wrong.append("wrong phase")
            except Exception as error:  # any failure is the finding
                wrong.append(repr(error))
        return wrong

    with ThreadPoolExecutor(threads) as pool:
        failures = [f for result in [pool.submit(worker) for _ in range(threads)] for f in result.result()]
    assert failures == []
