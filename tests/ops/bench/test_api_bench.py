"""The API benchmark runs end to end on a small load: every request answered, every figure reported."""

from __future__ import annotations

import io

from rich.console import Console

from remotegpu.ops.bench.api import ApiBenchConfig, run
from remotegpu.ops.bench.load import achieved_rate
from remotegpu.tests.ops.bench.same_run import CALIBRATION, assert_same_run_figures

EXPECTED = {"rps", "max_rps", "p50_ms", "p99_ms", "errors", "list_p99_ms", "get_p99_ms", "create_p99_ms"}
SAME_RUN = (
    "ceiling_max_rps",
    "ceiling_rps",
    "ceiling_p99_ms",
    "ratio_max_rps",
    "generator_max_rps",
    "ratio_ceiling_generator",
    *CALIBRATION,
)


def test_small_run_reports_every_figure_and_no_error() -> None:
    output = io.StringIO()
    config = ApiBenchConfig(
        rate=40,
        seconds=1.0,
        closed_seconds=1.0,
        clients=4,
        workers=1,  # each worker is a process to start; one of each kind is enough to see every figure
        warmup_seconds=0.2,
        ceiling_seconds=0.5,
        generator_seconds=0.5,
    )
    figures = run(config, Console(file=output, width=120))
    assert set(figures) >= EXPECTED
    assert_same_run_figures(figures, SAME_RUN, output.getvalue())
    assert figures["errors"] == figures["errors_in_ceilings"] == 0
    assert figures["requests"] > 40
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert figures["max_rps"] > 0
    assert "max_rps" in output.getvalue()


def testachieved_rate_is_the_offered_one_when_kept_up_and_the_server_pace_when_not() -> None:
    offered = 1000.0
    kept_up = [("get", 2.0, 200, 10 + i / offered + 0.002) for i in range(5000)]
    kept_up[-1] = ("get", 80.0, 200, kept_up[-1][3] + 0.078)  # one slow last response changes nothing
    assert achieved_rate(kept_up) == offered
    behind = [("get", 0.0, 200, 10 + i / 600) for i in range(5000)]  # answers at 600/s whatever is offered
    assert achieved_rate(behind) == 600.0
    failed = [(kind, latency, 503, at) for kind, latency, _, at in kept_up]
    assert achieved_rate(failed) == 0.0
