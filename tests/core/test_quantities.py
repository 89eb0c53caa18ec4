"""The quantity and duration parsers refuse every hostile number with a ValueError that states the bound."""

from __future__ import annotations

import pytest

from remotegpu.core.platform.quantities import BIGINT_MAX, parse_bytes, parse_cpu_millis, parse_duration


@pytest.mark.parametrize(
    "value", ["NaN", "nan", "inf", "-inf", "Infinity", float("nan"), float("inf"), "1_000"]
)
def test_cpu_that_is_not_a_finite_number_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="not a CPU amount"):
        parse_cpu_millis(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["1e18", "1e300", 1e300, "9223372036854775808m"])
def test_cpu_past_the_bound_states_it(value: object) -> None:
    with pytest.raises(ValueError, match="must be at most 4096 cores"):
        parse_cpu_millis(value, at_most=4096_000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be at most"):
        parse_cpu_millis(value)  # type: ignore[arg-type]


def test_cpu_below_a_millicore_is_refused_and_the_usual_forms_read() -> None:
    with pytest.raises(ValueError, match="at least 1m"):
        parse_cpu_millis("0.0001")
    with pytest.raises(ValueError, match="negative"):
        parse_cpu_millis("-1")
    assert [parse_cpu_millis(v) for v in ("16", "500m", "0.5", 0.5, 2, "1e3", "-0", "0")] == [
        16000,
        500,
        500,
        500,
        2000,
        1_000_000,
        0,
        0,
    ]


def test_sizes_and_durations_past_their_range_state_the_bound() -> None:
    for size in ("NaN", "inf", "1e300", "-0"):
        with pytest.raises(ValueError, match="not a size"):
            parse_bytes(size)
    with pytest.raises(ValueError, match=f"at most {BIGINT_MAX} bytes"):
        parse_bytes("999999999999Pi")
    assert parse_bytes("7Pi") == 7 * 2**50
    for duration in ("99999999999999999999d", "9" * 400 + "s"):
        with pytest.raises(ValueError, match="at most 3650d"):
            parse_duration(duration)
    for duration in ("NaNs", "1e300h", "infh"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(duration)
