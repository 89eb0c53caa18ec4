"""An independent model of what metering must charge, and the checks of the billing tables against it.

The model knows only what a test did: when each environment was observed running, stopped or deleted,
what it asked for, and which prices were set for when. From that it computes each environment's exact
charge per resource — quantity × price in force × duration, integrated over every price change — with
none of the code under test (no `PriceBook`, no `cut`, no `amount_for`). Intervals are rounded to 12
places (half-even) one by one, so a sum of n intervals may differ from the exact charge by at most
n × 0.5·10⁻¹² (`ROUNDING_PER_INTERVAL`); the checks allow exactly that.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

RESOURCES = ("gpu", "cpu", "memory", "storage")
PRICE_UNIT_SECONDS = {
    "gpu": Decimal(3600),
    "cpu": Decimal(3600),
    "memory": Decimal(3600),
    "storage": Decimal(730 * 3600),
}
"""Prices are per hour; storage per 730-hour month."""
ROUNDING_PER_INTERVAL = Decimal("0.0000000000005")
"""Half a unit in the 12th place: the most one interval's rounding moves its amount."""
MODEL = "H100"

PriceKey = tuple[str, str | None]


@dataclass(frozen=True)
class Shape:
    """What an environment asks for, and so what each of its meters counts."""

    gpus: int
    cpu: str
    cpu_cores: Decimal
    memory: str
    memory_gib: Decimal
    volumes: tuple[tuple[str, int], ...]
    """(name, GiB) of each persistent volume."""

    def spec(self) -> dict[str, Any]:
        return {
            "command": ["sleep", "infinity"],
            "resources": {
                "gpus": {"count": self.gpus, "model": MODEL},
                "cpu": self.cpu,
                "memory": self.memory,
            },
            "volumes": [
                {"name": name, "size": f"{gib}Gi", "mount": f"/mnt/{name}"} for name, gib in self.volumes
            ],
        }

    def compute(self) -> list[tuple[str, str | None, Decimal]]:
        """(resource, GPU model, quantity) of each compute meter a run opens."""
        found: list[tuple[str, str | None, Decimal]] = [
            ("cpu", None, self.cpu_cores),
            ("memory", None, self.memory_gib),
        ]
        if self.gpus:
            found.insert(0, ("gpu", MODEL, Decimal(self.gpus)))
        return found


SHAPES = (
    Shape(2, "8", Decimal(8), "64Gi", Decimal(64), (("data", 100),)),
    Shape(1, "2500m", Decimal("2.5"), "1536Mi", Decimal("1.5"), (("data", 10), ("scratch", 1))),
    Shape(0, "4", Decimal(4), "8Gi", Decimal(8), ()),
)


@dataclass
class Span:
    """One observed spell of one resource of an environment: [start, end), open while `end` is None."""

    environment: uuid.UUID
    resource: str
    subject: str
    model: str | None
    quantity: Decimal
    start: dt.datetime
    end: dt.datetime | None = None


@dataclass
class Timeline:
    """Everything the test did that billing depends on."""

    prices: dict[PriceKey, dict[dt.datetime, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    spans: list[Span] = field(default_factory=list)

    def set_price(self, key: PriceKey, price: Decimal, since: dt.datetime) -> None:
        self.prices[key][since] = price

    def price_at(self, key: PriceKey, moment: dt.datetime) -> Decimal:
        """The latest price effective at or before `moment`; 0 when none is."""
        effective = [since for since in self.prices.get(key, {}) if since <= moment]
        return self.prices[key][max(effective)] if effective else Decimal(0)

    def open(self, environment: uuid.UUID, shape: Shape, now: dt.datetime, *, storage: bool) -> None:
        """Observed running (compute) — and, at the first provisioning, its volumes (storage)."""
        for resource, model, quantity in shape.compute():
            self.spans.append(Span(environment, resource, "", model, quantity, now))
        if storage:
            for name, gib in shape.volumes:
                self.spans.append(Span(environment, "storage", name, None, Decimal(gib), now))

    def close(self, environment: uuid.UUID, now: dt.datetime, *, storage: bool) -> None:
        """Observed not running (compute), or deleted with its volumes (`storage` too)."""
        for span in self.spans:
            if (
                span.environment == environment
                and span.end is None
                and (storage or span.resource != "storage")
            ):
                span.end = now

    def charge(self, span: Span, until: dt.datetime) -> Decimal:
        """The exact charge of `span` up to `until`: piecewise over the prices of its resource."""
        end = until if span.end is None else min(span.end, until)
        key: PriceKey = (span.resource, span.model)
        points = sorted({span.start, end, *(t for t in self.prices.get(key, {}) if span.start < t < end)})
        total = Decimal(0)
        for begin, finish in itertools.pairwise(points):
            seconds = Decimal((finish - begin) // dt.timedelta(microseconds=1)) / Decimal(1_000_000)
            total += span.quantity * self.price_at(key, begin) * seconds / PRICE_UNIT_SECONDS[span.resource]
        return total

    def expected(self, until: dt.datetime) -> dict[tuple[uuid.UUID, str], Decimal]:
        """Each (environment, resource)'s exact charge up to `until`."""
        totals: dict[tuple[uuid.UUID, str], Decimal] = defaultdict(Decimal)
        for span in self.spans:
            totals[(span.environment, span.resource)] += self.charge(span, until)
        return totals


_INTERVALS_SQL = text(
    """
    SELECT m.id AS meter, m.started_at AS meter_start, m.metered_until, m.environment_id, m.resource,
           m.gpu_model, b.started_at, b.ended_at, b.unit_price, b.amount
      FROM meters m LEFT JOIN billing_intervals b ON b.meter_id = m.id
     ORDER BY m.id, b.started_at
    """
)


def _next_month(moment: dt.datetime) -> dt.datetime:
    first = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (
        first.replace(year=first.year + 1, month=1)
        if first.month == 12
        else first.replace(month=first.month + 1)
    )


def table_findings(connection: Connection, timeline: Timeline) -> list[str]:
    """Every way the intervals differ from the model: each meter's intervals tile [started_at,
    metered_until) exactly, none crosses a month boundary or a price change, and each is priced with
    the model's price in force at its start."""
    findings: list[str] = []
    by_meter: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in connection.execute(_INTERVALS_SQL):
        by_meter[row.meter].append(row)
    for meter, rows in by_meter.items():
        head = rows[0]
        cursor = head.meter_start
        for row in rows:
            if row.started_at is None:
                continue
            if row.started_at != cursor or row.ended_at <= row.started_at:
                findings.append(f"meter {meter}: [{row.started_at}, {row.ended_at}) does not follow {cursor}")
            cursor = row.ended_at
            key: PriceKey = (head.resource, head.gpu_model)
            changes = [t for t in timeline.prices.get(key, {}) if row.started_at < t < row.ended_at]
            if changes or _next_month(row.started_at) < row.ended_at:
                findings.append(f"meter {meter}: [{row.started_at}, {row.ended_at}) crosses a cut")
            if row.unit_price != timeline.price_at(key, row.started_at):
                findings.append(f"meter {meter}: {row.started_at} priced {row.unit_price}")
        if cursor != head.metered_until:
            findings.append(f"meter {meter}: intervals end at {cursor}, the cursor is {head.metered_until}")
    return findings


def billed(connection: Connection) -> dict[tuple[uuid.UUID, str], tuple[Decimal, int]]:
    """Each (environment, resource)'s sum of amounts and number of intervals."""
    rows = connection.execute(
        text(
            "SELECT environment_id, resource, sum(amount) AS amount, count(*) AS n FROM billing_intervals"
            " GROUP BY environment_id, resource"
        )
    )
    return {(row.environment_id, row.resource): (row.amount, int(row.n)) for row in rows}


def total_findings(
    billed_totals: dict[tuple[uuid.UUID, str], tuple[Decimal, int]],
    expected: dict[tuple[uuid.UUID, str], Decimal],
) -> list[str]:
    """Where a billed sum is further from the exact charge than its intervals' rounding allows."""
    findings = []
    for key in sorted(set(billed_totals) | set(expected), key=str):
        amount, count = billed_totals.get(key, (Decimal(0), 0))
        exact = expected.get(key, Decimal(0))
        if abs(amount - exact) > count * ROUNDING_PER_INTERVAL:
            findings.append(f"{key}: billed {amount} over {count} intervals, expected {exact}")
    return findings
