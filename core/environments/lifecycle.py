"""The environment lifecycle: the one `transitions` machine that says which phase moves are legal.

The machine is built once, without models, only to hold the definition; at import its events are read
into a frozen table `(phase, trigger) -> next phase`, and every step looks the move up there. Nothing
is mutated at call time, so the reconciler's worker threads share it safely (adding and removing a
throw-away model per call on the shared machine refused legal moves under load). An illegal move
raises `IllegalTransitionError` and is logged; it is never applied.

Code chooses a `Trigger`; the table gives the next phase. Whoever needs a set of phases (the scheduling
pass's bulk updates, the pipeline's fetch predicate) takes it from here (`sources`, `destination`) or
from the helpers on `Phase`, so the rules are written once.

    pending ──admit──▶ admitted ──schedule──▶ scheduled ──provision──▶ provisioning ──become_running──▶ running
       ▲                  ▲  (lost host: reschedule) ◀─────────────────────┴──────────────────────────────┤
       │                  │                                         provisioning ◀──recreate (lost pod)──┘
     start           stop_unplaced ─▶ stopped ◀──finish_stop── stopping ◀──stop── scheduled|provisioning|running
       └──── stopped | failed                     any live phase ──delete──▶ deleting ──finish_delete──▶ deleted
                                                  any live phase ──fail──▶ failed
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from transitions import Machine

from remotegpu.core.environments.states import Phase
from remotegpu.core.platform.errors import RemoteGPUError

log = logging.getLogger(__name__)


class Trigger(enum.StrEnum):
    """A named move of the lifecycle; which phases it leaves and enters is the table's business."""

    ADMIT = "admit"
    SCHEDULE = "schedule"
    PROVISION = "provision"
    BECOME_RUNNING = "become_running"
    RECREATE = "recreate"
    RESCHEDULE = "reschedule"
    STOP = "stop"
    STOP_UNPLACED = "stop_unplaced"
    FINISH_STOP = "finish_stop"
    START = "start"
    DELETE = "delete"
    FINISH_DELETE = "finish_delete"
    FAIL = "fail"


class Transition(NamedTuple):
    """One declared move: `trigger` takes any phase of `sources` to `dest`."""

    trigger: Trigger
    sources: tuple[Phase, ...]
    dest: Phase


_PLACED = (Phase.SCHEDULED, Phase.PROVISIONING, Phase.RUNNING)
_LIVE = (Phase.PENDING, Phase.ADMITTED, *_PLACED, Phase.STOPPING)

TRANSITIONS: tuple[Transition, ...] = (
    Transition(Trigger.ADMIT, (Phase.PENDING,), Phase.ADMITTED),
    Transition(Trigger.SCHEDULE, (Phase.ADMITTED,), Phase.SCHEDULED),
    Transition(Trigger.PROVISION, (Phase.SCHEDULED,), Phase.PROVISIONING),
    Transition(Trigger.BECOME_RUNNING, (Phase.PROVISIONING,), Phase.RUNNING),
    Transition(Trigger.RECREATE, (Phase.RUNNING,), Phase.PROVISIONING),
    Transition(Trigger.RESCHEDULE, _PLACED, Phase.ADMITTED),
    Transition(Trigger.STOP, _PLACED, Phase.STOPPING),
    Transition(Trigger.STOP_UNPLACED, (Phase.PENDING, Phase.ADMITTED), Phase.STOPPED),
    Transition(Trigger.FINISH_STOP, (Phase.STOPPING,), Phase.STOPPED),
    Transition(Trigger.START, (Phase.STOPPED, Phase.FAILED), Phase.PENDING),
    Transition(Trigger.DELETE, (*_LIVE, Phase.STOPPED, Phase.FAILED), Phase.DELETING),
    Transition(Trigger.FINISH_DELETE, (Phase.DELETING,), Phase.DELETED),
    Transition(Trigger.FAIL, (*_LIVE, Phase.DELETING), Phase.FAILED),
)
"""The declaration; read through `next_phase`, `allowed_triggers`, `sources` and `destination`."""


class IllegalTransitionError(RemoteGPUError):
    """A trigger that the machine does not allow from the current phase."""


_machine = Machine(
    model=None,
    states=[phase.value for phase in Phase],
    transitions=[
        {
            "trigger": t.trigger.value,
            "source": [phase.value for phase in t.sources],
            "dest": t.dest.value,
        }
        for t in TRANSITIONS
    ],
    initial=Phase.PENDING.value,
    auto_transitions=False,
    ignore_invalid_triggers=False,
)


def _table(machine: Machine) -> Mapping[tuple[Phase, Trigger], Phase]:
    """Every legal move of `machine`, read from its events once (it has no conditions, so a move
    depends on the phase and the trigger alone)."""
    table: dict[tuple[Phase, Trigger], Phase] = {}
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            # One unconditional transition per source: the first one is the one the machine would fire.
            table[Phase(source), Trigger(trigger)] = Phase(str(transitions[0].dest))
    return MappingProxyType(table)


_NEXT: Mapping[tuple[Phase, Trigger], Phase] = _table(_machine)
_ALLOWED: Mapping[Phase, frozenset[Trigger]] = MappingProxyType(
    {phase: frozenset(t for (source, t) in _NEXT if source is phase) for phase in Phase}
)
_SOURCES: Mapping[Trigger, frozenset[Phase]] = MappingProxyType(
    {trigger: frozenset(p for (p, t) in _NEXT if t is trigger) for trigger in Trigger}
)
_DESTINATION: Mapping[Trigger, Phase] = MappingProxyType({t: dest for (_, t), dest in _NEXT.items()})
# Every trigger leads to one phase whatever it leaves (the declaration has one dest per trigger), so a
# bulk update can name its destination without knowing each row's phase.
assert len({(t, dest) for (_, t), dest in _NEXT.items()}) == len(Trigger), "one destination per trigger"


def next_phase(current: Phase, trigger: Trigger) -> Phase:
    """The phase `trigger` leads to from `current`; raises `IllegalTransitionError` (and logs) otherwise.
    Safe to call from any number of threads at once."""
    following = _NEXT.get((current, trigger))
    if following is None:
        log.error("Illegal transition refused", extra={"phase": current.value, "trigger": str(trigger)})
        raise IllegalTransitionError(f"{str(trigger)!r} is not allowed from phase {current.value!r}")
    return following


def allowed_triggers(current: Phase) -> frozenset[Trigger]:
    """Every trigger legal from `current`."""
    return _ALLOWED[current]


def sources(trigger: Trigger) -> frozenset[Phase]:
    """Every phase `trigger` may leave."""
    return _SOURCES[trigger]


def destination(trigger: Trigger) -> Phase:
    """The phase `trigger` enters, from whichever of its `sources`."""
    return _DESTINATION[trigger]
