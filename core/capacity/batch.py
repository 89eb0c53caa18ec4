"""Allocating a planned batch: many environments, each on the host the queue planned, in six statements
and four round trips.

`allocate` claims for one environment in about six round trips; the scheduling pass places
dozens at a time, and claiming them one by one made it the reconciler's bottleneck. Here the same
protocol runs over a whole batch, in the caller's transaction and in the same lock order:

1. the quota advisory locks of every workspace and user in the batch (blocking, in the global order);
2. a new statement re-reads every environment and both of its quotas (refusals as in `allocate`);
   1 and 2 go in one round trip (`run_pipelined`, which sends the transaction's BEGIN with them);
3. the planned hosts' advisory locks, tried without waiting, in one statement;
4. a new statement reads what each of those hosts can still take (`host_room`, as `allocate` does for
   its one host), in the same round trip as 3; the rooms of hosts whose lock was not had are dropped
   unread. Then, in batch order, each request is checked against its quotas and fitted onto its
   planned host, both as the requests before it left them;
5. `accept` (the caller's phase change, one statement) says which environments still want claims;
6. one statement writes every allocation, claim, history row and counter (`claim_write`, as for
   `allocate`).

A request whose plan no longer holds (host busy, changed or full; a per-model quota limit in the way)
goes through `allocate` afterwards, one by one in a savepoint, which searches other hosts as before.
The outcome is what allocating in batch order would give, except that those stragglers come last.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.capacity.allocate import AllocationOptions, allocate
from remotegpu.core.capacity.claim_write import write_claims
from remotegpu.core.capacity.eligibility import (
    ENVIRONMENT_STATE_SELECT,
    over_quota,
    quota_lock_statement,
    quota_violations_for,
    refusal,
    with_storage_held,
)
from remotegpu.core.capacity.host_room import HostRoom, room_statement, rooms_from_rows
from remotegpu.core.capacity.quotas import quota_state_from_json
from remotegpu.core.capacity.requests import AllocationOutcome, AllocationRequest, AllocationResult
from remotegpu.core.platform.locks import LockNamespace, held_of, lock_key, try_lock_each_statement
from remotegpu.core.platform.pipeline import run_pipelined
from remotegpu.policies.admission import QuotaState
from remotegpu.policies.placement import Strategy

Accept = Callable[[Connection, Sequence[tuple[AllocationRequest, AllocationResult]]], Collection[uuid.UUID]]
"""Runs in the transaction before claims are written; returns the environments that keep theirs."""


@dataclass(frozen=True)
class PlannedAllocation:
    """A request and where the capacity queue placed it."""

    request: AllocationRequest
    host_id: uuid.UUID
    gpu_model: str | None


class _DeclinedError(Exception):
    """`accept` turned a one-by-one allocation down: its savepoint rolls back."""


_STATES_SQL = text(ENVIRONMENT_STATE_SELECT + " WHERE e.id = ANY(CAST(:ids AS uuid[]))")


def allocate_planned(
    connection: Connection,
    planned: Sequence[PlannedAllocation],
    *,
    strategy: Strategy = Strategy.BIN_PACK,
    accept: Accept | None = None,
) -> dict[uuid.UUID, AllocationResult]:
    """Claim for every planned request inside the caller's transaction; an outcome per environment.

    An environment planned twice is allocated once, by its first plan.

    The caller commits or rolls back. Like `allocate`, expected outcomes are returned, not raised, and
    the caller must hold no row locks (module docstring of `allocate`).
    """
    planned = list({plan.request.environment_id: plan for plan in reversed(planned)}.values())[::-1]
    if not planned:
        return {}
    # The locks and the read in one round trip (`run_pipelined`), the read a new statement after the
    # locks: its snapshot sees every commit made under them.
    ids = [plan.request.environment_id for plan in planned]
    owners = [(plan.request.workspace_id, plan.request.user_id) for plan in planned]
    _, state_rows = run_pipelined(connection, [quota_lock_statement(owners), (_STATES_SQL, {"ids": ids})])
    states = {row.id: row for row in state_rows}
    results: dict[uuid.UUID, AllocationResult] = {}
    candidates: list[PlannedAllocation] = []
    for plan in planned:
        refused = refusal(states.get(plan.request.environment_id), plan.request)
        if refused is not None:
            results[plan.request.environment_id] = refused
        else:
            candidates.append(plan)
    rooms = _lock_hosts(connection, {plan.host_id for plan in candidates})
    quotas: dict[tuple[str, uuid.UUID], QuotaState] = {}
    fitted: list[tuple[AllocationRequest, AllocationResult]] = []
    stragglers: list[PlannedAllocation] = []
    for plan in candidates:
        state = states[plan.request.environment_id]
        request = with_storage_held(plan.request, state)
        subjects = [
            _quota(quotas, "workspace", request.workspace_id, state.workspace_quota),
            _quota(quotas, "user", request.user_id, state.user_quota),
        ]
        over = quota_violations_for(subjects, request, request.gpu_model)
        if over:
            results[request.environment_id] = over_quota(over)
            continue
        room = rooms.get(plan.host_id)
        taken = None
        if (
            room is not None
            and _model_fits(request, plan)
            and not quota_violations_for(subjects, request, plan.gpu_model)
        ):
            taken = room.take(request, plan.gpu_model)
        if taken is None:
            # busy or changed host, a plan of the wrong model, a per-model limit: `allocate` looks further
            stragglers.append(plan)
            continue
        fitted.append((request, replace(taken, host_id=plan.host_id)))
        _charge(quotas, request, taken.gpu_model)
    kept = (
        set(accept(connection, fitted))
        if accept is not None and fitted
        else {r.environment_id for r, _ in fitted}
    )
    written = [(request, result) for request, result in fitted if request.environment_id in kept]
    write_claims(connection, written)
    for request, result in fitted:
        results[request.environment_id] = result if request.environment_id in kept else _declined()
    for plan in stragglers:
        results[plan.request.environment_id] = _allocate_one(connection, plan, strategy, accept)
    return results


def _lock_hosts(connection: Connection, hosts: set[uuid.UUID]) -> dict[uuid.UUID, HostRoom]:
    """Try the locks of `hosts` and read, under them, the room of those now held; one round trip.

    The read is a new statement after the try-locks (a snapshot that sees every commit made under the
    locks); it reads every host tried, and the rooms of hosts whose lock another transaction held are
    dropped unread: one round trip instead of two, for the price of a few rows.
    """
    if not hosts:
        return {}
    keys = {lock_key(LockNamespace.HOST, host): host for host in hosts}
    ordered = sorted(keys)
    (lock_row,), room_rows = run_pipelined(
        connection, [try_lock_each_statement(ordered), room_statement(sorted(hosts))]
    )
    locked = {keys[key] for key in held_of(ordered, lock_row)}
    return {host: room for host, room in rooms_from_rows(room_rows).items() if host in locked}


def _model_fits(request: AllocationRequest, plan: PlannedAllocation) -> bool:
    """A request for a GPU model is only ever given that model, whatever the plan says."""
    return not request.gpu_count or request.gpu_model is None or request.gpu_model == plan.gpu_model


def _quota(
    quotas: dict[tuple[str, uuid.UUID], QuotaState], subject: str, subject_id: uuid.UUID, data: Any
) -> QuotaState:
    key = (subject, subject_id)
    if key not in quotas:
        quotas[key] = quota_state_from_json(subject, dict(data) if data is not None else None)
    return quotas[key]


def _charge(
    quotas: dict[tuple[str, uuid.UUID], QuotaState], request: AllocationRequest, gpu_model: str | None
) -> None:
    """Count `request` in both of its quota states, so later requests of the batch see it."""
    for key in (("workspace", request.workspace_id), ("user", request.user_id)):
        state = quotas[key]
        by_model = dict(state.used_gpus_by_model)
        if gpu_model is not None and request.gpu_count:
            by_model[gpu_model] = by_model.get(gpu_model, 0) + request.gpu_count
        quotas[key] = replace(
            state,
            used_gpus=state.used_gpus + request.gpu_count,
            used_cpu_millis=state.used_cpu_millis + request.cpu_millis,
            used_memory_bytes=state.used_memory_bytes + request.memory_bytes,
            used_storage_bytes=state.used_storage_bytes + request.storage_charge,
            running_environments=state.running_environments + 1,
            used_gpus_by_model=by_model,
        )


def _declined() -> AllocationResult:
    return AllocationResult(
        AllocationOutcome.NOT_ALLOCATABLE, reason="environment changed since it was queued"
    )


def _allocate_one(
    connection: Connection, plan: PlannedAllocation, strategy: Strategy, accept: Accept | None
) -> AllocationResult:
    """The one-by-one path for a request whose plan did not hold; `accept` may undo it (savepoint)."""
    options = AllocationOptions(strategy=strategy, preferred_host=plan.host_id)
    try:
        with connection.begin_nested():
            result = allocate(connection, plan.request, options)
            declined = (
                result.outcome is AllocationOutcome.ALLOCATED
                and accept is not None
                and plan.request.environment_id not in set(accept(connection, [(plan.request, result)]))
            )
            if declined:
                raise _DeclinedError
    except _DeclinedError:
        return _declined()
    return result
