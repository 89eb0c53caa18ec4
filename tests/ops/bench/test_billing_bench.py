"""The billing benchmark runs end to end on a small load and reports clean figures."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from remotegpu.ops.bench.billing import BillingBenchConfig, main, run
from remotegpu.tests.ops.bench.same_run import CALIBRATION, assert_same_run_figures

EXPECTED = {"envs", "tick_ms_p50", "tick_ms_max", "full_tick_ms_p50", "intervals_per_s", "violations"}
SAME_RUN = ("ceiling_intervals_per_s", "ratio_intervals", *CALIBRATION)


def test_small_run_reports_every_figure_and_no_violation() -> None:
    output = io.StringIO()
    figures = run(console=Console(file=output, width=120), config=BillingBenchConfig(envs=50))
    assert set(figures) >= EXPECTED
    assert_same_run_figures(figures, SAME_RUN, output.getvalue())
    assert figures["violations"] == 0
    assert (figures["envs"], figures["meters"]) == (50, 200)
    # six ticks as deployed are one close period: each meter closes once, in at most three pieces (cut
    # at the month boundary and, for the GPU, at the price change); then three ticks close every meter,
    # the first in at most three pieces too
    assert figures["closed_per_tick"] == round(200 / 6, 1)
    assert 200 + 3 * 200 <= figures["intervals"] <= 2 * (200 + 200 + 50) + 2 * 200
    assert figures["tick_ms_max"] >= figures["tick_ms_p50"] > 0
    assert figures["full_tick_ms_p50"] > 0
    assert figures["intervals_per_s"] > 0
    json.dumps(figures)


def test_the_cli_prints_the_figures_as_its_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    main(quick=False, envs=20)
    printed = capsys.readouterr().out
    figures = json.loads(printed.strip().splitlines()[-1])
    assert (figures["benchmark"], figures["envs"], figures["violations"]) == ("billing", 20, 0)
