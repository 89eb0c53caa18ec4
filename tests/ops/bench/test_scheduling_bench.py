"""The scheduling benchmark runs end to end on a small deep queue and audits clean."""

from __future__ import annotations

import io
import json

from rich.console import Console

from remotegpu.ops.bench.scheduling import SchedulingBenchConfig, run
from remotegpu.tests.ops.bench.same_run import CALIBRATION, assert_same_run_figures

SAME_RUN = ("ceiling_reads_ms", "ratio_pass", *CALIBRATION)


def test_small_deep_queue_reports_every_figure_and_no_violation() -> None:
    output = io.StringIO()
    figures = run(
        console=Console(file=output, width=120),
        config=SchedulingBenchConfig(hosts=6, waiting=40, workspaces=3, passes=2, stopped_per_pass=3),
    )
    assert_same_run_figures(figures, SAME_RUN, output.getvalue())
    assert figures["violations"] == 0
    assert figures["fill_placed"] > 0
    assert figures["still_waiting"] > 20, "the queue must stay deep after the fill"
    assert figures["pass_ms_max"] >= figures["pass_ms_p50"] > 0
    json.dumps(figures)
