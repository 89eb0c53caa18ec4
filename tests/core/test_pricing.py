"""What a span of usage costs, where periods begin, and how amounts are shown."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgspec

from remotegpu.core.billing.periods import boundaries_between, next_period_start, period_start
from remotegpu.core.billing.pricing import PriceBook, amount_for, money
from remotegpu.core.environments.states import MeteredResource

T = dt.datetime(2026, 11, 30, 22, 30, tzinfo=dt.UTC)


def test_amounts_are_quantity_times_price_times_length_in_the_unit() -> None:
    hour = T + dt.timedelta(hours=1)
    assert amount_for(MeteredResource.GPU, Decimal(2), Decimal("2.49"), T, hour) == Decimal("4.98")
    month = T + dt.timedelta(hours=730)
    assert amount_for(MeteredResource.STORAGE, Decimal(100), Decimal("0.10"), T, month) == Decimal("10")
    second = amount_for(MeteredResource.CPU, Decimal(1), Decimal("0.02"), T, T + dt.timedelta(seconds=1))
    assert second == Decimal("0.000005555556"), "12 places, half-even"


def test_periods_begin_at_utc_months_weeks_and_days() -> None:
    assert period_start(T, "month") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert next_period_start(T, "month") == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert period_start(T, "week") == dt.datetime(2026, 11, 30, tzinfo=dt.UTC)  # a Monday
    assert next_period_start(dt.datetime(2026, 12, 31, 23, tzinfo=dt.UTC), "month").year == 2027
    days = boundaries_between(T, T + dt.timedelta(days=2), "day")
    assert days == [dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 2, tzinfo=dt.UTC)]


def test_the_price_in_force_is_the_latest_started_one_and_none_costs_nothing() -> None:
    later = T + dt.timedelta(hours=1)
    book = PriceBook.of(
        [(MeteredResource.GPU, "H100", Decimal("3"), later), (MeteredResource.GPU, "H100", Decimal("2"), T)]
    )
    assert book.price_at(MeteredResource.GPU, "H100", T - dt.timedelta(seconds=1)) == 0
    assert book.price_at(MeteredResource.GPU, "H100", T) == Decimal("2")
    assert book.price_at(MeteredResource.GPU, "H100", later) == Decimal("3")
    assert book.price_at(MeteredResource.GPU, "A100", later) == 0
    assert book.changes_between(MeteredResource.GPU, "H100", T, later + dt.timedelta(seconds=1)) == [later]


def test_amounts_are_shown_in_fixed_point_never_scientific_notation() -> None:
    assert msgspec.json.encode(Decimal("4.34059E-7")) == b'"4.34059E-7"', "what a bare Decimal would give"
    assert money(Decimal("4.34059E-7")) == "0.000000434059"
    assert money(Decimal("0E-12")) == "0.000000000000"
    assert money(Decimal("0.00")) == "0.00"
    assert money(Decimal("250")) == "250"
