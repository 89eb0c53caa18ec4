"""What every benchmark's figures carry besides its own: same-run ceilings, ratios and calibration."""

from __future__ import annotations

from typing import Any

CALIBRATION = ("calibration_python_mloops_per_s", "calibration_postgres_select1_per_s")


def assert_same_run_figures(figures: dict[str, Any], expected: tuple[str, ...], printed: str) -> None:
    """Each of `expected` is reported and positive (not its value: machines differ); the ceilings and
    ratios come first, the table shows them first, and the calibration line is printed."""
    for key in expected:
        assert isinstance(figures.get(key), int | float), f"{key} missing from {sorted(figures)}"
        assert figures[key] > 0, f"{key} = {figures[key]}"
    leading = [key for key in figures if key.startswith(("ceiling_", "ratio_", "generator_"))]
    assert list(figures)[: len(leading)] == leading, "ceilings and ratios come first"
    table_rows = [line.split("│")[1].strip() for line in printed.splitlines() if line.count("│") >= 3]
    assert table_rows[: len(leading)] == leading
    assert "calibration: Python" in printed
