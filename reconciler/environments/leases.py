"""Leasing due environments, and the row as a step sees it.

`fetch_leases` claims due rows with `FOR UPDATE SKIP LOCKED` into short leases, commits, and returns
each leased row with what it holds (the load of the first step; later steps start from `apply`'s row).
Which rows are due, and in which order, is `core.environments.due`'s business: a user's change first,
then work with a phase to move, then the resyncs of settled running environments (so a resync backlog,
10,000 running environments or a takeover's first round, never delays new work). Each class is one
limited scan of its own partial index: a lease costs the same whatever the shard holds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from remotegpu.core.accounts.ssh_keys import AUTHORIZED_KEYS_SQL
from remotegpu.core.capacity.requests import ClaimedPort
from remotegpu.core.cluster.driver import HomeMount
from remotegpu.core.datasets.attach import DATASETS_SQL, DatasetRef, refs_from_json
from remotegpu.core.datasets.homes import HOME_SQL, home_mount
from remotegpu.core.environments.due import CHANGED, DUE_AT, RESYNC, WORK
from remotegpu.core.environments.spec import EnvironmentSpec, spec_from_stored
from remotegpu.core.environments.states import (
    AccessKind,
    DesiredState,
    GpuHealth,
    Phase,
    PortPurpose,
    Protocol,
    sql_list,
)
from remotegpu.core.platform import clock
from remotegpu.core.platform.pipeline import Statement, run_pipelined
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import FENCE_SELECT


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one environment row."""

    environment_id: uuid.UUID
    token: uuid.UUID
    state: EnvironmentState
    """The row as the lease read it: the first step starts from it."""


@dataclass(frozen=True)
class EnvironmentState:
    """One environment as loaded under its lease."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    spec: EnvironmentSpec
    """Read back from the stored JSONB once, when the row is loaded."""
    generation: int
    observed_generation: int
    desired_state: DesiredState
    desired_version: int
    phase: Phase
    reason: str | None
    retry_count: int
    phase_entered_at: dt.datetime
    gpu_count: int
    cpu_millis: int
    memory_bytes: int
    host_id: uuid.UUID | None
    host_name: str | None
    host_health: str | None
    ports: tuple[ClaimedPort, ...]
    claimed_devices: tuple[str | None, ...] = ()
    """Device UUIDs of the GPUs this environment claims (None where the node never reported one)."""
    lost_gpus: tuple[int, ...] = ()
    """Indexes of claimed GPUs its node no longer reports (`GpuHealth.LOST`)."""
    authorized_keys: tuple[str, ...] = ()
    """Public key lines of the users entitled to SSH in (`AUTHORIZED_KEYS_SQL`), sorted."""
    gateway_kinds: tuple[AccessKind, ...] = ()
    """Gateways the environment has a recorded (not removed) endpoint at."""
    image_digest: str | None = None
    """The digest its image was pinned to (`reconciler.environments.pinning`), if it was."""
    image_pinned_reference: str | None = None
    image_pinned_generation: int | None = None
    image_pull_generation: int = 0
    datasets: tuple[DatasetRef, ...] = ()
    """The datasets its spec names that exist in its workspace (`DATASETS_SQL`)."""
    home: HomeMount | None = None
    """Its user's home volume in the workspace, when the workspace has them (`HOME_SQL`)."""


# -- fetch ---------------------------------------------------------------------------------------


def _due(name: str, predicate: str, by_time: bool, taken: tuple[str, ...]) -> str:
    """One class's read: a limited scan of its partial index (`core.environments.due`), in due order,
    locking what it takes; it takes what the classes before it (`taken`) left of the limit."""
    limit = " - ".join((":limit", *(f"(SELECT count(*) FROM {before})" for before in taken)))
    return f"""{name} AS (
        SELECT id FROM environments
         WHERE shard = :shard AND {predicate}{f" AND {DUE_AT} <= :now" if by_time else ""}
           AND (lock_expires_at IS NULL OR lock_expires_at < :now) AND EXISTS (SELECT 1 FROM leader)
         ORDER BY {DUE_AT}
         LIMIT {limit}
         FOR UPDATE SKIP LOCKED
    )"""


_LEASE_CTES = f"""
    WITH leader AS (
        -- the fencing check, in the same statement: a stale leader leases nothing
        {FENCE_SELECT}
    ),
    -- a user's change first (a stop wins over a backoff), then work with a phase to move, then the
    -- resyncs of settled running environments, which take only what work leaves of the limit
    {_due("changed", CHANGED, False, ())},
    {_due("work", WORK, True, ("changed",))},
    {_due("resync", RESYNC, True, ("changed", "work"))},
    due AS (
        SELECT id FROM changed UNION ALL SELECT id FROM work UNION ALL SELECT id FROM resync
    ), leased AS (
    UPDATE environments e
       SET lock_token = gen_random_uuid(), lock_expires_at = :expires, lock_owner = :owner
      FROM due WHERE e.id = due.id
    RETURNING e.*
    )
"""


_NUDGE_SQL = text(
    """
    WITH leader AS ("""
    + FENCE_SELECT
    + """)
    UPDATE environments SET next_attempt_at = :now
     WHERE id = ANY(:ids) AND shard = :shard AND next_attempt_at > :now
       AND (lock_token IS NULL OR lock_expires_at < :now) AND EXISTS (SELECT 1 FROM leader)
    """
)


def fetch_leases(
    ctx: ReconcilerContext,
    limit: int,
    exclude: set[uuid.UUID] | None = None,
    nudge: Collection[uuid.UUID] = (),
) -> list[Lease]:
    """Lease up to `limit` due environments (skipping rows other workers hold), committed at once.

    `nudge`: environments whose pods changed; they become due now (unless leased), just before the
    lease, so a burst of pod events costs no transaction of its own. A fenced-out leader leases and
    nudges nothing; its heartbeat tells it that it no longer leads.
    """
    if limit <= 0 and not nudge:
        return []
    now = clock.now()
    fencing = {"shard": ctx.shard, "epoch": ctx.epoch}
    # Each statement checks the epoch itself, so each may be its own transaction (one round trip).
    # The nudge and the lease go out together: one round trip and, as the pipeline syncs once, one
    # implicit transaction, in which the lease sees the nudge (a failure undoes both; the caller keeps
    # the nudge for its next try).
    statements: list[Statement] = []
    if nudge:
        statements.append((_NUDGE_SQL, {"ids": list(nudge), "now": now, **fencing}))
    if limit > 0:
        lease = {"now": now, "limit": limit, "expires": now + ctx.lease, "owner": ctx.identity, **fencing}
        statements.append((_LEASE_SQL, lease))
    with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        results = run_pipelined(connection, statements)
    rows: Sequence[Any] = results[-1] if limit > 0 else []
    return [
        Lease(row.id, row.lock_token, state_from_row(row))
        for row in rows
        if not exclude or row.id not in exclude
    ]


# -- the row as a step sees it --------------------------------------------------------------------

STATE_COLUMNS = f"""
    SELECT e.id, e.lock_token, e.workspace_id, e.name, CAST(e.spec AS text) AS spec, e.generation,
           e.observed_generation,
           e.desired_state, e.desired_version,
           e.phase, e.reason, e.retry_count, e.phase_entered_at, e.gpu_count, e.cpu_millis, e.memory_bytes,
           e.image_digest, e.image_pinned_reference, e.image_pinned_generation, e.image_pull_generation,
           a.host_id, h.name AS host_name, h.health AS host_health,
           coalesce((SELECT json_agg(json_build_array(m.container_port, m.host_port, m.protocol, m.purpose, m.name)
                                     ORDER BY m.container_port)
                       FROM port_mappings m WHERE m.environment_id = e.id AND m.released_at IS NULL), '[]') AS ports,
           coalesce((SELECT json_agg(g.device_uuid ORDER BY g.device_uuid)
                       FROM gpu_claims c JOIN gpus g ON g.id = c.gpu_id
                      WHERE c.environment_id = e.id AND c.released_at IS NULL), '[]') AS claimed_devices,
           coalesce((SELECT json_agg(g.index ORDER BY g.index)
                       FROM gpu_claims c JOIN gpus g ON g.id = c.gpu_id
                      WHERE c.environment_id = e.id AND c.released_at IS NULL AND g.health = '{GpuHealth.LOST}'),
                    '[]') AS lost_gpus,
           {AUTHORIZED_KEYS_SQL} AS authorized_keys,
           coalesce((SELECT json_agg(x.kind ORDER BY x.kind) FROM access_endpoints x
                      WHERE x.environment_id = e.id AND x.removed_at IS NULL
                        AND x.kind IN ({sql_list((AccessKind.GUACAMOLE, AccessKind.JUMPSERVER))})), '[]')
               AS gateway_kinds,
           {DATASETS_SQL} AS datasets,
           e.user_id, {HOME_SQL} AS home
      FROM environments e
      LEFT JOIN allocations a ON a.environment_id = e.id AND a.released_at IS NULL
      LEFT JOIN hosts h ON h.id = a.host_id
"""
"""The row with what it holds; `FROM environments e` is replaced by a CTE of the rows a statement wrote."""

# Leasing returns the leased rows with what they hold, so a first step needs no round trip of its own.
_LEASE_SQL = text(_LEASE_CTES + STATE_COLUMNS.replace("FROM environments e", "FROM leased e"))


def state_from_row(row: Any) -> EnvironmentState:
    """The step's view of a row selected with `STATE_COLUMNS`."""
    return EnvironmentState(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        spec=spec_from_stored(row.spec),
        generation=row.generation,
        observed_generation=row.observed_generation,
        desired_state=DesiredState(row.desired_state),
        desired_version=row.desired_version,
        phase=Phase(row.phase),
        reason=row.reason,
        retry_count=row.retry_count,
        phase_entered_at=row.phase_entered_at,
        gpu_count=row.gpu_count,
        cpu_millis=row.cpu_millis,
        memory_bytes=row.memory_bytes,
        host_id=row.host_id,
        host_name=row.host_name,
        host_health=row.host_health,
        ports=tuple(ClaimedPort(c, h, Protocol(p), PortPurpose(u), n) for c, h, p, u, n in row.ports),
        claimed_devices=tuple(row.claimed_devices),
        lost_gpus=tuple(row.lost_gpus),
        authorized_keys=tuple(row.authorized_keys),
        gateway_kinds=tuple(AccessKind(kind) for kind in row.gateway_kinds),
        image_digest=row.image_digest,
        image_pinned_reference=row.image_pinned_reference,
        image_pinned_generation=row.image_pinned_generation,
        image_pull_generation=row.image_pull_generation,
        datasets=refs_from_json(row.datasets),
        home=home_mount(row.workspace_id, row.user_id, row.home),
    )
