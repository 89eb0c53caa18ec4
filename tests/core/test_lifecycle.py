"""The lifecycle machine: legal moves only, and every phase can reach a terminal one."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remotegpu.core.lifecycle import TRIGGERS, IllegalTransitionError, allowed_triggers, next_phase
from remotegpu.core.states import Phase


def test_the_happy_path_moves_phase_by_phase() -> None:
    phase = Phase.PENDING
    for trigger, expected in [
        ("admit", Phase.ADMITTED),
        ("schedule", Phase.SCHEDULED),
        ("provision", Phase.PROVISIONING),
        ("become_running", Phase.RUNNING),
        ("stop", Phase.STOPPING),
        ("finish_stop", Phase.STOPPED),
        ("delete", Phase.DELETING),
        ("finish_delete", Phase.DELETED),
    ]:
        phase = next_phase(phase, trigger)
        assert phase is expected


def test_illegal_moves_raise_and_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(IllegalTransitionError, match="'start' is not allowed"),
    ):
        next_phase(Phase.RUNNING, "start")
    assert "Illegal transition refused" in caplog.text
    with pytest.raises(IllegalTransitionError):
        next_phase(Phase.DELETED, "delete")
    with pytest.raises(IllegalTransitionError):
        next_phase(Phase.PENDING, "no-such-trigger")


def test_failed_is_left_only_by_start_or_delete() -> None:
    assert allowed_triggers(Phase.FAILED) == {"start", "delete"}
    assert allowed_triggers(Phase.DELETED) == frozenset()


@given(st.sampled_from(list(Phase)), st.sampled_from(sorted(TRIGGERS)))
def test_a_trigger_either_moves_legally_or_raises(phase: Phase, trigger: str) -> None:
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
