"""The meter tick, a leader job: close every due meter's usage into intervals up to now.

Due are the meters whose spell ended and the running ones whose close point passed (each closes every
`meter_close_seconds`, at a moment of its own), so a tick writes a share of the running meters, not all.

One read of the due meters and the price book, then one write per chunk of meters (the intervals and
the cursor moves in one statement, fenced by the leader's epoch). A tick killed anywhere loses nothing:
a chunk not written is metered by the next tick from the unchanged cursors, and one written is not
metered again, because each cursor move is guarded by the value the tick read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import text

from remotegpu.core.billing.metering import WRITE_CTES, Chunk, due_groups, plan
from remotegpu.core.billing.pricing import load_price_book
from remotegpu.core.platform import clock
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import FENCE_SELECT, fence

log = logging.getLogger(__name__)

CHUNK = 2_000
"""Meters per write statement: large enough for few round trips, small enough for short row locks."""

_WRITE_SQL = text(f"WITH leader AS ({FENCE_SELECT}), {WRITE_CTES}")


@dataclass(frozen=True)
class TickReport:
    """What one tick did."""

    meters: int
    """Meters with usage to close."""
    advanced: int
    """Cursors moved (fewer than `meters` when another meter got there first)."""
    intervals: int


def meter_tick(ctx: ReconcilerContext) -> TickReport:
    """One tick for the shard this reconciler leads."""
    now = clock.now()
    with ctx.engine.connect() as connection:
        book = load_price_book(connection)
        groups = due_groups(connection, ctx.shard, now, round(ctx.settings.meter_close_seconds))
    meters, chunks = plan(groups, book, ctx.settings.billing_period, CHUNK)
    ctx.kill_point("meter-planned")
    advanced = inserted = 0
    for chunk in chunks:
        moved, written = _write(ctx, chunk)
        advanced, inserted = advanced + moved, inserted + written
        ctx.kill_point("meter-chunk-written")
    if advanced < meters:
        log.info("Meter cursors moved by another meter first", extra={"skipped": meters - advanced})
    return TickReport(meters, advanced, inserted)


def _write(ctx: ReconcilerContext, chunk: Chunk) -> tuple[int, int]:
    with ctx.engine.begin() as connection:
        row = connection.execute(
            _WRITE_SQL, {**chunk.parameters(ctx.settings.currency), "shard": ctx.shard, "epoch": ctx.epoch}
        ).one()
        if row.advanced == 0:
            fence(connection, ctx.shard, ctx.epoch)  # a fenced-out leader's tick raises here
    return int(row.advanced), int(row.inserted)
