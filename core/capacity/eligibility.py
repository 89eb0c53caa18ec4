"""Whether a request may still be allocated: what both allocation paths check under the quota locks.

The quota advisory locks come first (the global lock order); then a new statement, whose snapshot sees
every commit made under them, re-reads the environment and both of its quotas. A request is refused
when its environment no longer wants it, and over quota when a limit in force would break.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection

from remotegpu.core.capacity.quotas import QUOTA_STATE_SQL
from remotegpu.core.capacity.requests import AllocationOutcome, AllocationRequest, AllocationResult
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform.locks import LockKey, LockNamespace, lock_all_statement, lock_key, xact_lock_all
from remotegpu.core.platform.pipeline import Statement
from remotegpu.policies.admission import QuotaRequest, QuotaViolation, quota_violations

ENVIRONMENT_STATE_SELECT = f"""
    SELECT e.id, e.generation, e.desired_state, e.deleted_at IS NOT NULL AS env_deleted, e.storage_bytes_held,
           w.deleted_at IS NOT NULL AS workspace_deleted,
           (SELECT a.host_id FROM allocations a
             WHERE a.environment_id = e.id AND a.released_at IS NULL) AS allocated_host,
           ({QUOTA_STATE_SQL.format(column="workspace_id", value="e.workspace_id")}) AS workspace_quota,
           ({QUOTA_STATE_SQL.format(column="user_id", value="e.user_id")}) AS user_quota
      FROM environments e JOIN workspaces w ON w.id = e.workspace_id
"""
"""What an allocation re-reads under the quota locks: the environment's state and both quotas."""


def _quota_keys(owners: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> list[LockKey]:
    keys = []
    for workspace_id, user_id in owners:
        keys.append(lock_key(LockNamespace.QUOTA_WORKSPACE, workspace_id))
        keys.append(lock_key(LockNamespace.QUOTA_USER, user_id))
    return keys


def lock_quotas(connection: Connection, owners: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Take the quota locks of every `(workspace, user)` pair (blocking, in the global lock order)."""
    xact_lock_all(connection, _quota_keys(owners))


def quota_lock_statement(owners: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> Statement:
    """`lock_quotas` as a statement, for a pipeline (`core.platform.pipeline`)."""
    return lock_all_statement(_quota_keys(owners))


def refusal(state: Any, request: AllocationRequest) -> AllocationResult | None:
    """Why `request` must not be allocated, from an `ENVIRONMENT_STATE_SELECT` row; None when it may."""
    if state is None:
        return AllocationResult(AllocationOutcome.NOT_ALLOCATABLE, reason="environment does not exist")
    if state.allocated_host is not None:
        return AllocationResult(AllocationOutcome.ALREADY_ALLOCATED, host_id=state.allocated_host)
    if state.env_deleted or state.workspace_deleted:
        return AllocationResult(AllocationOutcome.NOT_ALLOCATABLE, reason="environment or workspace deleted")
    if state.desired_state != DesiredState.RUNNING.value:
        return AllocationResult(
            AllocationOutcome.NOT_ALLOCATABLE, reason=f"desired state is {state.desired_state}"
        )
    if state.generation != request.generation:
        return AllocationResult(
            AllocationOutcome.NOT_ALLOCATABLE,
            reason=f"spec changed (generation {state.generation}, request for {request.generation})",
        )
    return None


def with_storage_held(request: AllocationRequest, state: Any) -> AllocationRequest:
    """`request` with the storage its volumes hold, from an `ENVIRONMENT_STATE_SELECT` row."""
    return replace(request, storage_bytes_held=state.storage_bytes_held)


def quota_violations_for(
    states: Sequence[Any], request: AllocationRequest, gpu_model: str | None
) -> list[QuotaViolation]:
    """Every limit of the workspace and user `states` that `request` on `gpu_model` GPUs would break."""
    wanted = QuotaRequest(
        gpu_count=request.gpu_count,
        gpu_model=gpu_model,
        cpu_millis=request.cpu_millis,
        memory_bytes=request.memory_bytes,
        storage_bytes=request.storage_charge,
    )
    return [violation for state in states for violation in quota_violations(state, wanted)]


def over_quota(violations: Sequence[QuotaViolation]) -> AllocationResult:
    """The OVER_QUOTA outcome for `violations` (not empty), reasoned by the first."""
    return AllocationResult(
        AllocationOutcome.OVER_QUOTA, reason=violations[0].message(), violations=tuple(violations)
    )
