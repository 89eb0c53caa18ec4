"""GPU metrics as users read them: one environment's GPUs over a range (with its idle picture), and the
newest reading of many environments' GPUs at once (`remotegpu top`).

The caller has been checked and the database session closed before these run: they only ask
Prometheus. Monitoring not configured, or Prometheus not answering, is part of the answer
(`monitoring.state`), never an error: the environment itself is fine.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from remotegpu.core.environments.states import Phase
from remotegpu.core.monitoring.gpu_metrics import FB_USED, GPU_UTIL, POWER_USAGE, GpuMetrics, GpuSeries
from remotegpu.core.monitoring.idle import IdleCandidate, candidate, judge_idleness
from remotegpu.core.monitoring.prometheus import PrometheusUnavailableError
from remotegpu.policies.idle import format_span

NOT_CONFIGURED = (
    "monitoring is not configured on this server: set prometheus_url (REMOTEGPU_PROMETHEUS_URL) to the"
    " Prometheus that scrapes NVIDIA's DCGM exporter"
)
POINTS = 60
"""About how many points a range answer has per series."""

MonitoringState = Literal["ok", "not configured", "unavailable"]


class MonitoringOut(msgspec.Struct):
    """Whether GPU metrics could be read: `ok`, `not configured` (the message names the setting) or
    `unavailable` (Prometheus did not answer; the message says how)."""

    state: MonitoringState
    message: str | None = None


class GpuOut(msgspec.Struct):
    """One GPU of an environment: who it is, its newest reading and, over a range, its points
    (`[unix time, value]`, oldest first) per metric."""

    gpu: str
    uuid: str
    model: str
    hostname: str
    utilisation_percent: float | None
    memory_used_mib: float | None
    power_watts: float | None
    series: dict[str, list[tuple[float, float]]] | None = None
    """Over a range only: `utilisation_percent`, `memory_used_mib` and `power_watts`."""


class IdleOut(msgspec.Struct):
    """The idle policy of a running environment and what the last check of its GPUs says: `idle`,
    `busy`, `no data` or `too soon` (no stop for either), or `unknown` when metrics cannot be read."""

    after: str
    source: str
    threshold_percent: float
    state: str
    message: str


class EnvironmentMetricsOut(msgspec.Struct):
    """An environment's GPUs over `range` (step `step_seconds`) and its idle picture (null without an
    idle policy or when not running)."""

    environment_id: uuid.UUID
    range: str
    step_seconds: float
    monitoring: MonitoringOut
    gpus: list[GpuOut]
    idle: IdleOut | None = None


class EnvironmentGpusOut(msgspec.Struct):
    """A running environment and the newest reading of each of its GPUs (none: no series found)."""

    id: uuid.UUID
    name: str
    workspace: str
    owner: str
    host: str | None
    gpu_count: int
    gpu_model: str | None
    gpus: list[GpuOut]


class TopOut(msgspec.Struct):
    """Running environments with their GPUs' newest readings, newest environment first."""

    monitoring: MonitoringOut
    items: list[EnvironmentGpusOut]
    next_cursor: str | None = None


_NAMES = {GPU_UTIL: "utilisation_percent", FB_USED: "memory_used_mib", POWER_USAGE: "power_watts"}


def _gpu_out(gpu: GpuSeries, with_series: bool) -> GpuOut:
    return GpuOut(
        gpu.gpu,
        gpu.uuid,
        gpu.model,
        gpu.hostname,
        gpu.latest(GPU_UTIL),
        gpu.latest(FB_USED),
        gpu.latest(POWER_USAGE),
        {name: list(gpu.points.get(metric, [])) for metric, name in _NAMES.items()} if with_series else None,
    )


def environment_metrics(
    metrics: GpuMetrics | None,
    environment: Any,
    default_idle_minutes: int | None,
    *,
    span: dt.timedelta,
    now: dt.datetime,
    idle_step: dt.timedelta,
    threshold: float,
    idle_scale: float = 1.0,
) -> EnvironmentMetricsOut:
    """The GPUs of `environment` (a row of `get_environment`) over the `span` before `now`, and its idle
    verdict: two queries (the range, and the idle check's own)."""
    step = dt.timedelta(seconds=max(round(span.total_seconds() / POINTS), 1))
    shown = EnvironmentMetricsOut(
        environment.id, format_span(span), step.total_seconds(), MonitoringOut("ok"), []
    )
    idle = _idle_candidate(environment, default_idle_minutes, idle_scale)
    if metrics is None:
        shown.monitoring = MonitoringOut("not configured", NOT_CONFIGURED)
        shown.idle = _idle_out(idle, threshold, "unknown", NOT_CONFIGURED) if idle else None
        return shown
    try:
        gpus = metrics.over_range(environment.id, environment.workspace_id, now - span, now, step)
        shown.gpus = [_gpu_out(gpu, with_series=True) for gpu in gpus]
        if idle is not None:
            verdict = judge_idleness(metrics, [idle], now=now, step=idle_step, threshold=threshold)[
                idle.environment_id
            ]
            shown.idle = _idle_out(idle, threshold, str(verdict.state), verdict.message)
    except PrometheusUnavailableError as error:
        shown.monitoring = MonitoringOut("unavailable", f"Prometheus unavailable: {error}")
        shown.gpus = []
        shown.idle = _idle_out(idle, threshold, "unknown", shown.monitoring.message or "") if idle else None
    return shown


def latest_gpus(metrics: GpuMetrics | None, environments: Sequence[Any], next_cursor: str | None) -> TopOut:
    """The newest reading of the GPUs of `environments` (rows of `list_environments`), one query."""
    items = [
        EnvironmentGpusOut(e.id, e.name, e.workspace, e.owner, e.host, e.gpu_count, e.gpu_model, [])
        for e in environments
    ]
    if metrics is None:
        return TopOut(MonitoringOut("not configured", NOT_CONFIGURED), items, next_cursor)
    try:
        found = metrics.latest({e.id: e.workspace_id for e in environments if e.gpu_count > 0})
    except PrometheusUnavailableError as error:
        return TopOut(MonitoringOut("unavailable", f"Prometheus unavailable: {error}"), items, next_cursor)
    for item in items:
        item.gpus = [_gpu_out(gpu, with_series=False) for gpu in found.get(item.id, [])]
    return TopOut(MonitoringOut("ok"), items, next_cursor)


def _idle_candidate(environment: Any, default_idle_minutes: int | None, scale: float) -> IdleCandidate | None:
    if str(environment.phase) != Phase.RUNNING or environment.gpu_count == 0:
        return None
    policies = (environment.spec or {}).get("policies") or {}
    return candidate(
        environment.id,
        environment.workspace_id,
        environment.gpu_count,
        policies.get("idle_stop_after"),
        default_idle_minutes,
        getattr(environment, "run_started_at", None),
        scale,
    )


def _idle_out(idle: IdleCandidate, threshold: float, state: str, message: str) -> IdleOut:
    return IdleOut(format_span(idle.window), idle.source, threshold, state, message)
