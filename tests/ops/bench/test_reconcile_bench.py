"""The reconcile benchmark runs end to end on a small load and reports clean figures."""

from __future__ import annotations

import io

from rich.console import Console

from remotegpu.ops.bench.reconcile import ReconcileBenchConfig, run

EXPECTED = {
    "envs",
    "envs_per_s",
    "submit_to_running_p50_ms",
    "submit_to_running_p99_ms",
    "idle_submit_to_running_p50_ms",
    "failover_s",
    "violations",
}


def test_small_run_reports_every_figure_and_no_violation() -> None:
    output = io.StringIO()
    figures = run(
        console=Console(file=output, width=120), config=ReconcileBenchConfig(envs=20, idle_samples=2)
    )
    assert set(figures) >= EXPECTED
    assert figures["violations"] == 0
    assert figures["envs"] == 20
    assert figures["failover_s"] > 0
    assert figures["submit_to_running_p99_ms"] >= figures["submit_to_running_p50_ms"] > 0
    assert "envs_per_s" in output.getvalue()
