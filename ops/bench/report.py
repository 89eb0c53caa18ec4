"""What every benchmark prints: percentiles of its samples, and a table of its figures."""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (0 when there are none), in steps of 0.1 %."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, int(fraction * 1000) - 1)]


def print_figures(console: Console, title: str, figures: dict[str, Any], violations: list[str]) -> None:
    """A two-column table of the figures, then the first violations found, one per line."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, str(value))
    console.print(table)
    for violation in violations[:10]:
        console.print(f"violation: {violation}", highlight=False)
