"""The billing audit: recompute every interval from the meters' spells and the price history, and report
any gap, overlap, duplicate, wrong price or wrong amount. An empty list means the bills are right.

Like the claim audit (`core.capacity.audit`), tests and benchmarks run it after the fact; it reads
everything and is meant for test databases and spot checks, not for every tick.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.billing.periods import boundaries_between
from remotegpu.core.billing.pricing import PriceBook, amount_for, load_price_book
from remotegpu.core.environments.states import MeteredResource
from remotegpu.core.platform.settings import BillingPeriod

_METERS_SQL = text(
    "SELECT id, environment_id, resource, subject, gpu_model, quantity, started_at, ended_at, metered_until,"
    " amount FROM meters ORDER BY environment_id, resource, subject, started_at"
)
_INTERVALS_SQL = text(
    "SELECT id, meter_id, resource, gpu_model, quantity, unit, started_at, ended_at, unit_price, amount, currency"
    " FROM billing_intervals ORDER BY meter_id, started_at"
)


def audit_billing(connection: Connection, period: BillingPeriod, currency: str) -> list[str]:
    """Every finding, one line each, naming the meter and the moment."""
    book = load_price_book(connection)
    meters = list(connection.execute(_METERS_SQL))
    by_meter: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for interval in connection.execute(_INTERVALS_SQL):
        by_meter[interval.meter_id].append(interval)
    findings = _overlapping_spells(meters)
    for meter in meters:
        findings += _check_meter(meter, by_meter.pop(meter.id, []), book, period, currency)
    return findings


def _overlapping_spells(meters: list[Any]) -> list[str]:
    """Two spells of one resource (and volume) of one environment at once would charge it twice."""
    findings = []
    for key, spells in itertools.groupby(meters, key=lambda m: (m.environment_id, m.resource, m.subject)):
        ordered = list(spells)
        for earlier, later in itertools.pairwise(ordered):
            if earlier.ended_at is None or earlier.ended_at > later.started_at:
                findings.append(f"meters {earlier.id} and {later.id} overlap: two spells of {key[1]} at once")
    return findings


def _check_meter(
    meter: Any, intervals: list[Any], book: PriceBook, period: BillingPeriod, currency: str
) -> list[str]:
    name = f"meter {meter.id} ({meter.resource})"
    findings = []
    if meter.ended_at is not None and meter.metered_until > meter.ended_at:
        findings.append(f"{name}: metered to {meter.metered_until}, past its end {meter.ended_at}")
    expected_start = meter.started_at
    for interval in intervals:
        if interval.started_at != expected_start:
            kind = "gap" if interval.started_at > expected_start else "overlap"
            findings.append(
                f"{name}: {kind} at {expected_start} (next interval starts {interval.started_at})"
            )
        findings += _check_interval(name, meter, interval, book, period, currency)
        expected_start = max(expected_start, interval.ended_at)
    if expected_start != meter.metered_until:
        findings.append(f"{name}: intervals end at {expected_start}, its cursor is at {meter.metered_until}")
    billed = sum((interval.amount for interval in intervals), Decimal(0))
    if meter.amount != billed:
        findings.append(f"{name}: running total {meter.amount}, its intervals add up to {billed}")
    return findings


def _check_interval(
    name: str, meter: Any, interval: Any, book: PriceBook, period: BillingPeriod, currency: str
) -> list[str]:
    resource = MeteredResource(meter.resource)
    start: dt.datetime = interval.started_at
    end: dt.datetime = interval.ended_at
    where = f"{name}: interval [{start}, {end})"
    findings = []
    if book.changes_between(resource, meter.gpu_model, start, end) or boundaries_between(start, end, period):
        findings.append(f"{where} crosses a price change or a period boundary")
    price = book.price_at(resource, meter.gpu_model, start)
    if interval.unit_price != price:
        findings.append(f"{where} priced {interval.unit_price}, the price in force was {price}")
    if interval.amount != amount_for(resource, meter.quantity, interval.unit_price, start, end):
        findings.append(f"{where} amount {interval.amount} is not quantity × price × length")
    if (interval.quantity, interval.unit, interval.currency) != (meter.quantity, resource.unit, currency):
        findings.append(f"{where} says {interval.quantity} {interval.unit} in {interval.currency}")
    return findings
