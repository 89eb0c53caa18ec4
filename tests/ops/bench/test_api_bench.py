"""The API benchmark runs end to end on a small load: every request answered, every figure reported."""

from __future__ import annotations

import io

from rich.console import Console

from remotegpu.ops.bench.api import ApiBenchConfig, run

EXPECTED = {"rps", "max_rps", "p50_ms", "p99_ms", "errors", "list_p99_ms", "get_p99_ms", "create_p99_ms"}


def test_small_run_reports_every_figure_and_no_error() -> None:
    output = io.StringIO()
    config = ApiBenchConfig(rate=40, seconds=1.0, closed_seconds=1.0, clients=4)
    figures = run(config, Console(file=output, width=120))
    assert set(figures) >= EXPECTED
    assert figures["errors"] == 0
    assert figures["requests"] > 40
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert figures["max_rps"] > 0
    assert "max_rps" in output.getvalue()
