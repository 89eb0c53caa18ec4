"""Prices over time and what a span of usage costs.

A price applies from its `effective_from` until the next price of the same resource (and GPU model)
takes over. Usage with no price in force costs nothing (unit price 0): prices are never retroactive, so
setting one later does not charge for the past.

An interval's amount is quantity × unit price × length in the price's unit (hours; a storage month is
730 hours), kept to 12 decimal places (half-even). Money is rounded once, per invoice line, to the
currency's cents; never per interval.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import Connection, text

from remotegpu.core.environments.states import MeteredResource

HOURS_PER_STORAGE_MONTH = 730
AMOUNT_PLACES = Decimal("0.000000000001")
_SECONDS_PER_HOUR = Decimal(3600)


def unit_seconds(resource: MeteredResource) -> Decimal:
    """Seconds in the unit a price of `resource` is per (an hour; a 730-hour month for storage)."""
    hours = HOURS_PER_STORAGE_MONTH if resource is MeteredResource.STORAGE else 1
    return _SECONDS_PER_HOUR * hours


def seconds_between(start: dt.datetime, end: dt.datetime) -> Decimal:
    """The exact length of [start, end) in seconds (microsecond resolution, no float)."""
    length = end - start
    return Decimal(length.days * 86_400 + length.seconds) + Decimal(length.microseconds) / Decimal(1_000_000)


def amount_for(
    resource: MeteredResource, quantity: Decimal, unit_price: Decimal, start: dt.datetime, end: dt.datetime
) -> Decimal:
    """What `quantity` of `resource` costs over [start, end) at `unit_price`, to 12 places."""
    exact = quantity * unit_price * seconds_between(start, end) / unit_seconds(resource)
    return exact.quantize(AMOUNT_PLACES, rounding=ROUND_HALF_EVEN)


def money(amount: Decimal) -> str:
    """`amount` as an answer shows it: fixed-point digits, never `0E-12` or `4.34E-7` (a `Decimal` below
    10⁻⁶ prints in scientific notation, which clients reading decimal strings may not parse)."""
    return format(amount, "f")


PriceKey = tuple[MeteredResource, str | None]
"""(resource, GPU model) — the model only for GPUs."""


@dataclass
class PriceBook:
    """Every price, by resource and model, in effective order; built once per meter tick."""

    _times: dict[PriceKey, list[dt.datetime]] = field(default_factory=dict)
    _prices: dict[PriceKey, list[Decimal]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[tuple[MeteredResource, str | None, Decimal, dt.datetime]]) -> PriceBook:
        """From (resource, gpu_model, unit_price, effective_from) rows, in any order."""
        book = cls()
        for resource, model, price, since in sorted(rows, key=lambda row: row[3]):
            key = (MeteredResource(resource), model)
            book._times.setdefault(key, []).append(since)
            book._prices.setdefault(key, []).append(Decimal(price))
        return book

    def price_at(self, resource: MeteredResource, model: str | None, moment: dt.datetime) -> Decimal:
        """The unit price in force at `moment` (0 when none is)."""
        key = (resource, model)
        times = self._times.get(key, [])
        index = bisect.bisect_right(times, moment) - 1
        return self._prices[key][index] if index >= 0 else Decimal(0)

    def changes_between(
        self, resource: MeteredResource, model: str | None, start: dt.datetime, end: dt.datetime
    ) -> list[dt.datetime]:
        """The times strictly inside (start, end) at which the price of (resource, model) changes."""
        times = self._times.get((resource, model), [])
        return times[bisect.bisect_right(times, start) : bisect.bisect_left(times, end)]


_PRICES_SQL = text("SELECT resource, gpu_model, unit_price, effective_from FROM prices")


def load_price_book(connection: Connection) -> PriceBook:
    """Every price there is (the table is small: a row per resource and model per change)."""
    return PriceBook.of(
        (MeteredResource(row.resource), row.gpu_model, row.unit_price, row.effective_from)
        for row in connection.execute(_PRICES_SQL)
    )
