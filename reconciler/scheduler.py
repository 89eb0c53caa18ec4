"""The scheduling pass: pending environments are admitted in bulk, then admitted ones get their claims,
in queue order, and move to `scheduled`. Environments of a workspace that spent its budget
(`core.billing.budget`) stay out of the queue and wait with the reason `budget exhausted`.

Allocation and the phase change commit together (the `on_allocated` callback runs in the allocation's
transaction before the claims are written, and leaves out an environment leased by a worker or changed
since the queue was read; the fencing check ends the transaction).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from sqlalchemy import Connection, text

from remotegpu.core.billing.budget import exhausted_workspaces
from remotegpu.core.capacity.requests import AllocationRequest, AllocationResult
from remotegpu.core.capacity.scheduling import SchedulingReport, schedule_waiting
from remotegpu.core.environments.lifecycle import Trigger, destination, sources
from remotegpu.core.environments.shards import SHARD_OF_SQL
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform import clock
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import FENCE_SELECT, fence

# The pass fires two triggers in bulk; which phases they leave and enter is the lifecycle table's.
(_WAITING,) = sources(Trigger.SCHEDULE)
_SCHEDULED = destination(Trigger.SCHEDULE)
(_PENDING,) = sources(Trigger.ADMIT)
_ADMITTED = destination(Trigger.ADMIT)
_RUNNING = DesiredState.RUNNING

# The phase change of a whole allocation batch, with its events: one statement. An environment a worker
# leased, or whose generation or desired state changed since the queue was read, is left out.
_SCHEDULED_SQL = text(
    f"""
    WITH planned AS (
        SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:generations AS int[]), CAST(:hosts AS uuid[]),
                             CAST(:messages AS text[]), CAST(:data AS jsonb[]))
               AS t(id, generation, host_id, message, data)
    ), moved AS (
        UPDATE environments e
           SET phase = '{_SCHEDULED}', phase_entered_at = :now, reason = NULL, last_error = NULL,
               retry_count = 0, next_attempt_at = :now, updated_at = :now
          FROM planned p
         WHERE e.id = p.id AND e.phase = '{_WAITING}' AND e.desired_state = '{_RUNNING}'
           AND e.generation = p.generation AND (e.lock_token IS NULL OR e.lock_expires_at < :now)
        RETURNING e.id, e.workspace_id
    ), recorded AS (
        INSERT INTO events (actor_kind, workspace_id, environment_id, host_id, kind, reason, message, data)
        SELECT 'reconciler', m.workspace_id, m.id, p.host_id, 'transition', 'Scheduled', p.message, p.data
          FROM moved m JOIN planned p ON p.id = m.id
        RETURNING 1
    )
    SELECT id FROM moved
    """
)

# Admission in bulk, by the leader of shard 0 (it owns the capacity queue): every pending environment of
# any shard that wants to run and is not leased by a worker; admission gives it its shard. Quota
# is checked at submit (fast) and under the locks at allocation; an environment over quota waits with
# the limit as its reason, so admission itself only records that the reconciler has seen this generation.
# One statement (fencing check included), which also says whether anything now waits for a placement.
_ADMIT_SQL = text(
    f"""
    WITH leader AS (
        {FENCE_SELECT}
    ), admitted AS (
        UPDATE environments
           SET phase = '{_ADMITTED}', phase_entered_at = :now, observed_generation = generation,
               seen_desired_version = desired_version, reason = NULL, last_error = NULL, retry_count = 0,
               next_attempt_at = :later, updated_at = :now, shard = {SHARD_OF_SQL}
         WHERE phase = '{_PENDING}' AND desired_state = '{_RUNNING}' AND deleted_at IS NULL
           AND (lock_token IS NULL OR lock_expires_at < :now) AND EXISTS (SELECT 1 FROM leader)
        RETURNING id, workspace_id, generation
    ), recorded AS (
        INSERT INTO events (actor_kind, workspace_id, environment_id, kind, reason, message, data)
        SELECT 'reconciler', workspace_id, id, 'transition', 'Admitted', '',
               jsonb_build_object('from', '{_PENDING}', 'to', '{_ADMITTED}', 'generation', generation)
          FROM admitted
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM recorded) AS admitted,
           EXISTS (SELECT 1 FROM admitted)
           OR EXISTS (SELECT 1 FROM environments WHERE phase = '{_WAITING}' AND desired_state = '{_RUNNING}'
                         AND deleted_at IS NULL) AS waiting
    """
)


def admit_pending(ctx: ReconcilerContext) -> tuple[int, bool]:
    """Admit every pending environment that wants to run, in one statement; returns how many, and
    whether any environment now waits for a placement."""
    now = clock.now()
    parameters = {
        "now": now,
        "later": now + ctx.resync,
        "shard": ctx.shard,
        "epoch": ctx.epoch,
        "shards": ctx.settings.reconciler_shards,
    }
    with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        row = connection.execute(_ADMIT_SQL, parameters).one()
    return int(row.admitted), bool(row.waiting)


def schedule_pass(ctx: ReconcilerContext) -> SchedulingReport | None:
    """Admit what is pending, then run one scheduling pass if anything waits; None when nothing does."""
    _, waiting = admit_pending(ctx)
    if not waiting:
        return None

    def move_to_scheduled(
        connection: Connection, allocated: Sequence[tuple[AllocationRequest, AllocationResult]]
    ) -> set[uuid.UUID]:
        rows = connection.execute(
            _SCHEDULED_SQL,
            {
                "ids": [request.environment_id for request, _ in allocated],
                "generations": [request.generation for request, _ in allocated],
                "hosts": [result.host_id for _, result in allocated],
                "messages": [
                    f"{len(result.gpu_ids)}×{result.gpu_model or 'no GPU'}" for _, result in allocated
                ],
                "data": [
                    json.dumps({"from": _WAITING, "to": _SCHEDULED, "gpus": [str(g) for g in result.gpu_ids]})
                    for _, result in allocated
                ],
                "now": clock.now(),
            },
        )
        return set(rows.scalars())

    def fenced(connection: Connection) -> None:
        fence(connection, ctx.shard, ctx.epoch)

    def spent_budgets(connection: Connection, workspaces: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        return exhausted_workspaces(connection, workspaces, clock.now(), ctx.settings.billing_period)

    report = schedule_waiting(
        ctx.engine, on_allocated=move_to_scheduled, before_commit=fenced, hold=spent_budgets
    )
    if report.allocated:
        ctx.kill_point("after-allocation")
        ctx.wake()
    return report
