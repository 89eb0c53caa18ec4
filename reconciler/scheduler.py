"""The scheduling pass: pending environments are admitted in bulk, then admitted ones get their claims,
in queue order, and move to `scheduled`.

Allocation and the phase change commit together (the `on_allocated` callback runs in the allocation's
transaction, ends with the fencing check, and vetoes the allocation when the row is leased by a worker
or changed since it was read).
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, text

from remotegpu.core import clock
from remotegpu.core.allocation import AllocationRequest, AllocationResult
from remotegpu.core.scheduling import AllocationVetoedError, SchedulingReport, schedule_waiting
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import fence

_SCHEDULED_SQL = text(
    """
    UPDATE environments SET phase = 'scheduled', phase_entered_at = :now, reason = NULL, last_error = NULL,
           retry_count = 0, next_attempt_at = :now, queue_position = NULL, queue_reason = NULL, updated_at = :now
     WHERE id = :id AND phase = 'admitted' AND desired_state = 'running' AND generation = :generation
       AND (lock_token IS NULL OR lock_expires_at < :now)
    """
)

_EVENT_SQL = text(
    """
    INSERT INTO events (actor_kind, workspace_id, environment_id, host_id, kind, reason, message, data)
    VALUES ('reconciler', :workspace_id, :environment_id, :host_id, 'transition', 'Scheduled', :message,
            CAST(:data AS jsonb))
    """
)

_HAS_WAITING_SQL = text(
    "SELECT EXISTS (SELECT 1 FROM environments WHERE phase = 'admitted' AND desired_state = 'running'"
    " AND deleted_at IS NULL)"
)

# Admission in bulk: every pending environment that wants to run and is not leased by a worker. Quota
# is checked at submit (fast) and under the locks at allocation; an environment over quota waits with
# the limit as its reason, so admission itself only records that the reconciler has seen this generation.
_ADMIT_SQL = text(
    """
    WITH admitted AS (
        UPDATE environments
           SET phase = 'admitted', phase_entered_at = :now, observed_generation = generation,
               seen_desired_version = desired_version, reason = NULL, last_error = NULL, retry_count = 0,
               next_attempt_at = :later, updated_at = :now
         WHERE phase = 'pending' AND desired_state = 'running' AND deleted_at IS NULL AND shard = :shard
           AND (lock_token IS NULL OR lock_expires_at < :now)
        RETURNING id, workspace_id, generation
    )
    INSERT INTO events (actor_kind, workspace_id, environment_id, kind, reason, message, data)
    SELECT 'reconciler', workspace_id, id, 'transition', 'Admitted', '',
           jsonb_build_object('from', 'pending', 'to', 'admitted', 'generation', generation)
      FROM admitted
    RETURNING 1
    """
)


def admit_pending(ctx: ReconcilerContext) -> int:
    """Admit every pending environment that wants to run, in one transaction; returns how many."""
    now = clock.now()
    with ctx.engine.begin() as connection:
        admitted = len(
            connection.execute(_ADMIT_SQL, {"now": now, "later": now + ctx.resync, "shard": ctx.shard}).all()
        )
        fence(connection, ctx.shard, ctx.epoch)
    return admitted


def schedule_pass(ctx: ReconcilerContext) -> SchedulingReport | None:
    """Admit what is pending, then run one scheduling pass if anything waits; None when nothing does."""
    admit_pending(ctx)
    with ctx.engine.connect() as connection:
        if not connection.execute(_HAS_WAITING_SQL).scalar_one():
            return None

    def move_to_scheduled(
        connection: Connection, request: AllocationRequest, result: AllocationResult
    ) -> None:
        now = clock.now()
        moved = connection.execute(
            _SCHEDULED_SQL, {"id": request.environment_id, "generation": request.generation, "now": now}
        ).rowcount
        if moved != 1:
            raise AllocationVetoedError("environment leased or changed since the queue was read")
        connection.execute(
            _EVENT_SQL,
            {
                "workspace_id": request.workspace_id,
                "environment_id": request.environment_id,
                "host_id": result.host_id,
                "message": f"{len(result.gpu_ids)}×{result.gpu_model or 'no GPU'}",
                "data": json.dumps(
                    {"from": "admitted", "to": "scheduled", "gpus": [str(g) for g in result.gpu_ids]}
                ),
            },
        )

    def fenced(connection: Connection) -> None:
        fence(connection, ctx.shard, ctx.epoch)

    report = schedule_waiting(ctx.engine, on_allocated=move_to_scheduled, before_commit=fenced)
    if report.allocated:
        ctx.kill_point("after-allocation")
        ctx.wake()
    return report
