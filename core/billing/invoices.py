"""Invoices: what lines a set of metered intervals makes, and which intervals a workspace's invoice holds.

A workspace has one invoice per billing period. While the period runs (and for `invoice_grace_seconds`
after it ends) the invoice is a draft: its lines are computed when read, from the workspace's intervals
not yet on a finalized invoice, so a draft is always as current as the meter. Then the leader finalizes
it (`reconciler.invoicing`): in one transaction it marks those intervals with the invoice's id, writes
the lines computed from exactly the marked intervals, and sets the status; from then on the trigger of
migration 0001 refuses any change to the invoice or its lines.

An interval is on the invoice of its own period unless that invoice was finalized before the interval
was metered (a tick delayed past the grace period): then it goes on the next invoice finalized for the
workspace, as an adjustment line naming the period it belongs to. Invoices are finalized oldest period
first and each takes every unmarked interval that started before its end, so an interval is invoiced
exactly once and a draft shows what its finalization will hold.

Lines group intervals by (resource, GPU model, unit, unit price, adjusted period). A line's amount is
the sum of its intervals' 12-place amounts rounded once, half-even, to cents; the total is the sum of
the lines' amounts. Its quantity is Σ quantity × seconds ÷ the unit's seconds, to 6 places.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.billing.pricing import unit_seconds
from remotegpu.core.environments.states import MeteredResource
from remotegpu.core.platform.settings import BillingPeriod

CENTS = Decimal("0.01")
QUANTITY_PLACES = Decimal("0.000001")

_LABELS = {
    MeteredResource.GPU: "GPU-hours",
    MeteredResource.CPU: "CPU core-hours",
    MeteredResource.MEMORY: "Memory GiB-hours",
    MeteredResource.STORAGE: "Storage GiB-months",
}


@dataclass(frozen=True)
class Line:
    """One invoice line, as computed from intervals or as stored."""

    description: str
    resource: MeteredResource
    gpu_model: str | None
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    adjusts_period_start: dt.datetime | None

    @property
    def sort_key(self) -> tuple[Any, ...]:
        """Regular lines first, then adjustments oldest period first; by resource, model and price."""
        adjusts = self.adjusts_period_start
        return (
            adjusts is not None,
            adjusts or dt.datetime.min.replace(tzinfo=dt.UTC),
            self.resource.value,
            self.gpu_model or "",
            self.unit_price,
        )


def period_label(start: dt.datetime, period: BillingPeriod) -> str:
    """`2026-11` for a month, `week of 2026-11-02`, `2026-11-05` for a day."""
    day = start.astimezone(dt.UTC).date()
    if period == "month":
        return f"{day:%Y-%m}"
    return f"week of {day.isoformat()}" if period == "week" else day.isoformat()


def describe(
    resource: MeteredResource, model: str | None, adjusts: dt.datetime | None, period: BillingPeriod
) -> str:
    """`H100 GPU-hours`, `Storage GiB-months`, `… (adjustment: usage of 2026-10 metered late)`."""
    label = f"{model} {_LABELS[resource]}" if model else _LABELS[resource]
    if adjusts is None:
        return label
    return f"{label} (adjustment: usage of {period_label(adjusts, period)} metered late)"


_LINES_SQL = """
    SELECT b.resource, b.gpu_model, b.unit, b.unit_price,
           CASE WHEN b.started_at >= :period_start THEN NULL
                ELSE date_trunc(:trunc, b.started_at, 'UTC') END AS adjusts,
           sum(b.amount) AS amount,
           sum(b.quantity * extract(epoch FROM b.ended_at - b.started_at)) AS quantity_seconds
      FROM billing_intervals b
     WHERE {where}
     GROUP BY 1, 2, 3, 4, 5
"""
_ON_INVOICE = "b.invoice_id = :invoice"
_UNMARKED = (
    "b.workspace_id = :workspace AND b.invoice_id IS NULL AND b.started_at < :period_end"
    " AND (CAST(:lower AS timestamptz) IS NULL OR b.started_at >= :lower)"
)


def _lines(rows: Any, period: BillingPeriod) -> list[Line]:
    lines = []
    for row in rows:
        resource = MeteredResource(row.resource)
        quantity = Decimal(row.quantity_seconds) / unit_seconds(resource)
        lines.append(
            Line(
                describe(resource, row.gpu_model, row.adjusts, period),
                resource,
                row.gpu_model,
                quantity.quantize(QUANTITY_PLACES, rounding=ROUND_HALF_EVEN),
                row.unit,
                row.unit_price,
                Decimal(row.amount).quantize(CENTS, rounding=ROUND_HALF_EVEN),
                row.adjusts,
            )
        )
    return sorted(lines, key=lambda line: line.sort_key)


def total_of(lines: list[Line]) -> Decimal:
    """An invoice's total: the sum of its (already rounded) lines."""
    return sum((line.amount for line in lines), Decimal(0)).quantize(CENTS)


def lines_on_invoice(
    connection: Connection, invoice_id: uuid.UUID, period_start: dt.datetime, period: BillingPeriod
) -> list[Line]:
    """The lines the intervals marked with `invoice_id` make (finalization writes exactly these)."""
    rows = connection.execute(
        text(_LINES_SQL.format(where=_ON_INVOICE)),
        {"invoice": invoice_id, "period_start": period_start, "trunc": period},
    )
    return _lines(rows, period)


def draft_lines(
    connection: Connection,
    workspace_id: uuid.UUID,
    period_start: dt.datetime,
    period_end: dt.datetime,
    period: BillingPeriod,
) -> list[Line]:
    """A draft's lines now: the workspace's unmarked intervals that its finalization would take.

    Those that started before its end — except, when an older draft of the workspace is still open (a
    period in its grace time), those before its start, which that older draft takes first."""
    older = connection.execute(
        text(
            "SELECT 1 FROM invoices WHERE workspace_id = :w AND status = 'draft' AND period_start < :s LIMIT 1"
        ),
        {"w": workspace_id, "s": period_start},
    ).first()
    rows = connection.execute(
        text(_LINES_SQL.format(where=_UNMARKED)),
        {
            "workspace": workspace_id,
            "period_start": period_start,
            "period_end": period_end,
            "lower": period_start if older else None,
            "trunc": period,
        },
    )
    return _lines(rows, period)


_STORED_SQL = text(
    "SELECT description, resource, gpu_model, quantity, unit, unit_price, amount, adjusts_period_start"
    " FROM invoice_lines WHERE invoice_id = :id"
)


def stored_lines(connection: Connection, invoice_id: uuid.UUID) -> list[Line]:
    """A finalized invoice's lines as written, in invoice order."""
    lines = [
        Line(
            row.description,
            MeteredResource(row.resource),
            row.gpu_model,
            row.quantity,
            row.unit,
            row.unit_price,
            row.amount.quantize(CENTS),  # stored to 6 places; shown in cents, as a draft's are
            row.adjusts_period_start,
        )
        for row in connection.execute(_STORED_SQL, {"id": invoice_id})
    ]
    return sorted(lines, key=lambda line: line.sort_key)


CSV_HEADER = (
    "description",
    "resource",
    "gpu_model",
    "quantity",
    "unit",
    "unit_price",
    "amount",
    "adjusts_period_start",
)


def csv_rows(lines: list[Line]) -> list[tuple[str, ...]]:
    """The lines as CSV rows under `CSV_HEADER`; money and quantities as plain decimals."""
    return [
        (
            line.description,
            line.resource.value,
            line.gpu_model or "",
            f"{line.quantity:f}",
            line.unit,
            f"{line.unit_price:f}",
            f"{line.amount:f}",
            line.adjusts_period_start.isoformat() if line.adjusts_period_start else "",
        )
        for line in lines
    ]
