"""Live usage and cost: what the meter has closed into intervals, plus each meter's open tail priced now.

The meter tick closes usage into intervals every few minutes, up to each meter's cursor
(`metered_until`). Between ticks a running environment keeps accruing, so a read that summed intervals
only would lag by up to a tick. Here every read adds the open tail of each meter, from its cursor to
min(its end, now, the window's end), cut at price changes and period boundaries and priced with the
price book exactly as the tick will price it (`core.billing.metering.cut`). Intervals end at their
meter's cursor and the tail starts there, so nothing is counted twice or missed — provided both are read
in one snapshot: each read here is one statement.

Windows. `usage` covers [from, to) (by default the current billing period's start to now). An interval
wholly inside counts as stored; one partly inside counts pro rata by the seconds of overlap: its quantity
for the overlap and `amount × overlap / length`, to 12 decimal places (the intervals' own precision).

Rounding. Nothing is rounded to cents here except `total_rounded`: the sum of the unrounded amounts,
rounded once to 2 places half-even (ROUND_HALF_EVEN). Money is rounded once per invoice line or total,
never per interval or per line of this answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import Connection, text

from remotegpu.core.accounts.users import Principal
from remotegpu.core.billing.metering import DueMeter, cut
from remotegpu.core.billing.periods import period_start
from remotegpu.core.billing.pricing import PriceBook, seconds_between, unit_seconds
from remotegpu.core.billing.views import BILLABLE, billable_workspace
from remotegpu.core.environments.states import MeteredResource
from remotegpu.core.platform.db import fetch_all
from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.platform.settings import BillingPeriod

CENTS = Decimal("0.01")


@dataclass(frozen=True)
class UsageLine:
    """One resource of one environment over the window: GPUs of one model, CPU, memory, or one volume."""

    workspace_id: uuid.UUID
    workspace: str
    environment_id: uuid.UUID | None
    """None for a home volume (`environment` is then `home:<username>`)."""
    environment: str
    resource: MeteredResource
    gpu_model: str | None
    subject: str
    """The volume's name for storage; empty for compute."""
    quantity: Decimal
    """In `resource.unit`: GPU-hours, core-hours, GiB-hours, or GiB-months (730 hours) for storage."""
    amount: Decimal
    """Unrounded (closed intervals to 12 places, plus the open tail)."""


@dataclass(frozen=True)
class Usage:
    """Usage of the window, by environment and resource, with its totals."""

    start: dt.datetime
    end: dt.datetime
    currency: str
    lines: list[UsageLine]

    @property
    def total(self) -> Decimal:
        """The sum of every line's unrounded amount."""
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def total_rounded(self) -> Decimal:
        """`total` rounded once to cents, half-even."""
        return self.total.quantize(CENTS, rounding=ROUND_HALF_EVEN)

    def by_environment(self) -> dict[tuple[uuid.UUID | None, str], Decimal]:
        """Each environment's (and each home volume's) unrounded total, by (id, name)."""
        totals: dict[tuple[uuid.UUID | None, str], Decimal] = {}
        for line in self.lines:
            key = (line.environment_id, line.environment)
            totals[key] = totals.get(key, Decimal(0)) + line.amount
        return totals


_OVERLAP = (
    "extract(epoch FROM least(b.ended_at, CAST(:window_end AS timestamptz))"
    " - greatest(b.started_at, CAST(:window_start AS timestamptz)))"
)

_USAGE_SQL = text(
    f"""
    WITH closed AS (
        SELECT b.workspace_id, b.environment_id, b.user_id, b.resource, b.gpu_model, b.subject,
               sum(b.quantity * {_OVERLAP}) AS quantity_seconds,
               sum(CASE WHEN b.started_at >= :window_start AND b.ended_at <= :window_end THEN b.amount
                        ELSE round(b.amount * {_OVERLAP} / extract(epoch FROM b.ended_at - b.started_at), 12)
                   END) AS amount
          FROM billing_intervals b
         WHERE {BILLABLE.format(table="b")}
           AND (CAST(:workspace AS uuid) IS NULL OR b.workspace_id = :workspace)
           AND b.started_at < :window_end AND b.ended_at > :window_start
         GROUP BY b.workspace_id, b.environment_id, b.user_id, b.resource, b.gpu_model, b.subject
    ), open AS (
        SELECT mt.id, mt.workspace_id, mt.environment_id, mt.user_id, mt.resource, mt.gpu_model, mt.subject,
               mt.quantity,
               mt.metered_until, mt.ended_at
          FROM meters mt
         WHERE {BILLABLE.format(table="mt")}
           AND (CAST(:workspace AS uuid) IS NULL OR mt.workspace_id = :workspace)
           AND (mt.ended_at IS NULL OR mt.metered_until < mt.ended_at)
           AND mt.metered_until < least(CAST(:window_end AS timestamptz), CAST(:now AS timestamptz))
           AND (mt.ended_at IS NULL OR mt.ended_at > :window_start)
    )
    SELECT 'closed' AS kind, c.workspace_id, w.name AS workspace, c.environment_id,
           coalesce(e.name, 'home:' || u.username) AS environment,
           c.resource, c.gpu_model, c.subject, c.quantity_seconds AS quantity, c.amount,
           CAST(NULL AS uuid) AS meter_id, CAST(NULL AS timestamptz) AS since,
           CAST(NULL AS timestamptz) AS until
      FROM closed c LEFT JOIN environments e ON e.id = c.environment_id JOIN workspaces w ON w.id = c.workspace_id
      JOIN users u ON u.id = c.user_id
    UNION ALL
    SELECT 'open', o.workspace_id, w.name, o.environment_id, coalesce(e.name, 'home:' || u.username), o.resource,
           o.gpu_model, o.subject,
           o.quantity, NULL, o.id, o.metered_until, o.ended_at
      FROM open o LEFT JOIN environments e ON e.id = o.environment_id JOIN workspaces w ON w.id = o.workspace_id
      JOIN users u ON u.id = o.user_id
    UNION ALL
    SELECT 'price', NULL, NULL, NULL, NULL, p.resource, p.gpu_model, '', NULL, p.unit_price, NULL,
           p.effective_from, NULL
      FROM prices p WHERE EXISTS (SELECT 1 FROM open o WHERE o.resource = p.resource)
    """
)


def usage(
    connection: Connection,
    principal: Principal,
    workspace: str | None,
    from_: dt.datetime | None,
    to: dt.datetime | None,
    now: dt.datetime,
    period: BillingPeriod,
    *,
    currency: str,
) -> Usage:
    """Usage over [from_, to) of `workspace` (name or id) or of every workspace whose bills the caller
    may see. `from_` defaults to the start of the billing period `now` falls in, `to` to `now`.

    NotFoundError for a workspace the caller is not in, ForbiddenError for a member below admin (as
    every billing read). Amounts are unrounded; see the module docstring for the one rounding.
    """
    workspace_id = billable_workspace(connection, principal, workspace)
    start = from_ if from_ is not None else period_start(now, period)
    end = to if to is not None else now
    if start >= end:
        raise InvalidInputError("from", f"must be before `to` ({end.isoformat()})")
    rows = list(
        connection.execute(
            _USAGE_SQL,
            {
                "user": principal.user_id,
                "admin": principal.is_admin,
                "workspace": workspace_id,
                "window_start": start,
                "window_end": end,
                "now": now,
            },
        )
    )
    return Usage(start, end, currency, _lines(rows, period, now, start, end))


def _lines(
    rows: list[Any], period: BillingPeriod, now: dt.datetime, start: dt.datetime, end: dt.datetime
) -> list[UsageLine]:
    """One line per (environment, resource, model, volume): closed rows and open tails summed."""
    book = _book(rows)
    lines: dict[tuple[Any, ...], UsageLine] = {}
    seconds: dict[tuple[Any, ...], Decimal] = {}
    for row in rows:
        if row.kind == "price":
            continue
        resource = MeteredResource(row.resource)
        if row.kind == "closed":
            quantity_seconds, amount = Decimal(row.quantity), Decimal(row.amount)
        else:
            quantity_seconds, amount = _tail(row, book, period, now, start, end)
        key = (
            row.workspace,
            row.environment,
            str(row.environment_id),
            resource,
            row.gpu_model or "",
            row.subject,
        )
        known = lines.get(key)
        seconds[key] = seconds.get(key, Decimal(0)) + quantity_seconds
        quantity = seconds[key] / unit_seconds(resource)  # divided once, from the exact sum
        lines[key] = (
            dataclasses.replace(known, quantity=quantity, amount=known.amount + amount)
            if known
            else UsageLine(
                row.workspace_id,
                row.workspace,
                row.environment_id,
                row.environment,
                resource,
                row.gpu_model,
                row.subject,
                quantity,
                amount,
            )
        )
    return [lines[key] for key in sorted(lines)]


def _book(rows: Iterable[Any]) -> PriceBook:
    return PriceBook.of(
        (MeteredResource(r.resource), r.gpu_model, r.amount, r.since) for r in rows if r.kind == "price"
    )


def _tail(
    row: Any,
    book: PriceBook,
    period: BillingPeriod,
    now: dt.datetime,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> tuple[Decimal, Decimal]:
    """(quantity × seconds, amount) of a meter's open tail inside [start, end) (unbounded when None), as
    the tick will cut and price it."""
    until = row.until if end is None else (end if row.until is None else min(row.until, end))
    meter = DueMeter(
        row.meter_id,
        MeteredResource(row.resource),
        row.gpu_model,
        Decimal(row.quantity),
        row.since if start is None else max(row.since, start),
        until,
    )
    pieces = cut(meter, book, period, now)
    quantity_seconds = sum((meter.quantity * seconds_between(p.start, p.end) for p in pieces), Decimal(0))
    return quantity_seconds, sum((p.amount for p in pieces), Decimal(0))


# -- one environment's cost so far ---------------------------------------------------------------------
# The closed part is the meters' running totals (a few rows per environment, however long it has run),
# the open part each meter's tail from its cursor, priced now.

_COST_SQL = text(
    """
    WITH open AS (
        SELECT m.id, m.resource, m.gpu_model, m.quantity, m.metered_until, m.ended_at FROM meters m
         WHERE m.environment_id = :id AND (m.ended_at IS NULL OR m.metered_until < m.ended_at)
    )
    SELECT 'closed' AS kind, CAST(NULL AS uuid) AS meter_id, CAST(NULL AS text) AS resource,
           CAST(NULL AS text) AS gpu_model, CAST(NULL AS numeric) AS quantity,
           (SELECT coalesce(sum(t.amount), 0) FROM meters t WHERE t.environment_id = :id) AS amount,
           CAST(NULL AS timestamptz) AS since, CAST(NULL AS timestamptz) AS until
    UNION ALL
    SELECT 'open', o.id, o.resource, o.gpu_model, o.quantity, NULL, o.metered_until, o.ended_at FROM open o
    UNION ALL
    SELECT 'price', NULL, p.resource, p.gpu_model, NULL, p.unit_price, p.effective_from, NULL
      FROM prices p WHERE EXISTS (SELECT 1 FROM open o WHERE o.resource = p.resource)
    """
)


def cost_from_rows(rows: list[Any], period: BillingPeriod, now: dt.datetime) -> Decimal:
    """The environment's whole cost so far, unrounded, from `_COST_SQL`'s rows."""
    book = _book(rows)
    total = Decimal(0)
    for row in rows:
        if row.kind == "closed":
            total += Decimal(row.amount)
        elif row.kind == "open":
            total += _tail(row, book, period, now)[1]
    return total


def environment_cost(
    connection: Connection, environment_id: uuid.UUID, now: dt.datetime, period: BillingPeriod
) -> Decimal:
    """Everything the environment has cost since it was created (every run's compute and its volumes'
    storage), including the open tails up to `now`; the caller has checked who may see it."""
    return cost_from_rows(list(connection.execute(_COST_SQL, {"id": environment_id})), period, now)


async def environment_cost_async(
    connection: AsyncConnection[Any], environment_id: uuid.UUID, now: dt.datetime, period: BillingPeriod
) -> Decimal:
    """`environment_cost` on the event loop (one statement)."""
    return cost_from_rows(await fetch_all(connection, _COST_SQL, {"id": environment_id}), period, now)
