"""What every benchmark prints: percentiles of its samples, a table of its figures, a calibration line.

The same-run ceilings and the ratios to them come first (fields `ceiling_*`, `ratio_*`, and the load
generator's `generator_*`): they are what compares across machines; absolute figures follow.
"""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

from remotegpu.ops.bench.calibration import calibration_line

FIRST = ("ceiling_", "ratio_", "generator_")
"""Prefixes of the figures shown first, in this order."""


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (0 when there are none), in steps of 0.1 %."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, int(fraction * 1000) - 1)]


def ratio(measured: float, ceiling: float) -> float:
    """`measured` as a fraction of its same-run `ceiling` (0 when there is no ceiling)."""
    return round(measured / ceiling, 3) if ceiling > 0 else 0.0


def ordered(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures with ceilings, ratios and the generator's ceiling first, calibration last."""

    def rank(key: str) -> int:
        for index, prefix in enumerate(FIRST):
            if key.startswith(prefix):
                return index
        return len(FIRST) + 1 if key.startswith("calibration_") else len(FIRST)

    return dict(sorted(figures.items(), key=lambda item: rank(item[0])))  # sorted() is stable


def print_figures(console: Console, title: str, figures: dict[str, Any], violations: list[str]) -> None:
    """A two-column table of the figures (ceilings and ratios first), the calibration line, then the
    first violations found, one per line."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in ordered(figures).items():
        if not key.startswith("calibration_"):
            table.add_row(key, str(value))
    console.print(table)
    if "calibration_python_mloops_per_s" in figures:
        console.print(calibration_line(figures), highlight=False)
    for violation in violations[:10]:
        console.print(f"violation: {violation}", highlight=False)
