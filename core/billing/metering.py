"""The meter's arithmetic and its statements: which meters are due, how their next intervals are cut,
and the one statement that records them.

A tick reads every due meter of a shard (ended but not metered to its end, or open with one of its close
points passed: `CLOSE_POINT_DUE`), cuts the span from its cursor to now (or to its end) at every price change of its resource and every billing-period
boundary, prices each piece with the price in force at its start, and writes the pieces in the same
statement that advances the cursors, each guarded by the cursor's previous value and by its spell's end.
So a second meter working from the same read (a race, a stale leader, a retried tick) advances nothing
and inserts nothing for a span already metered; the unique (meter, start) is the last line of defence.

The read groups the due meters that are metered alike (`DueGroup`): the pieces are cut and priced once
per group, and a write sends each meter's id with its group's number, and each group's pieces once;
the statement joins them. So a tick's Python work and parameters grow with its groups, not with its
meters times their pieces.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
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
    """One interval to write, for each meter of a group: [start, end), at the price in force at `start`."""

    unit: str
    start: dt.datetime
    end: dt.datetime
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class DueGroup:
    """Due meters alike in everything their next intervals depend on — resource, GPU model, quantity,
    cursor, and the end of what is due (their end, or now) — so they are cut and priced once, together.
    After a tick every open meter's cursor is that tick's now, so a tick has few groups however many
    meters it writes."""

    resource: MeteredResource
    gpu_model: str | None
    quantity: Decimal
    metered_until: dt.datetime
    until: dt.datetime
    ids: list[uuid.UUID]


def cut_span(
    resource: MeteredResource,
    gpu_model: str | None,
    quantity: Decimal,
    start: dt.datetime,
    until: dt.datetime,
    book: PriceBook,
    period: BillingPeriod,
) -> list[Piece]:
    """The intervals of [start, until): split at price changes and period boundaries, each priced with
    the price in force at its start. Empty when `until` is not after `start`."""
    if until <= start:
        return []
    cuts = set(book.changes_between(resource, gpu_model, start, until))
    cuts.update(boundaries_between(start, until, period))
    points = [start, *sorted(cuts), until]
    pieces = []
    for begin, end in itertools.pairwise(points):
        price = book.price_at(resource, gpu_model, begin)
        amount = amount_for(resource, quantity, price, begin, end)
        pieces.append(Piece(resource.unit, begin, end, price, amount))
    return pieces


def cut(meter: DueMeter, book: PriceBook, period: BillingPeriod, now: dt.datetime) -> list[Piece]:
    """The meter's next intervals: from its cursor to its end (or `now`), split at price changes and
    period boundaries. Empty when there is nothing to meter yet."""
    until = min(meter.ended_at, now) if meter.ended_at is not None else now
    return cut_span(meter.resource, meter.gpu_model, meter.quantity, meter.metered_until, until, book, period)


@dataclass
class Chunk:
    """One write: at most `size` meters (whole groups or a group's slice), their groups' cursor moves and
    pieces. Group numbers are local to the chunk (1-based, as `WITH ORDINALITY` counts)."""

    ids: list[uuid.UUID] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    """The chunk-local group number of each of `ids`."""
    olds: list[dt.datetime] = field(default_factory=list)
    news: list[dt.datetime] = field(default_factory=list)
    added: list[Decimal] = field(default_factory=list)
    """Per group, its pieces' amounts: added to each of its meters' running totals."""
    pieces: list[tuple[int, Piece]] = field(default_factory=list)

    def add(self, ids: list[uuid.UUID], group: DueGroup, pieces: list[Piece]) -> None:
        number = len(self.olds) + 1
        self.ids += ids
        self.groups += [number] * len(ids)
        self.olds.append(group.metered_until)
        self.news.append(pieces[-1].end)
        self.added.append(sum((piece.amount for piece in pieces), Decimal(0)))
        self.pieces += [(number, piece) for piece in pieces]

    def parameters(self, currency: str) -> dict[str, Any]:
        """The parameters of `WRITE_CTES`."""
        return {
            "ids": self.ids,
            "groups": self.groups,
            "olds": self.olds,
            "news": self.news,
            "added": self.added,
            "p_groups": [number for number, _ in self.pieces],
            "p_units": [p.unit for _, p in self.pieces],
            "p_starts": [p.start for _, p in self.pieces],
            "p_ends": [p.end for _, p in self.pieces],
            "p_prices": [p.unit_price for _, p in self.pieces],
            "p_amounts": [p.amount for _, p in self.pieces],
            "currency": currency,
        }


def plan(
    groups: Iterable[DueGroup], book: PriceBook, period: BillingPeriod, size: int
) -> tuple[int, list[Chunk]]:
    """The meters to advance and the writes of one tick, at most `size` meters a write."""
    chunks: list[Chunk] = []
    current = Chunk()
    meters = 0
    for group in groups:
        pieces = cut_span(
            group.resource, group.gpu_model, group.quantity, group.metered_until, group.until, book, period
        )
        if not pieces:
            continue
        meters += len(group.ids)
        offset = 0
        while offset < len(group.ids):
            room = size - len(current.ids)
            current.add(group.ids[offset : offset + room], group, pieces)
            offset += room
            if len(current.ids) >= size:
                chunks.append(current)
                current = Chunk()
    if current.ids:
        chunks.append(current)
    return meters, chunks


CLOSE_POINT_DUE = """
    m.metered_until < :now
    AND (m.ended_at IS NOT NULL
         OR :close_s = 0
         OR floor((extract(epoch FROM CAST(:now AS timestamptz)) - mod({phase}, :close_s)) / :close_s)
            > floor((extract(epoch FROM m.metered_until) - mod({phase}, :close_s)) / :close_s))
""".format(phase="CAST(CAST('x' || left(CAST(m.id AS text), 8) AS bit(32)) AS bigint)")
"""Whether meter `m` is due at `:now`: it has usage before now not yet in intervals, and either its spell
has ended (a stop closes at once, `metered_until < ended_at` then), or one of its close points lies in
(cursor, now]. A meter's close points are `:close_s` seconds apart, offset by a phase taken from its id
(the first 32 bits of a random UUID), so running meters close at moments spread evenly over the close
period whatever their start: a tick closes about meter_seconds ÷ meter_close_seconds of them, and no
moment (a month boundary, a price change, a mass start) lines them up again. `:close_s` 0 closes every
meter with usage at every tick."""

DUE_SQL = text(
    f"""
    SELECT m.resource, m.gpu_model, m.quantity, m.metered_until, least(m.ended_at, :now) AS until,
           array_agg(m.id) AS ids
      FROM meters m LEFT JOIN environments e ON e.id = m.environment_id
     WHERE (m.ended_at IS NULL OR m.metered_until < m.ended_at) AND {CLOSE_POINT_DUE}
       -- a home volume's meter belongs to no environment: shard 0's leader meters it
       AND coalesce(e.shard, 0) = :shard
     GROUP BY 1, 2, 3, 4, 5
    """
)
"""`least` ignores NULL: an open meter is due up to now."""


def due_groups(connection: Connection, shard: int, now: dt.datetime, close_s: int) -> list[DueGroup]:
    """Every due meter of `shard` (`CLOSE_POINT_DUE`), in groups metered alike."""
    return [
        DueGroup(
            MeteredResource(row.resource), row.gpu_model, row.quantity, row.metered_until, row.until, row.ids
        )
        for row in connection.execute(DUE_SQL, {"now": now, "shard": shard, "close_s": close_s})
    ]


WRITE_CTES = """
    groups AS (
        SELECT * FROM unnest(CAST(:olds AS timestamptz[]), CAST(:news AS timestamptz[]),
                             CAST(:added AS numeric[])) WITH ORDINALITY
               AS g(old, new, added, number)
    ), moves AS (
        SELECT v.id, v.number, g.old, g.new, g.added
          FROM unnest(CAST(:ids AS uuid[]), CAST(:groups AS bigint[])) AS v(id, number)
          JOIN groups g USING (number)
    ), advanced AS (
        -- the guard: the cursor is where this tick read it, and the spell has not ended before the new
        -- cursor (a stop observed meanwhile); row locks make a racing meter re-check both
        UPDATE meters m SET metered_until = v.new, amount = m.amount + v.added FROM moves v
         WHERE m.id = v.id AND m.metered_until = v.old AND (m.ended_at IS NULL OR m.ended_at >= v.new)
           AND EXISTS (SELECT 1 FROM leader)
        RETURNING m.id, m.environment_id, m.home_volume_id, m.workspace_id, m.user_id, m.resource, m.subject,
                  m.gpu_model, m.quantity, v.number
    ), pieces AS (
        SELECT * FROM unnest(CAST(:p_groups AS bigint[]), CAST(:p_units AS text[]),
                             CAST(:p_starts AS timestamptz[]), CAST(:p_ends AS timestamptz[]),
                             CAST(:p_prices AS numeric[]), CAST(:p_amounts AS numeric[]))
               AS p(number, unit, s, e, price, amount)
    ), inserted AS (
        INSERT INTO billing_intervals (meter_id, environment_id, home_volume_id, workspace_id, user_id, resource,
                                       subject, gpu_model, quantity, unit, started_at, ended_at, currency,
                                       unit_price, amount)
        SELECT a.id, a.environment_id, a.home_volume_id, a.workspace_id, a.user_id, a.resource, a.subject,
               a.gpu_model,
               a.quantity, p.unit, p.s, p.e, :currency, p.price, p.amount
          FROM advanced a JOIN pieces p USING (number)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM advanced) AS advanced, (SELECT count(*) FROM inserted) AS inserted
"""
"""The write, after a `leader` CTE (the fencing check) that the caller puts first."""
