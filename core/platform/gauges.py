"""The platform's state as Prometheus gauges read it: capacity, the queue, environments, money, the meter.

One read of a few aggregate statements, from the database only, so the numbers are the platform's (every
host, every shard) whoever reads them; the reconciler that leads shard 0 exports them
(`reconciler.telemetry`), so a scrape of every replica counts them once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, text

from remotegpu.core.capacity.queue_places import PLACE_HOLDS, PLACES_SQL

GPUS_SQL = text(
    """
    SELECT h.name AS host, g.model,
           CASE WHEN g.health <> 'healthy' THEN CAST(g.health AS text)
                WHEN c.gpu_id IS NOT NULL THEN 'claimed'
                WHEN g.foreign_use THEN 'foreign'
                ELSE 'free' END AS state,
           count(*) AS total
      FROM gpus g JOIN hosts h ON h.id = g.host_id
      LEFT JOIN gpu_claims c ON c.gpu_id = g.id AND c.released_at IS NULL
     WHERE h.removed_at IS NULL
     GROUP BY 1, 2, 3
    """
)
"""Each GPU in exactly one state, so `sum by (model)` is the model's total: free, claimed, foreign (used
outside RemoteGPU), unhealthy or lost."""

HOSTS_SQL = text(
    """
    SELECT name AS host, CAST(health AS text) AS health, cordoned,
           greatest(0, port_range_end - port_range_start + 1 - ports_claimed
                       - jsonb_array_length(foreign_ports)) AS ports_free
      FROM hosts WHERE removed_at IS NULL
    """
)

QUEUE_SQL = text(
    f"""
    SELECT coalesce(e.gpu_model, '') AS gpu_model, count(*) AS length,
           extract(epoch FROM CAST(:now AS timestamptz) - min(e.phase_entered_at)) AS oldest_wait
      FROM environments e JOIN ({PLACES_SQL}) qp ON {PLACE_HOLDS}
     WHERE e.deleted_at IS NULL AND qp.position IS NOT NULL
     GROUP BY 1
    """
)

ENVIRONMENTS_SQL = text(
    """
    SELECT CAST(phase AS text) AS phase, CAST(desired_state AS text) AS desired_state, count(*) AS total
      FROM environments WHERE deleted_at IS NULL GROUP BY 1, 2
    """
)

STUCK_SQL = text(
    """
    SELECT CAST(phase AS text) AS phase, count(*) AS total
      FROM environments
     WHERE deleted_at IS NULL
       AND ((phase IN ('scheduled', 'provisioning') AND phase_entered_at < :provisioning_before)
            OR (phase IN ('stopping', 'deleting') AND phase_entered_at < :stopping_before))
     GROUP BY 1
    """
)
"""Environments still in a work phase past that phase's deadline: the step that fails them there has not
run (a reconciler down or stuck), which no environment's own state will say."""

DUE_SQL = text(
    """
    SELECT shard, count(*) AS total FROM environments
     WHERE deleted_at IS NULL AND (seen_desired_version < desired_version
           OR (next_attempt_at IS NOT NULL AND next_attempt_at <= :now))
     GROUP BY shard
    """
)

ACCRUED_SQL = text(
    """
    SELECT w.name AS workspace, m.resource, sum(m.amount) AS amount
      FROM meters m JOIN workspaces w ON w.id = m.workspace_id
     GROUP BY 1, 2
    """
)
"""Everything metered into intervals so far (each meter keeps its running total), by workspace and
resource: only ever grows, so Prometheus's `increase()` gives the spend of any window."""

METER_LAG_SQL = text(
    """
    SELECT extract(epoch FROM CAST(:now AS timestamptz) - min(metered_until)) AS lag
      FROM meters WHERE ended_at IS NULL OR metered_until < ended_at
    """
)


@dataclass(frozen=True)
class PlatformGauges:
    """One snapshot; each list holds (labels..., value) rows."""

    gpus: list[tuple[str, str, str, int]]
    """(host, model, state, GPUs)."""
    hosts: list[tuple[str, str, bool, int]]
    """(host, health, cordoned, free ports)."""
    queue: list[tuple[str, int, float]]
    """(GPU model or "" for none, environments waiting, seconds the oldest has waited)."""
    environments: list[tuple[str, str, int]]
    """(phase, desired state, environments)."""
    stuck: list[tuple[str, int]]
    """(phase, environments past that phase's deadline)."""
    due: list[tuple[int, int]]
    """(shard, environments due for a step now)."""
    accrued: list[tuple[str, str, Decimal]]
    """(workspace, resource, amount metered so far)."""
    meter_lag_seconds: float
    """Age of the oldest usage not yet closed into intervals (0 when there is none)."""


def read_platform_gauges(
    connection: Connection,
    now: dt.datetime,
    *,
    provisioning_deadline: dt.timedelta,
    stopping_deadline: dt.timedelta,
) -> PlatformGauges:
    """Read every gauge (call inside one read-only transaction, so they agree with each other)."""
    run = connection.execute
    lag = run(METER_LAG_SQL, {"now": now}).scalar_one()
    deadlines = {
        "provisioning_before": now - provisioning_deadline,
        "stopping_before": now - stopping_deadline,
    }
    return PlatformGauges(
        gpus=[(r.host, r.model, r.state, int(r.total)) for r in run(GPUS_SQL)],
        hosts=[(r.host, r.health, bool(r.cordoned), int(r.ports_free)) for r in run(HOSTS_SQL)],
        queue=[(r.gpu_model, int(r.length), float(r.oldest_wait)) for r in run(QUEUE_SQL, {"now": now})],
        environments=[(r.phase, r.desired_state, int(r.total)) for r in run(ENVIRONMENTS_SQL)],
        stuck=[(r.phase, int(r.total)) for r in run(STUCK_SQL, deadlines)],
        due=[(int(r.shard), int(r.total)) for r in run(DUE_SQL, {"now": now})],
        accrued=[(r.workspace, r.resource, Decimal(r.amount)) for r in run(ACCRUED_SQL)],
        meter_lag_seconds=float(lag) if lag is not None else 0.0,
    )
