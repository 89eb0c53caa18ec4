"""The shards benchmark runs both rounds end to end on a small load: one process leading both shards,
then two processes leading one each, every environment running and no claim finding."""

from __future__ import annotations

import io
import json

from rich.console import Console

from remotegpu.ops.bench.shards import run
from remotegpu.tests.ops.bench.same_run import CALIBRATION, assert_same_run_figures


def test_small_run_measures_one_and_two_leading_processes() -> None:
    output = io.StringIO()
    figures = run(envs=16, console=Console(file=output, width=120))
    printed = output.getvalue()
    assert figures["violations"] == 0, printed
    for name in ("one_leader", "two_leaders"):
        assert figures[f"envs_per_s_{name}"] > 0
        assert figures[f"submit_to_running_p99_ms_{name}"] >= figures[f"submit_to_running_p50_ms_{name}"] > 0
    assert figures["ratio_two_leaders"] == round(
        figures["envs_per_s_two_leaders"] / figures["envs_per_s_one_leader"], 3
    )
    assert_same_run_figures(figures, ("ratio_two_leaders", *CALIBRATION), printed)
    json.dumps(figures)
