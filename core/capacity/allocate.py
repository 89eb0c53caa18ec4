"""Allocation: claim GPUs, host ports and quota for one environment, all in the caller's transaction.

The protocol, in one transaction (Read Committed):

1. Take the quota advisory locks of the workspace and the user (blocking, in the global lock order).
2. In a *new statement* (its snapshot is taken after the locks are held), re-read the environment and
   both quotas and check the request against the limits in force.
3. Read candidate hosts from the `gpu_pools` counters and rank them with `policies.placement`.
4. For each candidate, try its host advisory lock without waiting; a busy host is skipped, so an
   allocator never waits while holding a host lock and no lock cycle can form. Under the lock, re-read
   what the host can still take and pick concrete free GPUs and host ports (`host_room`, shared with
   the batch path).
5. Write the allocation, the claims, their history rows and every counter in one statement
   (`claim_write`, shared with the batch path).

`release` (module `release`) is the mirror. Storage is the exception to it: volumes outlive a stop,
so an allocation adds to the quotas' storage only what the environment's volumes do not hold yet
(`storage_bytes_held`), release leaves it, and `release_storage` gives it back once a delete has
removed the volumes.

Lock order, everywhere: quota advisory locks, then host advisory locks (sorted), then row locks. A
caller must not hold row locks (an updated environment row, say) when it calls `allocate` or
`release`, or a release waiting on its host lock could close a cycle with it.

The partial unique indexes on active claims stay the last line of defence: a violation raises
`IntegrityError` and the caller's transaction rolls back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.capacity.capacity_sql import FITS_HEADROOM, HEADROOM_COLUMNS, SCHEDULABLE
from remotegpu.core.capacity.claim_write import write_claims
from remotegpu.core.capacity.eligibility import (
    ENVIRONMENT_STATE_SELECT,
    over_quota,
    quota_lock_statement,
    quota_violations_for,
    refusal,
    with_storage_held,
)
from remotegpu.core.capacity.host_room import room_statement, rooms_from_rows
from remotegpu.core.capacity.quotas import quota_state_from_json
from remotegpu.core.capacity.requests import AllocationOutcome, AllocationRequest, AllocationResult
from remotegpu.core.platform.locks import LockNamespace, lock_key, try_lock_statement
from remotegpu.core.platform.pipeline import Statement, run_pipelined
from remotegpu.policies.admission import models_without_headroom
from remotegpu.policies.placement import GpuPoolSnapshot, HostSnapshot, Placement, Strategy, rank_placements


def _no_pause(_point: str) -> None:
    return None


@dataclass(frozen=True)
class AllocationOptions:
    """How to allocate. The `unsafe_*` switches exist only so tests can show the checkers catch bugs."""

    strategy: Strategy = Strategy.BIN_PACK
    candidate_limit: int = 8
    preferred_host: uuid.UUID | None = None
    pause: Callable[[str], None] = _no_pause
    """Called at named points (`quota-locked`, `quota-checked`, `host-busy` for each candidate whose lock
    another holds, `host-locked`, `gpus-chosen`), so tests can force interleavings and the benchmark
    can time and count them."""
    unsafe_skip_quota_lock: bool = False
    unsafe_skip_host_lock: bool = False


_ENVIRONMENT_STATE_SQL = text(ENVIRONMENT_STATE_SELECT + " WHERE e.id = :environment_id")

_GPU_CANDIDATES_SQL = text(
    f"""
    SELECT h.id, h.name, p.model, p.free, {HEADROOM_COLUMNS}
      FROM gpu_pools p JOIN hosts h ON h.id = p.host_id
     WHERE p.free >= :gpu_count
       AND (CAST(:gpu_model AS text) IS NULL OR p.model = :gpu_model)
       AND NOT (p.model = ANY(CAST(:excluded AS text[])))
       AND {SCHEDULABLE} AND {FITS_HEADROOM}
     ORDER BY CASE WHEN :spread THEN -p.free ELSE p.free END, h.name
     LIMIT :limit
    """
)

_CPU_CANDIDATES_SQL = text(
    f"""
    SELECT h.id, h.name, NULL AS model, 0 AS free, {HEADROOM_COLUMNS}
      FROM hosts h
     WHERE {SCHEDULABLE} AND {FITS_HEADROOM}
     ORDER BY h.name
     LIMIT :limit
    """
)


def allocate(
    connection: Connection, request: AllocationRequest, options: AllocationOptions | None = None
) -> AllocationResult:
    """Claim GPUs, ports and quota for `request` inside the caller's transaction.

    Expected outcomes are returned, not raised. The caller commits (together with its phase change)
    or rolls back; on any outcome but ALLOCATED this function has written nothing.

    Three round trips (`run_pipelined`): the quota locks with the reads made under them, a host's
    try-lock with the read under it, the write. The pause points fire after the round trip that
    passed them.
    """
    options = options or AllocationOptions()
    # Quota before host: a fixed order, or two allocations could deadlock. The reads after the lock are
    # new statements, whose snapshots are taken once the locks are held, so they see every commit made
    # under them (reading in the same statement as the lock call would see a stale snapshot); the
    # pipeline sends them together without merging them.
    statements: list[Statement] = []
    if not options.unsafe_skip_quota_lock:
        statements.append(quota_lock_statement([(request.workspace_id, request.user_id)]))
    statements.append((_ENVIRONMENT_STATE_SQL, {"environment_id": request.environment_id}))
    statements.append(_candidates_statement(request, options, excluded=[]))
    *_, state_rows, candidate_rows = run_pipelined(connection, statements)
    options.pause("quota-locked")
    state = state_rows[0] if state_rows else None
    refused = refusal(state, request)
    if refused is not None:
        return refused
    assert state is not None
    request = with_storage_held(request, state)
    quota_states = [
        quota_state_from_json("workspace", state.workspace_quota),
        quota_state_from_json("user", state.user_quota),
    ]
    over = quota_violations_for(quota_states, request, request.gpu_model)
    if over:
        return over_quota(over)
    options.pause("quota-checked")

    excluded = models_without_headroom(quota_states, request.gpu_count)
    if excluded and any(row.model in excluded for row in candidate_rows):
        # a per-model limit rules some models out: read the candidates again without them (rare)
        candidate_rows = list(connection.execute(*_candidates_statement(request, options, sorted(excluded))))
    placements = _ranked_candidates(candidate_rows, request, excluded, options)
    if not placements:
        return AllocationResult(
            AllocationOutcome.NO_CAPACITY, reason=f"waiting for {request.placement_request().describe()}"
        )

    busy = 0
    for placement in placements:
        host_id = placement.host_key
        assert isinstance(host_id, uuid.UUID)
        if placement.gpu_model != request.gpu_model and quota_violations_for(
            quota_states, request, placement.gpu_model
        ):
            continue
        # The try-lock and, in a new statement, the read under it: one round trip. When the lock is
        # busy the read's answer is thrown away.
        statements = [room_statement([host_id])]
        if not options.unsafe_skip_host_lock:
            statements.insert(0, try_lock_statement(lock_key(LockNamespace.HOST, host_id)))
        *lock_rows, room_rows = run_pipelined(connection, statements)
        if lock_rows and not lock_rows[0][0][0]:
            busy += 1
            options.pause("host-busy")
            continue
        options.pause("host-locked")
        room = rooms_from_rows(room_rows).get(host_id)
        taken = room.take(request, placement.gpu_model) if room is not None else None
        if taken is None:
            continue
        options.pause("gpus-chosen")
        result = replace(taken, host_id=host_id)
        # A unique violation here means the locks were bypassed: it raises IntegrityError and the
        # caller's transaction rolls back, so nothing half-written can commit.
        write_claims(connection, [(request, result)])
        return result
    if busy:
        return AllocationResult(AllocationOutcome.CONTENDED, reason=f"{busy} fitting host(s) busy; retry")
    return AllocationResult(
        AllocationOutcome.NO_CAPACITY, reason=f"waiting for {request.placement_request().describe()}"
    )


def _candidates_statement(
    request: AllocationRequest, options: AllocationOptions, excluded: list[str]
) -> Statement:
    """The candidate hosts' read from the `gpu_pools` counters (re-checked under the host lock)."""
    parameters = {
        "gpu_count": request.gpu_count,
        "gpu_model": request.gpu_model,
        "excluded": excluded,
        "cpu_millis": request.cpu_millis,
        "memory_bytes": request.memory_bytes,
        "port_count": len(request.ports),
        "spread": options.strategy is Strategy.SPREAD,
        "limit": options.candidate_limit,
    }
    return (_GPU_CANDIDATES_SQL if request.gpu_count else _CPU_CANDIDATES_SQL), parameters


def _ranked_candidates(
    rows: Sequence[Any], request: AllocationRequest, excluded: frozenset[str], options: AllocationOptions
) -> list[Placement]:
    """Placements best first, from the candidate rows."""
    hosts: dict[Hashable, HostSnapshot] = {}
    for row in rows:
        pools = hosts[row.id].pools if row.id in hosts else ()
        if row.model is not None:
            pools = (*pools, GpuPoolSnapshot(row.model, row.free))
        hosts[row.id] = HostSnapshot(
            key=row.id,
            name=row.name,
            schedulable=True,
            pools=pools,
            cpu_millis_free=row.cpu_free,
            memory_bytes_free=row.memory_free,
            ports_free=row.ports_free,
        )
    # ties broken per environment: concurrent allocations spread over equally good hosts instead of all
    # trying the same host's lock first (a busy one costs a round trip to the next)
    ranked = rank_placements(
        hosts.values(), request.placement_request(excluded), options.strategy, str(request.environment_id)
    )
    if options.preferred_host is not None:
        ranked.sort(key=lambda placement: placement.host_key != options.preferred_host)
    return ranked
