"""When an environment's current run must end: `policies.max_duration` counted from the run's start.

A run starts when the reconciler observes the environment running, which is when its compute meters
open (`core.billing.meters`), so the deadline and the bill agree on when the run began; an environment
with no compute meter open falls back to when it entered `running`. A new run (a start after a stop, a
restart, a changed spec) starts the count again. Read by the policy job (`reconciler.policies`), which
stops it at the deadline, and by the environment views, which show the deadline.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from remotegpu.core.environments.states import Phase
from remotegpu.core.platform.quantities import parse_duration

RUN_STARTED_SQL = (
    "coalesce((SELECT min(rm.started_at) FROM meters rm WHERE rm.environment_id = e.id"
    " AND rm.resource <> 'storage' AND rm.ended_at IS NULL),"
    f" CASE WHEN e.phase = '{Phase.RUNNING}' THEN e.phase_entered_at END)"
)
"""SQL for the start of `e`'s current run (NULL when it is not running), for the column `run_started_at`."""

MAX_DURATION_SQL = "e.spec->'policies'->>'max_duration'"
"""SQL for the spec's `policies.max_duration` of `e` (NULL when not set)."""


def max_duration(spec: dict[str, Any]) -> str | None:
    """The stored spec's `policies.max_duration`, as written (`2m`, `24h`), or None."""
    policies = spec.get("policies") or {}
    value = policies.get("max_duration")
    return str(value) if value else None


def run_deadline(limit: str | None, run_started_at: dt.datetime | None) -> dt.datetime | None:
    """When the current run reaches `limit` (a spec duration); None without a limit or a running run."""
    if limit is None or run_started_at is None:
        return None
    return run_started_at + parse_duration(limit)
