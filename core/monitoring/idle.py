"""Which running environments have an idle policy, and what their GPUs' utilisation says about it.

An environment's idle window is its spec's `policies.idle_stop_after`, else its workspace's
`default_idle_stop_minutes` (None: never stopped for idling). The check reads all candidates' GPUs in
one Prometheus query over the longest window (`GpuMetrics.peak_utilisation`) and judges each with
`policies.idle.idle_verdict`. Used by the reconciler's policy job, which stops the idle ones, and by the
API, which shows the verdict; no database session is open while Prometheus is asked.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

from remotegpu.core.environments.run_limits import RUN_STARTED_SQL
from remotegpu.core.environments.states import DesiredState, Phase
from remotegpu.core.monitoring.gpu_metrics import GPU_UTIL, GpuMetrics
from remotegpu.core.platform.quantities import parse_duration
from remotegpu.policies.idle import IdleVerdict, format_span, idle_verdict

IDLE_AFTER_SQL = "e.spec->'policies'->>'idle_stop_after'"
"""SQL for the spec's `policies.idle_stop_after` of `e` (NULL when not set)."""
DEFAULT_IDLE_SQL = "CAST(w.settings->>'default_idle_stop_minutes' AS int)"
"""SQL for the workspace `w`'s default idle window in minutes (NULL when not set)."""

MAX_POINTS = 10_000
"""Points per GPU the idle check asks for at most (Prometheus refuses more than 11,000 per series)."""

_CANDIDATES_SQL = text(
    f"""
    SELECT e.id, e.workspace_id, e.gpu_count, {IDLE_AFTER_SQL} AS idle_after,
           {DEFAULT_IDLE_SQL} AS default_minutes, {RUN_STARTED_SQL} AS run_started_at
      FROM environments e JOIN workspaces w ON w.id = e.workspace_id
     WHERE e.shard = :shard AND e.deleted_at IS NULL AND e.desired_state = '{DesiredState.RUNNING}'
       AND e.phase = '{Phase.RUNNING}' AND e.gpu_count > 0
       AND ({IDLE_AFTER_SQL} IS NOT NULL OR {DEFAULT_IDLE_SQL} IS NOT NULL)
     ORDER BY e.id
    """
)


@dataclass(frozen=True)
class IdleCandidate:
    """A running environment with GPUs and an idle window."""

    environment_id: uuid.UUID
    workspace_id: uuid.UUID
    gpu_count: int
    window: dt.timedelta
    source: str
    """Where the window comes from: `policies.idle_stop_after` or the workspace's default."""
    run_started_at: dt.datetime | None


def idle_window(
    spec_value: str | None, default_minutes: int | None, scale: float = 1.0
) -> tuple[dt.timedelta, str] | None:
    """The idle window (times the `idle_time_scale` setting) and where it comes from: the spec's, else
    the workspace default; None: neither."""
    if spec_value:
        return parse_duration(spec_value) * scale, "policies.idle_stop_after"
    if default_minutes:
        return dt.timedelta(minutes=default_minutes) * scale, "the workspace's default_idle_stop_minutes"
    return None


def candidate(
    environment_id: uuid.UUID,
    workspace_id: uuid.UUID,
    gpu_count: int,
    idle_after: str | None,
    default_minutes: int | None,
    run_started_at: dt.datetime | None,
    scale: float = 1.0,
) -> IdleCandidate | None:
    """The candidate of an environment with these facts; None without an idle window."""
    window = idle_window(idle_after, default_minutes, scale)
    if window is None:
        return None
    return IdleCandidate(environment_id, workspace_id, gpu_count, *window, run_started_at)


def idle_candidates(connection: Connection, shard: int, scale: float = 1.0) -> list[IdleCandidate]:
    """The shard's running environments with GPUs and an idle window."""
    found = (
        candidate(r.id, r.workspace_id, r.gpu_count, r.idle_after, r.default_minutes, r.run_started_at, scale)
        for r in connection.execute(_CANDIDATES_SQL, {"shard": shard})
    )
    return [c for c in found if c is not None]


def judge_idleness(
    metrics: GpuMetrics,
    candidates: Sequence[IdleCandidate],
    *,
    now: dt.datetime,
    step: dt.timedelta,
    threshold: float,
) -> dict[uuid.UUID, IdleVerdict]:
    """Each candidate's verdict, from one query over the longest window; raises
    `PrometheusUnavailableError` when Prometheus does not answer."""
    if not candidates:
        return {}
    longest = max(c.window for c in candidates)
    # Prometheus answers at most 11,000 points per series: a very long window gets a coarser step.
    step = max(step, longest / MAX_POINTS)
    found = metrics.peak_utilisation(
        {c.environment_id: c.workspace_id for c in candidates}, now - longest - step, now, step
    )
    verdicts = {}
    for c in candidates:
        gpus = {gpu.uuid: gpu.points.get(GPU_UTIL, []) for gpu in found.get(c.environment_id, [])}
        verdicts[c.environment_id] = idle_verdict(
            gpus,
            gpu_count=c.gpu_count,
            window=c.window,
            run_started_at=c.run_started_at,
            now=now,
            step=step,
            threshold=threshold,
        )
    return verdicts


def idle_message(c: IdleCandidate, threshold: float) -> str:
    """The sentence of an idle stop."""
    return (
        f"stopped by policy: every GPU was below {threshold:g}% utilisation for {format_span(c.window)}"
        f" ({c.source}); start it again when you need it (volumes keep their data)"
    )
