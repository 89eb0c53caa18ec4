"""The allocation benchmark runs end to end on a small inventory and audits clean."""

from __future__ import annotations

import io
import json

from rich.console import Console

from remotegpu.ops.bench.allocation import BenchConfig, run
from remotegpu.tests.ops.bench.same_run import CALIBRATION, assert_same_run_figures
from remotegpu.tests.ops.test_cli import _run

EXPECTED = {"claims_per_s", "gpus_per_s", "p50_ms", "p99_ms", "retries", "violations"}
SAME_RUN = ("ceiling_claims_per_s", "ratio_claims", *CALIBRATION)


def test_small_run_reports_every_figure_and_no_violation() -> None:
    output = io.StringIO()
    figures = run(
        console=Console(file=output, width=120),
        config=BenchConfig(
            hosts=10,
            gpus_per_host=8,
            workers=2,
            seconds=1.5,
            workspaces=3,
            environments_per_worker=40,
            ceiling_seconds=0.5,
        ),
    )
    assert set(figures) >= EXPECTED
    assert_same_run_figures(figures, SAME_RUN, output.getvalue())
    assert figures["violations"] == 0
    assert figures["claims"] > 0
    assert figures["releases"] > 0, "the mix must release as well as allocate"
    assert figures["p99_ms"] >= figures["p50_ms"] > 0
    assert "claims_per_s" in output.getvalue()
    json.dumps(figures)


def test_batch_run_compares_with_one_by_one_in_the_same_run() -> None:
    output = io.StringIO()
    figures = run(
        console=Console(file=output, width=120),
        config=BenchConfig(
            hosts=10,
            gpus_per_host=8,
            workers=1,
            seconds=1.0,
            workspaces=3,
            environments_per_worker=40,
            ceiling_seconds=0.3,
            batch_size=8,
        ),
    )
    assert_same_run_figures(figures, SAME_RUN, output.getvalue())
    assert figures["path"] == "batch of 8"
    assert figures["violations"] == 0
    assert figures["claims"] > 0
    assert figures["releases"] > 0, "the batch path must release as well as allocate"
    assert figures["one_by_one_claims_per_s"] > 0
    assert figures["ratio_batch_to_one_by_one"] > 0


def test_unknown_benchmark_is_a_one_line_error() -> None:
    result = _run("bench", "teleport")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "error: unknown benchmark 'teleport'; choose one of: allocation, reconcile, shards, api, billing, scheduling"
    )
