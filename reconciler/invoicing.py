"""The invoice job, a leader job: open the current period's drafts, and finalize every invoice whose
period ended more than `invoice_grace_seconds` ago (`core.billing.invoices` says what an invoice holds).

Invoices are per workspace, not per shard, so only the leader of shard 0 runs it; every write is fenced
by its epoch. One invoice is finalized in one transaction — mark its intervals, write its lines, set its
status — so a crash, a kill -9 or a leader change between any two statements leaves the draft as it was
and the next run does it all; the unique (workspace, period start) and the row lock on the invoice mean
a second run (or a racing one) finds it finalized and changes nothing. A finalized invoice never changes
again (the trigger of migration 0001), so finalizing a closed period again yields the identical invoice.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, text

from remotegpu.core.billing.invoices import lines_on_invoice, total_of
from remotegpu.core.billing.periods import next_period_start, period_start
from remotegpu.core.platform import clock
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import FENCE_SELECT, fence

log = logging.getLogger(__name__)

INVOICE_SECONDS = 60.0
"""How often the leader looks for invoices to open or finalize."""
INVOICE_SHARD = 0
"""The shard whose leader runs the job (invoices span a workspace's environments on every shard)."""


@dataclass(frozen=True)
class InvoiceReport:
    """What one run did."""

    opened: int
    """Drafts created for the current period."""
    finalized: int


class _NothingToInvoiceError(Exception):
    """A period with no invoice yet and no usage: roll back rather than create an empty invoice."""


_CANDIDATES_SQL = text(
    """
    SELECT workspace_id, period_start, period_end FROM invoices
     WHERE status = 'draft' AND workspace_id IS NOT NULL AND period_end <= :cutoff
    UNION
    -- unmarked usage of closed periods: on its own period's invoice, or (that one being final: usage
    -- metered late) on the latest closed period's, unless an older invoice still to finalize takes it
    SELECT u.workspace_id, CASE WHEN f.id IS NULL THEN u.p ELSE :last_closed END, NULL
      FROM (SELECT DISTINCT workspace_id, date_trunc(:trunc, started_at, 'UTC') AS p FROM billing_intervals
             WHERE invoice_id IS NULL AND started_at < :cutoff) u
      LEFT JOIN invoices f ON f.workspace_id = u.workspace_id AND f.period_start = u.p
                          AND f.status = 'finalized'
    """
)


def invoice_tick(ctx: ReconcilerContext) -> InvoiceReport:
    """One run: finalize what is due, oldest period first, then open the current period's drafts."""
    if ctx.shard != INVOICE_SHARD:
        return InvoiceReport(0, 0)
    now = clock.now()
    period = ctx.settings.billing_period
    cutoff = period_start(now - dt.timedelta(seconds=ctx.settings.invoice_grace_seconds), period)
    last_closed = period_start(cutoff - dt.timedelta(microseconds=1), period)
    due: dict[tuple[uuid.UUID, dt.datetime], dt.datetime] = {}
    with ctx.engine.connect() as connection:
        rows = connection.execute(
            _CANDIDATES_SQL, {"cutoff": cutoff, "last_closed": last_closed, "trunc": period}
        ).all()
    for row in sorted(rows, key=lambda r: r.period_end is None):  # a draft's own end wins
        due.setdefault(
            (row.workspace_id, row.period_start),
            row.period_end or next_period_start(row.period_start, period),
        )
    finalized = 0
    for (workspace_id, start), end in sorted(due.items(), key=lambda item: (item[0][1], str(item[0][0]))):
        finalized += finalize_invoice(ctx, workspace_id, start, end, now)
        ctx.kill_point("invoice-finalized")
    return InvoiceReport(open_drafts(ctx, now), finalized)


_LOCK_SQL = text(
    "SELECT id, status, period_start FROM invoices WHERE workspace_id = :w AND period_start = :s FOR UPDATE"
)
_CREATE_SQL = text(
    "INSERT INTO invoices (workspace_id, period_start, period_end, currency) VALUES (:w, :s, :e, :c)"
    " ON CONFLICT (workspace_id, period_start) DO NOTHING RETURNING id, status, period_start"
)
_MARK_SQL = text(
    "UPDATE billing_intervals SET invoice_id = :id"
    " WHERE workspace_id = :w AND invoice_id IS NULL AND started_at < :e"
)
_INSERT_LINES_SQL = text(
    "INSERT INTO invoice_lines (invoice_id, description, resource, gpu_model, quantity, unit, unit_price,"
    " amount, adjusts_period_start)"
    " VALUES (:invoice, :description, :resource, :gpu_model, :quantity, :unit, :unit_price, :amount, :adjusts)"
)
_FINALIZE_SQL = text(
    "UPDATE invoices SET status = 'finalized', finalized_at = :now, total = :total WHERE id = :id"
)


def finalize_invoice(
    ctx: ReconcilerContext, workspace_id: uuid.UUID, start: dt.datetime, end: dt.datetime, now: dt.datetime
) -> bool:
    """Finalize the workspace's invoice of the period starting at `start`, in one transaction; False when
    it already is final (idempotent) or there is nothing to invoice."""
    try:
        with ctx.engine.begin() as connection:
            return _finalize(ctx, connection, workspace_id, start, end, now)
    except _NothingToInvoiceError:
        return False


def _finalize(
    ctx: ReconcilerContext,
    connection: Connection,
    workspace_id: uuid.UUID,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
) -> bool:
    fence(connection, ctx.shard, ctx.epoch)  # share-locks the leader row: a takeover waits for the commit
    key = {"w": workspace_id, "s": start}
    invoice = connection.execute(_LOCK_SQL, key).first()
    created = invoice is None
    if invoice is None:
        invoice = connection.execute(_CREATE_SQL, {**key, "e": end, "c": ctx.settings.currency}).first()
        if invoice is None:  # created by a racing run meanwhile: wait for it, then look again
            invoice = connection.execute(_LOCK_SQL, key).one()
            created = False
    if invoice.status == "finalized":
        return False
    ctx.kill_point("invoice-locked")
    marked = connection.execute(_MARK_SQL, {"id": invoice.id, "w": workspace_id, "e": end}).rowcount
    if created and marked == 0:
        raise _NothingToInvoiceError
    ctx.kill_point("invoice-intervals-marked")
    connection.execute(text("DELETE FROM invoice_lines WHERE invoice_id = :id"), {"id": invoice.id})
    lines = lines_on_invoice(connection, invoice.id, invoice.period_start, ctx.settings.billing_period)
    if lines:
        connection.execute(
            _INSERT_LINES_SQL,
            [
                {
                    "invoice": invoice.id,
                    "description": line.description,
                    "resource": line.resource.value,
                    "gpu_model": line.gpu_model,
                    "quantity": line.quantity,
                    "unit": line.unit,
                    "unit_price": line.unit_price,
                    "amount": line.amount,
                    "adjusts": line.adjusts_period_start,
                }
                for line in lines
            ],
        )
    ctx.kill_point("invoice-lines-written")
    connection.execute(_FINALIZE_SQL, {"id": invoice.id, "now": now, "total": total_of(lines)})
    log.info("Invoice finalized", extra={"invoice": str(invoice.id), "lines": len(lines)})
    return True


_OPEN_DRAFTS_SQL = text(
    f"""
    WITH leader AS ({FENCE_SELECT}), active AS (
        -- open meters, and closed ones not yet metered to their end (the partial index ix_meters_due)
        SELECT DISTINCT workspace_id FROM meters WHERE ended_at IS NULL OR metered_until < ended_at
    )
    INSERT INTO invoices (workspace_id, period_start, period_end, currency)
    SELECT workspace_id, :start, :end, :currency FROM active WHERE EXISTS (SELECT 1 FROM leader)
    ON CONFLICT (workspace_id, period_start) DO NOTHING
    RETURNING 1
    """
)


def open_drafts(ctx: ReconcilerContext, now: dt.datetime) -> int:
    """Create the current period's draft of every workspace with usage accruing; returns how many."""
    period = ctx.settings.billing_period
    start = period_start(now, period)
    with ctx.engine.begin() as connection:
        parameters = {
            "start": start,
            "end": next_period_start(start, period),
            "currency": ctx.settings.currency,
            "shard": ctx.shard,
            "epoch": ctx.epoch,
        }
        opened = len(connection.execute(_OPEN_DRAFTS_SQL, parameters).all())
        if opened == 0:
            fence(connection, ctx.shard, ctx.epoch)  # a fenced-out leader's run raises here
    return opened
