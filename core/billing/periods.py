"""Billing periods in UTC: calendar months, ISO weeks (from Monday 00:00) or days.

No usage interval crosses a period boundary, so every interval belongs to exactly one invoice.
"""

from __future__ import annotations

import datetime as dt

from remotegpu.core.platform.settings import BillingPeriod


def period_start(moment: dt.datetime, period: BillingPeriod) -> dt.datetime:
    """The start of the period `moment` falls in."""
    day = moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def next_period_start(moment: dt.datetime, period: BillingPeriod) -> dt.datetime:
    """The first period boundary strictly after `moment`."""
    start = period_start(moment, period)
    if period == "day":
        return start + dt.timedelta(days=1)
    if period == "week":
        return start + dt.timedelta(days=7)
    return (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )


def boundaries_between(start: dt.datetime, end: dt.datetime, period: BillingPeriod) -> list[dt.datetime]:
    """The period boundaries strictly inside (start, end), in order."""
    found = []
    boundary = next_period_start(start, period)
    while boundary < end:
        found.append(boundary)
        boundary = next_period_start(boundary, period)
    return found
