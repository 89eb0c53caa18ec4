"""The environment lifecycle: the one `transitions` machine that says which phase moves are legal.

The machine is built once, without models, only to hold the definition; at import its events are read
into a frozen table `(phase, trigger) -> next phase`, and every step looks the move up there. Nothing
is mutated at call time, so the reconciler's worker threads share it safely (adding and removing a
throw-away model per call on the shared machine refused legal moves under load). An illegal move
raises `IllegalTransitionError` and is logged; it is never applied.

    pending ──admit──▶ admitted ──schedule──▶ scheduled ──provision──▶ provisioning ──become_running──▶ running
       ▲                  ▲  (lost host: reschedule) ◀─────────────────────┴──────────────────────────────┤
       │                  │                                         provisioning ◀──recreate (lost pod)──┘
     start           stop_unplaced ─▶ stopped ◀──finish_stop── stopping ◀──stop── scheduled|provisioning|running
       └──── stopped | failed                     any live phase ──delete──▶ deleting ──finish_delete──▶ deleted
                                                  any live phase ──fail──▶ failed
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from transitions import Machine

from remotegpu.core.environments.states import Phase
from remotegpu.core.platform.errors import RemoteGPUError

log = logging.getLogger(__name__)

_PLACED = [Phase.SCHEDULED, Phase.PROVISIONING, Phase.RUNNING]
_LIVE = [Phase.PENDING, Phase.ADMITTED, *_PLACED, Phase.STOPPING]

TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "admit", "source": Phase.PENDING, "dest": Phase.ADMITTED},
    {"trigger": "schedule", "source": Phase.ADMITTED, "dest": Phase.SCHEDULED},
    {"trigger": "provision", "source": Phase.SCHEDULED, "dest": Phase.PROVISIONING},
    {"trigger": "become_running", "source": Phase.PROVISIONING, "dest": Phase.RUNNING},
    {"trigger": "recreate", "source": Phase.RUNNING, "dest": Phase.PROVISIONING},
    {"trigger": "reschedule", "source": _PLACED, "dest": Phase.ADMITTED},
    {"trigger": "stop", "source": _PLACED, "dest": Phase.STOPPING},
    {"trigger": "stop_unplaced", "source": [Phase.PENDING, Phase.ADMITTED], "dest": Phase.STOPPED},
    {"trigger": "finish_stop", "source": Phase.STOPPING, "dest": Phase.STOPPED},
    {"trigger": "start", "source": [Phase.STOPPED, Phase.FAILED], "dest": Phase.PENDING},
    {"trigger": "delete", "source": [*_LIVE, Phase.STOPPED, Phase.FAILED], "dest": Phase.DELETING},
    {"trigger": "finish_delete", "source": Phase.DELETING, "dest": Phase.DELETED},
    {"trigger": "fail", "source": [*_LIVE, Phase.DELETING], "dest": Phase.FAILED},
]

TRIGGERS = frozenset(str(transition["trigger"]) for transition in TRANSITIONS)


class IllegalTransitionError(RemoteGPUError):
    """A trigger that the machine does not allow from the current phase."""


_machine = Machine(
    model=None,
    states=[phase.value for phase in Phase],
    transitions=[
        {
            "trigger": t["trigger"],
            "source": [p.value for p in t["source"]] if isinstance(t["source"], list) else t["source"].value,  # type: ignore[attr-defined]
            "dest": t["dest"].value,  # type: ignore[attr-defined]
        }
        for t in TRANSITIONS
    ],
    initial=Phase.PENDING.value,
    auto_transitions=False,
    ignore_invalid_triggers=False,
)


def _table(machine: Machine) -> Mapping[tuple[Phase, str], Phase]:
    """Every legal move of `machine`, read from its events once (it has no conditions, so a move
    depends on the phase and the trigger alone)."""
    table: dict[tuple[Phase, str], Phase] = {}
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            # One unconditional transition per source: the first one is the one the machine would fire.
            table[Phase(source), trigger] = Phase(str(transitions[0].dest))
    return MappingProxyType(table)


_NEXT: Mapping[tuple[Phase, str], Phase] = _table(_machine)
_ALLOWED: Mapping[Phase, frozenset[str]] = MappingProxyType(
    {phase: frozenset(t for (source, t) in _NEXT if source is phase) for phase in Phase}
)


def next_phase(current: Phase, trigger: str) -> Phase:
    """The phase `trigger` leads to from `current`; raises `IllegalTransitionError` (and logs) otherwise.
    Safe to call from any number of threads at once."""
    following = _NEXT.get((current, trigger))
    if following is None:
        log.error("Illegal transition refused", extra={"phase": current.value, "trigger": trigger})
        raise IllegalTransitionError(f"{trigger!r} is not allowed from phase {current.value!r}")
    return following


def allowed_triggers(current: Phase) -> frozenset[str]:
    """Every trigger legal from `current`."""
    return _ALLOWED[current]
