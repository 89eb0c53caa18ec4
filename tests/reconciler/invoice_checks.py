"""What every invoice must satisfy, checked from the rows: shared by the invoice job's tests and the
property test over random usage."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.billing.periods import period_start
from remotegpu.core.platform.settings import BillingPeriod


def snapshot(connection: Connection, invoice_id: uuid.UUID) -> tuple[Any, ...]:
    """Everything an invoice says, to compare before and after."""
    invoice = connection.execute(
        text(
            "SELECT id, workspace_id, period_start, period_end, status, currency, total, finalized_at"
            " FROM invoices WHERE id = :id"
        ),
        {"id": invoice_id},
    ).one()
    lines = connection.execute(
        text(
            "SELECT id, description, resource, gpu_model, quantity, unit, unit_price, amount,"
            " adjusts_period_start FROM invoice_lines WHERE invoice_id = :id ORDER BY id"
        ),
        {"id": invoice_id},
    ).all()
    return (tuple(invoice), tuple(tuple(line) for line in lines))


def check_finalized(connection: Connection, invoice_id: uuid.UUID, period: BillingPeriod) -> None:
    """Each line is the rounded (once, half-even, to cents) sum of exactly its intervals; the total is
    the sum of the lines; regular lines hold the period's intervals, adjustment lines earlier ones."""
    invoice = connection.execute(
        text("SELECT period_start, period_end, total FROM invoices WHERE id = :id"), {"id": invoice_id}
    ).one()
    groups: dict[tuple[Any, ...], Decimal] = defaultdict(Decimal)
    for interval in connection.execute(
        text(
            "SELECT resource, gpu_model, unit, unit_price, started_at, amount FROM billing_intervals"
            " WHERE invoice_id = :id"
        ),
        {"id": invoice_id},
    ):
        assert interval.started_at < invoice.period_end, "never usage of a later period"
        adjusts = (
            None if interval.started_at >= invoice.period_start else period_start(interval.started_at, period)
        )
        key = (interval.resource, interval.gpu_model, interval.unit, interval.unit_price, adjusts)
        groups[key] += interval.amount
    lines = connection.execute(
        text(
            "SELECT resource, gpu_model, unit, unit_price, adjusts_period_start, amount FROM invoice_lines"
            " WHERE invoice_id = :id"
        ),
        {"id": invoice_id},
    ).all()
    stored = {
        (r.resource, r.gpu_model, r.unit, r.unit_price, r.adjusts_period_start): r.amount for r in lines
    }
    assert len(stored) == len(lines), "one line per group"
    expected = {
        key: total.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN) for key, total in groups.items()
    }
    assert stored == expected
    assert invoice.total == sum(stored.values(), Decimal(0))


def marked(connection: Connection, workspace_id: uuid.UUID) -> dict[uuid.UUID | None, int]:
    """How many of the workspace's intervals each invoice holds (None: on none yet)."""
    rows = connection.execute(
        text(
            "SELECT invoice_id, count(*) AS n FROM billing_intervals WHERE workspace_id = :w GROUP BY invoice_id"
        ),
        {"w": workspace_id},
    )
    return {row.invoice_id: int(row.n) for row in rows}
