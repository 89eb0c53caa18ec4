"""Spending limits: how much of its limit a workspace has spent in the current billing period.

A workspace's `spending_limit` setting (a decimal amount in the deployment's currency, per billing
period) is compared with its spend: everything its environments accrued since the period began —
closed intervals plus every meter's open tail up to now, priced as the meter tick will price it, so
a running environment's spend is exact between ticks (as `core.billing.usage`).

This read is lighter than `usage` because it runs in the scheduling pass and a leader job: the closed
part is each meter's running total (`meters.amount`) when the meter began inside the period, and only
for a meter older than the period its intervals since the period began (found by the meter's own
`(meter_id, started_at)` index), never a scan of the workspace's whole interval history. Everything is
read in one statement, so a tick in between neither loses nor doubles a span.

States: `ok` below 80 %, `warning` from 80 %, `exhausted` from 100 % (a limit of 0 is exhausted at
once). Exhausted: new environments wait (queue reason `budget exhausted`) and running ones are stopped
by the policy job (`reconciler.policies`). Persistent volumes keep their data and keep accruing storage
past the limit: deleting data to save money is the user's call, so spend can exceed the limit (the
overrun).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import Connection, text

from remotegpu.core.billing.metering import DueMeter, cut
from remotegpu.core.billing.periods import period_start
from remotegpu.core.billing.pricing import PriceBook
from remotegpu.core.environments.states import MeteredResource
from remotegpu.core.platform.db import fetch_all
from remotegpu.core.platform.settings import BillingPeriod

WARN_FRACTION = Decimal("0.8")
"""From this share of the limit on, the workspace is warned (once per period) and shown a warning."""
BUDGET_EXHAUSTED = "budget exhausted"
"""The queue reason of an environment that waits because its workspace spent its limit."""


class BudgetState(enum.StrEnum):
    """Where a workspace stands against its limit."""

    OK = "ok"
    WARNING = "warning"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True)
class Budget:
    """A workspace's limit and its spend in the period that began at `period_start`."""

    workspace_id: uuid.UUID
    limit: Decimal
    spent: Decimal
    """Unrounded."""
    period_start: dt.datetime

    @property
    def percent(self) -> Decimal:
        """Spend as a percentage of the limit, to one decimal place (100 for a limit of 0)."""
        if self.limit == 0:
            return Decimal(100)
        return (self.spent * 100 / self.limit).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)

    @property
    def state(self) -> BudgetState:
        """`exhausted` at or past the limit, `warning` from 80 %, else `ok`."""
        if self.spent >= self.limit:
            return BudgetState.EXHAUSTED
        if self.spent >= self.limit * WARN_FRACTION:
            return BudgetState.WARNING
        return BudgetState.OK

    @property
    def overrun(self) -> Decimal:
        """How far spend is past the limit (storage keeps accruing after the stop), else 0."""
        return max(self.spent - self.limit, Decimal(0))


_LIMITS_SQL = text(
    """
    SELECT id, settings->>'spending_limit' AS spending_limit FROM workspaces
     WHERE deleted_at IS NULL AND settings->>'spending_limit' IS NOT NULL
       AND (CAST(:ids AS uuid[]) IS NULL OR id = ANY(CAST(:ids AS uuid[])))
    """
)

# One snapshot: each meter's part inside the period that is already in intervals, each open tail, and
# the prices the tails need. A meter that began inside the period has all its intervals there.
_SPEND_SQL = text(
    """
    WITH relevant AS (
        SELECT m.* FROM environments e JOIN meters m ON m.environment_id = e.id
         WHERE e.workspace_id = ANY(CAST(:ids AS uuid[]))
           AND (m.ended_at IS NULL OR m.ended_at > :start)
        UNION ALL  -- home volumes' storage, which belongs to no environment
        SELECT m.* FROM meters m
         WHERE m.home_volume_id IS NOT NULL AND m.workspace_id = ANY(CAST(:ids AS uuid[]))
           AND (m.ended_at IS NULL OR m.ended_at > :start)
    ), open AS (
        SELECT * FROM relevant r WHERE (r.ended_at IS NULL OR r.metered_until < r.ended_at)
    )
    SELECT 'closed' AS kind, r.workspace_id, CAST(NULL AS uuid) AS meter_id, CAST(NULL AS text) AS resource,
           CAST(NULL AS text) AS gpu_model, CAST(NULL AS numeric) AS quantity,
           sum(CASE WHEN r.started_at >= :start THEN r.amount
                    ELSE (SELECT coalesce(sum(b.amount), 0) FROM billing_intervals b
                           WHERE b.meter_id = r.id AND b.started_at >= :start) END) AS amount,
           CAST(NULL AS timestamptz) AS since, CAST(NULL AS timestamptz) AS until
      FROM relevant r GROUP BY r.workspace_id
    UNION ALL
    SELECT 'open', o.workspace_id, o.id, o.resource, o.gpu_model, o.quantity, NULL, o.metered_until, o.ended_at
      FROM open o
    UNION ALL
    SELECT 'price', NULL, NULL, p.resource, p.gpu_model, NULL, p.unit_price, p.effective_from, NULL
      FROM prices p WHERE EXISTS (SELECT 1 FROM open o WHERE o.resource = p.resource)
    """
)


def _limits(rows: list[Any]) -> dict[uuid.UUID, Decimal]:
    return {row.id: Decimal(row.spending_limit) for row in rows}


def _spend_params(limits: dict[uuid.UUID, Decimal], start: dt.datetime) -> dict[str, Any]:
    return {"ids": list(limits), "start": start}


def _budgets(
    limits: dict[uuid.UUID, Decimal],
    rows: list[Any],
    start: dt.datetime,
    now: dt.datetime,
    period: BillingPeriod,
) -> dict[uuid.UUID, Budget]:
    """Each limited workspace's budget from `_SPEND_SQL`'s rows: closed parts plus open tails cut and
    priced as the tick will, only the pieces inside the period."""
    book = PriceBook.of(
        (MeteredResource(r.resource), r.gpu_model, r.amount, r.since) for r in rows if r.kind == "price"
    )
    spent = dict.fromkeys(limits, Decimal(0))
    for row in rows:
        if row.kind == "closed":
            spent[row.workspace_id] += Decimal(row.amount)
        elif row.kind == "open":
            meter = DueMeter(
                row.meter_id,
                MeteredResource(row.resource),
                row.gpu_model,
                Decimal(row.quantity),
                max(row.since, start),
                row.until,
            )
            spent[row.workspace_id] += sum((p.amount for p in cut(meter, book, period, now)), Decimal(0))
    return {ws: Budget(ws, limit, spent[ws], start) for ws, limit in limits.items()}


def budgets(
    connection: Connection,
    now: dt.datetime,
    period: BillingPeriod,
    workspace_ids: Collection[uuid.UUID] | None = None,
) -> dict[uuid.UUID, Budget]:
    """The budgets of the live workspaces with a limit (of those in `workspace_ids`, or all): two
    statements, the second only when some workspace has a limit."""
    ids = None if workspace_ids is None else list(workspace_ids)
    limits = _limits(list(connection.execute(_LIMITS_SQL, {"ids": ids})))
    if not limits:
        return {}
    start = period_start(now, period)
    rows = list(connection.execute(_SPEND_SQL, _spend_params(limits, start)))
    return _budgets(limits, rows, start, now, period)


def workspace_budget(
    connection: Connection, workspace_id: uuid.UUID, now: dt.datetime, period: BillingPeriod
) -> Budget | None:
    """The workspace's budget; None when it has no limit."""
    return budgets(connection, now, period, [workspace_id]).get(workspace_id)


async def workspace_budget_async(
    connection: AsyncConnection[Any], workspace_id: uuid.UUID, now: dt.datetime, period: BillingPeriod
) -> Budget | None:
    """`workspace_budget` on the event loop."""
    limits = _limits(await fetch_all(connection, _LIMITS_SQL, {"ids": [workspace_id]}))
    if not limits:
        return None
    start = period_start(now, period)
    rows = await fetch_all(connection, _SPEND_SQL, _spend_params(limits, start))
    return _budgets(limits, rows, start, now, period).get(workspace_id)


def exhausted_workspaces(
    connection: Connection, workspace_ids: Collection[uuid.UUID], now: dt.datetime, period: BillingPeriod
) -> dict[uuid.UUID, str]:
    """Of `workspace_ids`, those that spent their limit, with the queue reason their environments wait
    with (the scheduling pass holds them back)."""
    if not workspace_ids:
        return {}
    found = budgets(connection, now, period, workspace_ids)
    return {ws: BUDGET_EXHAUSTED for ws, budget in found.items() if budget.state is BudgetState.EXHAUSTED}
