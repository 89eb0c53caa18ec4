"""Applying the capacity queue: place what fits now, and tell everyone else where they stand.

`policies.queue` decides (order, fair share, head reservation, backfill); this module loads the
snapshot it decides over, allocates the chosen environments in batches, one short transaction each
(`batch`; no row lock is held while host locks are taken), and publishes the queue: each waiting
environment's position and reason, in one statement (`queue_places`).
Waiting is not failure: a waiting environment stays `admitted` until capacity frees up.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
from sqlalchemy import Connection, Engine, text

from remotegpu.core.capacity.batch import Accept, PlannedAllocation, allocate_planned
from remotegpu.core.capacity.capacity_sql import HEADROOM_COLUMNS, SCHEDULABLE
from remotegpu.core.capacity.queue_places import QueueEntry, publish_queue
from remotegpu.core.capacity.requests import (
    AllocationOutcome,
    AllocationRequest,
    AllocationResult,
)
from remotegpu.core.environments.derived import port_requests
from remotegpu.core.environments.lifecycle import Trigger, sources
from remotegpu.core.environments.spec import spec_from_stored
from remotegpu.core.environments.states import DesiredState, sql_list
from remotegpu.core.platform import clock
from remotegpu.core.platform.pipeline import run_pipelined
from remotegpu.policies.placement import GpuPoolSnapshot, HostSnapshot, Placement, PlacementRequest, Strategy
from remotegpu.policies.queue import QueuedRequest, Waiting, plan_queue

# What the queue plans over, without the specs: decoding every waiting environment's spec was most of a
# deep queue's pass. A spec's host ports are its `access` entries and its `ports` (`port_requests`). The
# submit time comes as a number (the queue's sort key; `date_part` gives the float directly, where
# `extract` computes a `numeric` first, a third of the statement) and the phase entry as the server's
# text (it goes back unchanged into the published queue): converting thousands of timestamps was a
# visible part too. The ids come as text, as the published queue takes them: a `uuid.UUID` hashes and
# prints in Python code, and a pass hashed and printed each waiting id several times; only the placed
# ones become `uuid.UUID`s. No ORDER BY: the queue orders itself (`order_queue`, a total order), and
# the server's sort was a third of the statement.
WAITING_SQL = text(
    f"""
    SELECT CAST(e.id AS text) AS id, CAST(e.workspace_id AS text) AS workspace_id, e.priority,
           date_part('epoch', e.submitted_at) AS submitted_order,
           e.gpu_count, e.gpu_model, e.cpu_millis, e.memory_bytes,
           jsonb_array_length(coalesce(e.spec -> 'access', '[]')) + jsonb_array_length(coalesce(e.spec -> 'ports', '[]'))
               AS port_count,
           CAST(e.phase_entered_at AS text) AS entered_at
      FROM environments e
     WHERE e.phase IN ({sql_list(sources(Trigger.SCHEDULE))}) AND e.desired_state = '{DesiredState.RUNNING}' AND e.deleted_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM allocations a WHERE a.environment_id = e.id AND a.released_at IS NULL)
    """
)

# The planned ones, with their specs (as text: decoded straight into the struct) for their host ports.
_PLANNED_SQL = text(
    """
    SELECT e.id, e.workspace_id, e.user_id, e.generation, e.gpu_count, e.gpu_model, e.cpu_millis,
           e.memory_bytes, e.storage_bytes, e.spec::text AS spec
      FROM environments e WHERE e.id = ANY(:ids)
    """
)

# The pools as JSON text: most hosts of a cluster have the same pools (a full one, a model), and a text
# already seen is not decoded again.
HOSTS_SQL = text(
    f"""
    SELECT h.id, h.name, {SCHEDULABLE} AS schedulable, {HEADROOM_COLUMNS},
           CAST(coalesce(json_agg(json_build_array(p.model, p.free, p.total)) FILTER (WHERE p.id IS NOT NULL), '[]')
                AS text) AS pools
      FROM hosts h LEFT JOIN gpu_pools p ON p.host_id = h.id
     WHERE h.removed_at IS NULL
     GROUP BY h.id
    """
)

RUNNING_GPUS_SQL = text(
    "SELECT CAST(workspace_id AS text), used_gpus FROM resource_quotas"
    " WHERE workspace_id IS NOT NULL AND used_gpus > 0"
)
"""GPUs running per workspace, keyed as `WAITING_SQL` names workspaces (text): the workspace quota's
usage counter, which the claim write and the release keep (`claim_write`), one row per workspace
instead of a sum over every active allocation."""

Hold = Callable[[Connection, set[uuid.UUID]], dict[uuid.UUID, str]]
"""Of the workspaces given, those whose environments must wait, with the queue reason."""


@dataclass
class SchedulingReport:
    """What one scheduling pass did."""

    allocated: dict[uuid.UUID, AllocationResult] = field(default_factory=dict)
    not_allocated: dict[uuid.UUID, AllocationResult] = field(default_factory=dict)
    queue: list[QueueEntry] = field(default_factory=list)
    """The queue the pass published: every environment left waiting, with its place and reason."""


def schedule_waiting(
    engine: Engine,
    *,
    strategy: Strategy = Strategy.BIN_PACK,
    on_allocated: Accept | None = None,
    before_commit: Callable[[Connection], None] | None = None,
    batch_size: int = 32,
    hold: Hold | None = None,
) -> SchedulingReport:
    """One pass over the capacity queue.

    Placements are allocated in batches, one transaction per batch (`batch.allocate_planned`):
    `on_allocated` runs inside it before the claims are written and returns the environments that keep
    them (the reconciler moves their phase there, so claims and phase change commit together), and
    `before_commit` runs last (the reconciler's fencing check). `hold`, given the workspaces with
    waiting environments, names those whose environments may not be placed now and why (a spent budget):
    they stay out of the queue and wait with that reason.
    """
    started_at = clock.now()
    # The three reads in one round trip, outside a transaction: each statement has a snapshot of its own
    # under Read Committed either way, and on a busy machine every round trip costs a wake-up.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        read, host_rows, running_rows = run_pipelined(
            connection, [(WAITING_SQL, {}), (HOSTS_SQL, {}), (RUNNING_GPUS_SQL, {})], named=False
        )
        held = _held(connection, hold, {row[1] for row in read}) if hold is not None and read else {}
    hosts, totals = _snapshots(host_rows)
    running = {workspace: int(gpus) for workspace, gpus in running_rows}
    rows = [row for row in read if row[1] not in held] if held else read
    plan = plan_queue(queued_requests(rows), hosts, totals, running, strategy)
    report = SchedulingReport()
    placements = _planned_requests(engine, plan.placements)
    for start in range(0, len(placements), batch_size):
        _allocate_batch(
            engine, placements[start : start + batch_size], strategy, on_allocated, before_commit, report
        )
    # waits for quota, and says which limit
    over_quota = {
        str(environment_id): result.reason
        for environment_id, result in report.not_allocated.items()
        if result.outcome is AllocationOutcome.OVER_QUOTA
    }
    report.queue = _queue_entries(read, plan.waiting, held, over_quota)
    with engine.begin() as connection:
        publish_queue(connection, report.queue, started_at)
        if before_commit is not None:  # the queue's positions are a leader's writes too: fenced
            before_commit(connection)
    return report


def _held(connection: Connection, hold: Hold, workspaces: set[str]) -> dict[str, str]:
    """`hold`'s answer for the waiting rows' workspaces, keyed as the rows name them (text)."""
    answer = hold(connection, {uuid.UUID(workspace) for workspace in workspaces})
    return {str(workspace): reason for workspace, reason in answer.items()}


def _queue_entries(
    read: Sequence[Any],
    waiting: Mapping[Hashable, Waiting],
    held: Mapping[str, str],
    over_quota: Mapping[str, str],
) -> list[QueueEntry]:
    """The queue to publish: the plan's waiting environments in queue order, then those that wait
    without a place (a held workspace's, sorted by id, and a quota's reason). The rest were placed.

    In a fixed order, so a bucket whose entries did not change is not written again."""
    entered: dict[str, str] = {row[0]: row[-1] for row in read}
    places = cast(Mapping[str, Waiting], waiting)  # keyed by the rows' ids (`queued_requests`)
    entries: list[QueueEntry] = [
        (key, entered[key], place.position, place.reason) for key, place in places.items()
    ]
    if held:
        entries.extend(
            sorted(
                (key, entered[key], None, held[workspace]) for key, workspace, *_ in read if workspace in held
            )
        )
    entries.extend((key, entered[key], None, reason) for key, reason in over_quota.items())
    return entries


def _allocate_batch(
    engine: Engine,
    batch: list[tuple[AllocationRequest, Placement]],
    strategy: Strategy,
    on_allocated: Accept | None,
    before_commit: Callable[[Connection], None] | None,
    report: SchedulingReport,
) -> None:
    planned = []
    for request, placement in batch:
        assert isinstance(placement.host_key, uuid.UUID)
        planned.append(PlannedAllocation(request, placement.host_key, placement.gpu_model))
    with engine.begin() as connection:
        results = allocate_planned(connection, planned, strategy=strategy, accept=on_allocated)
        if before_commit is not None:
            before_commit(connection)
    for environment_id, result in results.items():
        target = report.allocated if result.holds_claims else report.not_allocated
        target[environment_id] = result


def _planned_requests(
    engine: Engine, placements: list[tuple[QueuedRequest, Placement]]
) -> list[tuple[AllocationRequest, Placement]]:
    """The allocation request of every planned environment, read again with its spec.

    A spec changed since the queue was read comes with its new generation, which the allocation refuses
    (it re-checks the generation under the locks); one deleted meanwhile is left out.
    """
    if not placements:
        return []
    keys = [uuid.UUID(str(item.key)) for item, _ in placements]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        rows = {row.id: row for row in connection.execute(_PLANNED_SQL, {"ids": keys})}
    return [
        (request_from_row(rows[key]), placement)
        for key, (_, placement) in zip(keys, placements, strict=True)
        if key in rows
    ]


def queued_requests(rows: Iterable[Any]) -> list[QueuedRequest]:
    """The queue's view of `WAITING_SQL` rows (keyed by the ids' text). Requests of one shape share one
    `PlacementRequest` (a deep queue holds thousands of environments but a few dozen shapes)."""
    shapes: dict[tuple[Any, ...], PlacementRequest] = {}
    queued = []
    for key, workspace, priority, submitted, gpu_count, gpu_model, cpu, memory, ports, _ in rows:
        shape = (gpu_count, gpu_model, cpu, memory, ports)
        request = shapes.get(shape)
        if request is None:
            request = shapes[shape] = PlacementRequest(gpu_count, gpu_model, cpu, memory, ports)
        queued.append(QueuedRequest(key, workspace, priority, submitted, request))
    return queued


def request_from_row(row: Any) -> AllocationRequest:
    """The allocation request of a `_PLANNED_SQL` row."""
    return AllocationRequest(
        environment_id=row.id,
        workspace_id=row.workspace_id,
        user_id=row.user_id,
        generation=row.generation,
        gpu_count=row.gpu_count,
        gpu_model=row.gpu_model,
        cpu_millis=row.cpu_millis,
        memory_bytes=row.memory_bytes,
        storage_bytes=row.storage_bytes,
        ports=port_requests(spec_from_stored(row.spec)),
    )


def host_snapshots(connection: Connection) -> tuple[list[HostSnapshot], dict[Any, dict[str, int]]]:
    """Every host as the queue plans over it, and each host's GPU totals by model."""
    return _snapshots(connection.execute(HOSTS_SQL).all())


def _snapshots(rows: Iterable[Any]) -> tuple[list[HostSnapshot], dict[Any, dict[str, int]]]:
    hosts: list[HostSnapshot] = []
    totals: dict[Any, dict[str, int]] = {}
    pools_of: dict[str, tuple[tuple[GpuPoolSnapshot, ...], dict[str, int]]] = {}
    for key, name, schedulable, cpu_free, memory_free, ports_free, pools_text in rows:
        known = pools_of.get(pools_text)
        if known is None:
            decoded = msgspec.json.decode(pools_text, type=list[tuple[str, int, int]])
            pools = tuple(GpuPoolSnapshot(model, free) for model, free, _ in decoded)
            known = pools_of[pools_text] = (pools, {model: total for model, _, total in decoded})
        hosts.append(HostSnapshot(key, name, schedulable, known[0], cpu_free, memory_free, ports_free))
        totals[key] = dict(known[1])
    return hosts, totals
