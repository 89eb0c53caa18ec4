"""The billing benchmark runs end to end on a small load and reports clean figures."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from remotegpu.ops.bench.billing import BillingBenchConfig, main, run
from remotegpu.tests.ops.bench.same_run import CALIBRATION, assert_same_run_figures

EXPECTED = {"envs", "tick_ms_p50", "tick_ms_max", "intervals_per_s", "violations"}
SAME_RUN = ("ceiling_intervals_per_s", "ratio_intervals", *CALIBRATION)


def test_small_run_reports_every_figure_and_no_violation() -> None:
    output = io.StringIO()
    figures = run(console=Console(file=output, width=120), config=BillingBenchConfig(envs=50, ticks=5))
    assert set(figures) >= EXPECTED
    assert_same_run_figures(figures, SAME_RUN, output.getvalue())
    assert figures["violations"] == 0
    assert (figures["envs"], figures["meters"]) == (50, 200)
    # five ticks of every meter, one more piece per meter at the month boundary (2nd tick) and per
    # GPU meter at the price change (3rd tick)
    assert figures["intervals"] == 5 * 200 + 200 + 50
    assert figures["tick_ms_max"] >= figures["tick_ms_p50"] > 0
    assert figures["intervals_per_s"] > 0
    json.dumps(figures)


def test_the_cli_prints_the_figures_as_its_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    main(quick=False, envs=20)
    printed = capsys.readouterr().out
    figures = json.loads(printed.strip().splitlines()[-1])
    assert (figures["benchmark"], figures["envs"], figures["violations"]) == ("billing", 20, 0)
