"""The meter's arithmetic and its statements: which meters are due, how their next intervals are cut,
and the one statement that records them.

A tick reads every due meter of a shard (open, or closed but not metered to its end), cuts the span from
its cursor to now (or to its end) at every price change of its resource and every billing-period
boundary, prices each piece with the price in force at its start, and writes the pieces in the same
statement that advances the cursors, each guarded by the cursor's previous value and by its spell's end.
So a second meter working from the same read (a race, a stale leader, a retried tick) advances nothing
and inserts nothing for a span already metered; the unique (meter, start) is the last line of defence.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.billing.periods import boundaries_between
from remotegpu.core.billing.pricing import PriceBook, amount_for
from remotegpu.core.environments.states import MeteredResource
from remotegpu.core.platform.settings import BillingPeriod


@dataclass(frozen=True)
class DueMeter:
    """A meter with usage not yet in intervals."""

    id: uuid.UUID
    resource: MeteredResource
    gpu_model: str | None
    quantity: Decimal
    metered_until: dt.datetime
    ended_at: dt.datetime | None


@dataclass(frozen=True)
class Piece:
    """One interval to write: [start, end) of a meter, at the price in force at `start`."""

    meter_id: uuid.UUID
    unit: str
    start: dt.datetime
    end: dt.datetime
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Advance:
    """A cursor move: from `old` (as read) to `new` (the end of the meter's last piece)."""

    meter_id: uuid.UUID
    old: dt.datetime
    new: dt.datetime
    added: Decimal
    """The amounts of its pieces, added to the meter's running total."""


def cut(meter: DueMeter, book: PriceBook, period: BillingPeriod, now: dt.datetime) -> list[Piece]:
    """The meter's next intervals: from its cursor to its end (or `now`), split at price changes and
    period boundaries. Empty when there is nothing to meter yet."""
    until = min(meter.ended_at, now) if meter.ended_at is not None else now
    start = meter.metered_until
    if until <= start:
        return []
    cuts = set(book.changes_between(meter.resource, meter.gpu_model, start, until))
    cuts.update(boundaries_between(start, until, period))
    points = [start, *sorted(cuts), until]
    pieces = []
    for begin, end in itertools.pairwise(points):
        price = book.price_at(meter.resource, meter.gpu_model, begin)
        amount = amount_for(meter.resource, meter.quantity, price, begin, end)
        pieces.append(Piece(meter.id, meter.resource.unit, begin, end, price, amount))
    return pieces


def plan(
    meters: Iterable[DueMeter], book: PriceBook, period: BillingPeriod, now: dt.datetime
) -> tuple[list[Advance], list[Piece]]:
    """The cursor moves and intervals of one tick."""
    advances: list[Advance] = []
    pieces: list[Piece] = []
    for meter in meters:
        cut_pieces = cut(meter, book, period, now)
        if cut_pieces:
            added = sum((piece.amount for piece in cut_pieces), Decimal(0))
            advances.append(Advance(meter.id, meter.metered_until, cut_pieces[-1].end, added))
            pieces.extend(cut_pieces)
    return advances, pieces


DUE_SQL = text(
    """
    SELECT m.id, m.resource, m.gpu_model, m.quantity, m.metered_until, m.ended_at
      FROM meters m JOIN environments e ON e.id = m.environment_id
     WHERE (m.ended_at IS NULL OR m.metered_until < m.ended_at) AND m.metered_until < :now
       AND e.shard = :shard
    """
)


def due_meters(connection: Connection, shard: int, now: dt.datetime) -> list[DueMeter]:
    """Every meter of `shard` with usage before `now` not yet in intervals."""
    return [
        DueMeter(
            row.id,
            MeteredResource(row.resource),
            row.gpu_model,
            row.quantity,
            row.metered_until,
            row.ended_at,
        )
        for row in connection.execute(DUE_SQL, {"now": now, "shard": shard})
    ]


WRITE_CTES = """
    moves AS (
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:olds AS timestamptz[]), CAST(:news AS timestamptz[]),
                             CAST(:added AS numeric[]))
               AS v(id, old, new, added)
    ), advanced AS (
        -- the guard: the cursor is where this tick read it, and the spell has not ended before the new
        -- cursor (a stop observed meanwhile); row locks make a racing meter re-check both
        UPDATE meters m SET metered_until = v.new, amount = m.amount + v.added FROM moves v
         WHERE m.id = v.id AND m.metered_until = v.old AND (m.ended_at IS NULL OR m.ended_at >= v.new)
           AND EXISTS (SELECT 1 FROM leader)
        RETURNING m.id, m.environment_id, m.workspace_id, m.user_id, m.resource, m.subject, m.gpu_model,
                  m.quantity
    ), pieces AS (
        SELECT * FROM unnest(CAST(:p_meters AS uuid[]), CAST(:p_units AS text[]),
                             CAST(:p_starts AS timestamptz[]), CAST(:p_ends AS timestamptz[]),
                             CAST(:p_prices AS numeric[]), CAST(:p_amounts AS numeric[]))
               AS p(meter, unit, s, e, price, amount)
    ), inserted AS (
        INSERT INTO billing_intervals (meter_id, environment_id, workspace_id, user_id, resource, subject,
                                       gpu_model, quantity, unit, started_at, ended_at, currency, unit_price,
                                       amount)
        SELECT a.id, a.environment_id, a.workspace_id, a.user_id, a.resource, a.subject, a.gpu_model,
               a.quantity, p.unit, p.s, p.e, :currency, p.price, p.amount
          FROM pieces p JOIN advanced a ON a.id = p.meter
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM advanced) AS advanced, (SELECT count(*) FROM inserted) AS inserted
"""
"""The write, after a `leader` CTE (the fencing check) that the caller puts first."""


def write_parameters(advances: Sequence[Advance], pieces: Sequence[Piece], currency: str) -> dict[str, Any]:
    """The parameters of `WRITE_CTES` for one chunk (the pieces of exactly the meters advanced)."""
    return {
        "ids": [a.meter_id for a in advances],
        "olds": [a.old for a in advances],
        "news": [a.new for a in advances],
        "added": [a.added for a in advances],
        "p_meters": [p.meter_id for p in pieces],
        "p_units": [p.unit for p in pieces],
        "p_starts": [p.start for p in pieces],
        "p_ends": [p.end for p in pieces],
        "p_prices": [p.unit_price for p in pieces],
        "p_amounts": [p.amount for p in pieces],
        "currency": currency,
    }
