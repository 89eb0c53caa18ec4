"""The idle decision: idle only when every GPU it holds was below the threshold for the whole window of
the current run, with points that cover it; anything less is busy, no data or too soon, never a stop."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from remotegpu.policies.idle import IdleState, format_span, idle_verdict

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
WINDOW = dt.timedelta(minutes=30)
STEP = dt.timedelta(seconds=60)


def points(values: list[float], *, every: float = 60, end: dt.datetime = NOW) -> list[tuple[float, float]]:
    """`values` at `every` seconds, the last one at `end`."""
    last = end.timestamp()
    return [(last - every * (len(values) - 1 - i), v) for i, v in enumerate(values)]


def verdict(
    gpus: dict[str, list[tuple[float, float]]],
    *,
    count: int = 1,
    started: dt.timedelta = dt.timedelta(hours=2),
) -> IdleState:
    return idle_verdict(
        gpus, gpu_count=count, window=WINDOW, run_started_at=NOW - started, now=NOW, step=STEP, threshold=5
    ).state


def test_every_gpu_below_the_threshold_for_the_whole_window_is_idle() -> None:
    assert verdict({"a": points([1.0] * 40), "b": points([4.9] * 40)}, count=2) is IdleState.IDLE


def test_one_busy_point_in_the_window_is_busy_and_says_which_gpu() -> None:
    busy = points([0.0] * 20 + [60.0] + [0.0] * 19)
    found = idle_verdict(
        {"a": points([0.0] * 40), "GPU-b": busy},
        gpu_count=2,
        window=WINDOW,
        run_started_at=NOW - WINDOW * 2,
        now=NOW,
        step=STEP,
        threshold=5,
    )
    assert found.state is IdleState.BUSY
    assert "GPU-b was at 60%" in found.message


def test_busy_before_the_window_does_not_count() -> None:
    assert verdict({"a": points([90.0] * 10 + [0.0] * 31)}) is IdleState.IDLE


def test_a_run_younger_than_the_window_is_too_soon() -> None:
    assert verdict({"a": points([0.0] * 40)}, started=dt.timedelta(minutes=20)) is IdleState.TOO_SOON


def test_fewer_gpus_reporting_than_held_is_no_data() -> None:
    found = idle_verdict(
        {"a": points([0.0] * 40)},
        gpu_count=2,
        window=WINDOW,
        run_started_at=NOW - WINDOW * 2,
        now=NOW,
        step=STEP,
        threshold=5,
    )
    assert found.state is IdleState.NO_DATA
    assert found.message.startswith("no utilisation data for 1 of its 2 GPUs")
    assert verdict({}) is IdleState.NO_DATA


def test_a_gap_or_data_that_starts_late_is_no_data() -> None:
    assert verdict({"a": points([0.0] * 20)}) is IdleState.NO_DATA, "twenty minutes of thirty"
    gap = points([0.0] * 15) + points([0.0] * 10, end=NOW)
    assert verdict({"a": sorted(set(gap))}) is IdleState.NO_DATA
    stale = points([0.0] * 40, end=NOW - dt.timedelta(minutes=5))
    assert verdict({"a": stale}) is IdleState.NO_DATA, "nothing for the last five minutes"


def test_points_a_little_late_or_apart_still_cover_the_window() -> None:
    assert verdict({"a": points([0.0] * 16, every=120)}) is IdleState.IDLE, "two steps apart"
    assert verdict({"a": points([0.0] * 35, end=NOW - dt.timedelta(seconds=150))}) is IdleState.IDLE


@given(st.lists(st.floats(0, 100), min_size=31, max_size=60))
def test_idle_exactly_when_every_point_in_the_window_is_below(values: list[float]) -> None:
    """With covering data, the verdict is idle iff no point inside the window reaches the threshold."""
    series = points(values)
    inside = [v for at, v in series if at > (NOW - WINDOW).timestamp()]
    expected = IdleState.IDLE if all(v < 5 for v in inside) else IdleState.BUSY
    assert verdict({"a": series}) is expected


def test_spans_read_as_specs_write_them() -> None:
    assert [format_span(dt.timedelta(seconds=s)) for s in (3, 90, 1800, 5400, 90061, 0)] == [
        "3s",
        "1m30s",
        "30m",
        "1h30m",
        "1d1h1m1s",
        "0s",
    ]
