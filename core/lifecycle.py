"""The environment lifecycle: the one `transitions` machine that says which phase moves are legal.

One machine serves every row: a step adds a throw-away model in the row's current phase, fires the
trigger, reads the new phase and removes the model (no machine per row, no state kept in memory). An
illegal move raises `IllegalTransitionError` and is logged; it is never applied.

    pending ──admit──▶ admitted ──schedule──▶ scheduled ──provision──▶ provisioning ──become_running──▶ running
       ▲                  ▲  (lost host: reschedule) ◀─────────────────────┴──────────────────────────────┤
       │                  │                                         provisioning ◀──recreate (lost pod)──┘
     start           stop_unplaced ─▶ stopped ◀──finish_stop── stopping ◀──stop── scheduled|provisioning|running
       └──── stopped | failed                     any live phase ──delete──▶ deleting ──finish_delete──▶ deleted
                                                  any live phase ──fail──▶ failed
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from transitions import Machine, MachineError

from remotegpu.core.errors import RemoteGPUError
from remotegpu.core.states import Phase

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


@dataclass
class _Row:
    """The throw-away model a step hands the machine."""

    state: str


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


def next_phase(current: Phase, trigger: str) -> Phase:
    """The phase `trigger` leads to from `current`; raises `IllegalTransitionError` (and logs) otherwise."""
    row = _Row(current.value)
    _machine.add_model(row, initial=current.value)
    try:
        getattr(row, "trigger")(trigger)  # noqa: B009 - the method is added by the machine
    except (MachineError, AttributeError) as error:
        log.error("Illegal transition refused", extra={"phase": current.value, "trigger": trigger})
        raise IllegalTransitionError(f"{trigger!r} is not allowed from phase {current.value!r}") from error
    finally:
        _machine.remove_model(row)
    return Phase(row.state)


def allowed_triggers(current: Phase) -> frozenset[str]:
    """Every trigger legal from `current`."""
    return frozenset(
        name for name in TRIGGERS if _machine.get_transitions(trigger=name, source=current.value)
    )
