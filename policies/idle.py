"""Is an environment idle? A pure decision over its GPUs' utilisation points.

An environment is idle when, for the whole window (its `idle_stop_after`) before now, every GPU it holds
was below the threshold. Missing data never stops anything: a window that reaches back before the
current run started (a new run gets a full window of its own), fewer GPUs reporting than it holds, or a
GPU whose points do not cover the window (the exporter or Prometheus was down for a while) all read as
"not known to be idle", with a sentence saying which.

Each point is a GPU's highest utilisation over the `step` before it, so a busy moment between two
points is not missed; points may come up to a few steps late or apart (scrapes jitter) before the data
counts as not covering the window.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Points = Sequence[tuple[float, float]]
"""(Unix time, utilisation %) oldest first."""

SLACK_STEPS = 3
"""How many steps late (at either end) or apart the points of a GPU may be and still cover the window."""


class IdleState(enum.StrEnum):
    IDLE = "idle"
    """Every GPU below the threshold for the whole window: stop it."""
    BUSY = "busy"
    """Some GPU at or above the threshold inside the window."""
    NO_DATA = "no data"
    """Not enough data to know: no stop."""
    TOO_SOON = "too soon"
    """The run is younger than the window: no stop yet."""


@dataclass(frozen=True)
class IdleVerdict:
    """What the check found, in a sentence users read in `describe`."""

    state: IdleState
    message: str


def idle_verdict(
    gpus: Mapping[str, Points],
    *,
    gpu_count: int,
    window: dt.timedelta,
    run_started_at: dt.datetime | None,
    now: dt.datetime,
    step: dt.timedelta,
    threshold: float,
) -> IdleVerdict:
    """Whether an environment holding `gpu_count` GPUs, whose GPUs (by UUID) had the given points, has
    been idle for `window` at `now`."""
    start = now - window
    shown = f"idle_stop_after {format_span(window)}"
    if run_started_at is None or run_started_at > start:
        return IdleVerdict(
            IdleState.TOO_SOON, "the current run is younger than the idle window; checked once it is older"
        )
    if len(gpus) < max(gpu_count, 1):
        return IdleVerdict(
            IdleState.NO_DATA,
            f"no utilisation data for {max(gpu_count, 1) - len(gpus)} of its {max(gpu_count, 1)} GPUs"
            " (is the DCGM exporter scraped?); not stopped for idling",
        )
    slack = SLACK_STEPS * step.total_seconds()
    begin, end = start.timestamp(), now.timestamp()
    for uuid, points in sorted(gpus.items()):
        inside = [(at, value) for at, value in points if begin < at <= end]
        busy = [(at, value) for at, value in inside if value >= threshold]
        if busy:
            at, value = busy[-1]
            when = dt.datetime.fromtimestamp(at, dt.UTC)
            return IdleVerdict(
                IdleState.BUSY, f"GPU {uuid} was at {value:g}% at {when:%Y-%m-%d %H:%M:%S} UTC (busy)"
            )
        times = [begin, *(at for at, _ in inside), end]
        widest = max(later - earlier for earlier, later in itertools.pairwise(times))
        if widest > slack:
            covered = sum(
                later - earlier for earlier, later in itertools.pairwise(times) if later - earlier <= slack
            )
            return IdleVerdict(
                IdleState.NO_DATA,
                f"the utilisation data of GPU {uuid} covers {format_span(dt.timedelta(seconds=covered))} of its"
                f" {shown}; not stopped for idling",
            )
    return IdleVerdict(IdleState.IDLE, f"every GPU below {threshold:g}% for its {shown}")


def format_span(span: dt.timedelta) -> str:
    """`30m`, `1h30m`, `45s`: a span the way specs write durations."""
    seconds = int(span.total_seconds())
    parts = [
        (seconds // 86400, "d"),
        (seconds % 86400 // 3600, "h"),
        (seconds % 3600 // 60, "m"),
        (seconds % 60, "s"),
    ]
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount) or "0s"
