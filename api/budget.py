"""A workspace's spending limit as the API shows it: in `GET /environments/{id}`, a start's answer and
`GET /billing/usage`."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec

from remotegpu.core.billing.budget import Budget
from remotegpu.core.billing.pricing import money


class BudgetOut(msgspec.Struct):
    """The workspace's spending limit for the current billing period (from `period_start`) and its
    spend so far, unrounded. `state`: `ok`, `warning` (from 80 %) or `exhausted` (from 100 %: new
    environments wait with `budget exhausted`, running ones are stopped with `BudgetExceeded`).
    `overrun`: spend past the limit (volumes keep accruing storage after the stop). The figures are null
    for callers who may not see the workspace's bills."""

    workspace_id: uuid.UUID
    state: str
    period_start: dt.datetime
    currency: str
    limit: str | None
    spent: str | None
    percent: str | None
    overrun: str | None


def budget_out(budget: Budget | None, currency: str, *, figures: bool) -> BudgetOut | None:
    """The API's view of a budget (None: the workspace has no limit); `figures`: the caller may see the
    workspace's bills."""
    if budget is None:
        return None
    shown = BudgetOut(
        budget.workspace_id, budget.state.value, budget.period_start, currency, None, None, None, None
    )
    if figures:
        shown.limit, shown.spent, shown.percent, shown.overrun = (
            money(budget.limit),
            money(budget.spent),
            money(budget.percent),
            money(budget.overrun),
        )
    return shown
