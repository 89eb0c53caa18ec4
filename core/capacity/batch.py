"""Allocating a planned batch: many environments, each on the host the queue planned, in six statements.

`allocation.allocate` claims for one environment in about six round trips; the scheduling pass places
dozens at a time, and claiming them one by one made it the reconciler's bottleneck. Here the same
protocol runs over a whole batch, in the caller's transaction and in the same lock order:

1. the quota advisory locks of every workspace and user in the batch (blocking, in the global order);
2. a new statement re-reads every environment and both of its quotas (refusals as in `allocate`);
3. the planned hosts' advisory locks, tried without waiting, in one statement;
4. one statement reads, under those locks, each host's headroom, free GPUs and host ports in use;
   then, in batch order, each request is checked against its quotas and fitted onto its planned host,
   both as the requests before it left them;
5. `accept` (the caller's phase change, one statement) says which environments still want claims;
6. one statement writes every allocation, claim, history row and counter.

A request whose plan no longer holds (host busy, changed or full; a per-model quota limit in the way)
goes through `allocate` afterwards, one by one in a savepoint, which searches other hosts as before.
The outcome is what allocating in batch order would give, except that those stragglers come last.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.capacity.allocate import (
    ENVIRONMENT_STATE_SELECT,
    SCHEDULABLE,
    AllocationOptions,
    AllocationOutcome,
    AllocationRequest,
    AllocationResult,
    ClaimedPort,
    allocate,
    choose_host_ports,
    quota_violations_for,
    refusal,
    with_storage_held,
)
from remotegpu.core.capacity.quotas import quota_state_from_json
from remotegpu.core.platform.locks import LockNamespace, lock_key, try_xact_lock_each, xact_lock_all
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

_HOSTS_UNDER_LOCK_SQL = text(
    f"""
    SELECT h.id, {SCHEDULABLE} AS schedulable,
           h.cpu_millis_allocatable - h.cpu_millis_foreign - h.cpu_millis_claimed AS cpu_free,
           h.memory_bytes_allocatable - h.memory_bytes_foreign - h.memory_bytes_claimed AS memory_free,
           h.port_range_start, h.port_range_end, h.foreign_ports,
           coalesce((SELECT json_agg(json_build_array(g.id, g.model) ORDER BY g.index) FROM gpus g
                      WHERE g.host_id = h.id AND g.health = 'healthy' AND NOT g.foreign_use
                        AND NOT EXISTS (SELECT 1 FROM gpu_claims c
                                         WHERE c.gpu_id = g.id AND c.released_at IS NULL)), '[]') AS free_gpus,
           ARRAY(SELECT m.host_port FROM port_mappings m
                  WHERE m.host_id = h.id AND m.released_at IS NULL AND m.protocol = 'tcp') AS tcp_in_use,
           ARRAY(SELECT m.host_port FROM port_mappings m
                  WHERE m.host_id = h.id AND m.released_at IS NULL AND m.protocol = 'udp') AS udp_in_use
      FROM hosts h
     WHERE h.id = ANY(CAST(:hosts AS uuid[]))
    """
)

# Adds a batch's allocations to a subject's usage counters, one row per subject (ON CONFLICT may touch
# a row only once per statement), creating its quota row (unlimited) if it has none.
_QUOTA_UPSERT = """
        INSERT INTO resource_quotas ({column}, used_gpus, used_cpu_millis, used_memory_bytes,
                                     used_storage_bytes, running_environments)
        SELECT {subject}, sum(gpu_count), sum(cpu), sum(mem), sum(storage), count(*) FROM a GROUP BY {subject}
        ON CONFLICT ({column}) DO UPDATE SET
            used_gpus = resource_quotas.used_gpus + EXCLUDED.used_gpus,
            used_cpu_millis = resource_quotas.used_cpu_millis + EXCLUDED.used_cpu_millis,
            used_memory_bytes = resource_quotas.used_memory_bytes + EXCLUDED.used_memory_bytes,
            used_storage_bytes = resource_quotas.used_storage_bytes + EXCLUDED.used_storage_bytes,
            running_environments = resource_quotas.running_environments + EXCLUDED.running_environments
        RETURNING id, {column} AS subject"""

_WRITE_BATCH_SQL = text(
    f"""
    WITH a AS (
        SELECT * FROM unnest(CAST(:envs AS uuid[]), CAST(:workspaces AS uuid[]), CAST(:users AS uuid[]),
                             CAST(:hosts AS uuid[]), CAST(:generations AS int[]), CAST(:models AS text[]),
                             CAST(:gpu_counts AS int[]), CAST(:cpus AS bigint[]), CAST(:mems AS bigint[]),
                             CAST(:storages AS bigint[]), CAST(:port_counts AS int[]))
               AS t(env, ws, usr, host, generation, gpu_model, gpu_count, cpu, mem, storage, port_count)
    ), alloc AS (
        INSERT INTO allocations (environment_id, workspace_id, user_id, host_id, generation,
                                 gpu_model, gpu_count, cpu_millis, memory_bytes, storage_bytes)
        SELECT env, ws, usr, host, generation, gpu_model, gpu_count, cpu, mem, storage FROM a
        RETURNING 1
    ), gpu_claim AS (
        INSERT INTO gpu_claims (gpu_id, environment_id, host_id)
        SELECT g.gpu, g.env, a.host
          FROM unnest(CAST(:gpu_envs AS uuid[]), CAST(:gpu_ids AS uuid[])) AS g(env, gpu) JOIN a ON a.env = g.env
        RETURNING gpu_id, environment_id
    ), port_claim AS (
        INSERT INTO port_mappings (environment_id, host_id, container_port, host_port, protocol, purpose, name)
        SELECT p.env, a.host, p.cp, p.hp, p.pr, p.pu, p.nm
          FROM unnest(CAST(:port_envs AS uuid[]), CAST(:container_ports AS int[]), CAST(:host_ports AS int[]),
                      CAST(:protocols AS text[]), CAST(:purposes AS text[]), CAST(:names AS text[]))
               AS p(env, cp, hp, pr, pu, nm)
          JOIN a ON a.env = p.env
        RETURNING environment_id, host_port, protocol
    ), history AS (
        INSERT INTO claim_history (kind, action, environment_id, workspace_id, user_id, host_id,
                                   gpu_id, gpu_model, host_port, protocol)
        SELECT 'gpu', 'claim', a.env, a.ws, a.usr, a.host, c.gpu_id, a.gpu_model, NULL, NULL
          FROM gpu_claim c JOIN a ON a.env = c.environment_id
        UNION ALL
        SELECT 'port', 'claim', a.env, a.ws, a.usr, a.host, NULL, NULL, c.host_port, c.protocol
          FROM port_claim c JOIN a ON a.env = c.environment_id
        RETURNING 1
    ), pool AS (
        UPDATE gpu_pools p SET free = p.free - x.n
          FROM (SELECT host, gpu_model, sum(gpu_count) AS n FROM a WHERE gpu_count > 0
                 GROUP BY host, gpu_model) x
         WHERE p.host_id = x.host AND p.model = x.gpu_model
        RETURNING 1
    ), host AS (
        UPDATE hosts h SET gpus_claimed = h.gpus_claimed + x.gpus,
                           cpu_millis_claimed = h.cpu_millis_claimed + x.cpu,
                           memory_bytes_claimed = h.memory_bytes_claimed + x.mem,
                           ports_claimed = h.ports_claimed + x.ports
          FROM (SELECT host, sum(gpu_count) AS gpus, sum(cpu) AS cpu, sum(mem) AS mem, sum(port_count) AS ports
                  FROM a GROUP BY host) x
         WHERE h.id = x.host
        RETURNING 1
    ), ws_quota AS ({_QUOTA_UPSERT.format(column="workspace_id", subject="ws")}
    ), user_quota AS ({_QUOTA_UPSERT.format(column="user_id", subject="usr")}
    ), model_quota AS (
        INSERT INTO gpu_model_quotas (quota_id, gpu_model, used_gpus)
        SELECT q.id, a.gpu_model, sum(a.gpu_count) FROM a JOIN ws_quota q ON q.subject = a.ws
         WHERE a.gpu_count > 0 GROUP BY q.id, a.gpu_model
        UNION ALL
        SELECT q.id, a.gpu_model, sum(a.gpu_count) FROM a JOIN user_quota q ON q.subject = a.usr
         WHERE a.gpu_count > 0 GROUP BY q.id, a.gpu_model
        ON CONFLICT (quota_id, gpu_model) DO UPDATE SET used_gpus = gpu_model_quotas.used_gpus + EXCLUDED.used_gpus
        RETURNING 1
    ), env AS (
        UPDATE environments e SET host_id = a.host, allocated_at = clock_timestamp(),
                                  storage_bytes_held = e.storage_bytes_held + a.storage
          FROM a WHERE e.id = a.env
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM alloc), (SELECT count(*) FROM gpu_claim), (SELECT count(*) FROM port_claim),
           (SELECT count(*) FROM history), (SELECT count(*) FROM pool), (SELECT count(*) FROM host),
           (SELECT count(*) FROM model_quota), (SELECT count(*) FROM env)
    """
)


@dataclass
class _HostRoom:
    """What is left on one locked host as the batch fills it."""

    schedulable: bool
    cpu_millis: int
    memory_bytes: int
    port_range: tuple[int, int]
    free_gpus: dict[str, list[uuid.UUID]]
    ports_in_use: set[tuple[int, str]] = field(default_factory=set)

    @classmethod
    def from_row(cls, row: Any) -> _HostRoom:
        free: dict[str, list[uuid.UUID]] = {}
        for gpu_id, model in row.free_gpus:
            free.setdefault(model, []).append(uuid.UUID(gpu_id))
        in_use = {(port, "tcp") for port in row.tcp_in_use} | {(port, "udp") for port in row.udp_in_use}
        in_use |= {(int(used["port"]), str(used["protocol"])) for used in row.foreign_ports or []}
        return cls(
            schedulable=row.schedulable,
            cpu_millis=row.cpu_free,
            memory_bytes=row.memory_free,
            port_range=(row.port_range_start, row.port_range_end),
            free_gpus=free,
            ports_in_use=in_use,
        )

    def take(self, request: AllocationRequest, gpu_model: str | None) -> AllocationResult | None:
        """Fit `request` here (and count it as taken), or None when it no longer fits."""
        if (
            not self.schedulable
            or request.cpu_millis > self.cpu_millis
            or request.memory_bytes > self.memory_bytes
        ):
            return None
        free = self.free_gpus.get(gpu_model or "", []) if request.gpu_count else []
        if len(free) < request.gpu_count:
            return None
        ports: list[ClaimedPort] = []
        if request.ports:
            chosen = choose_host_ports(request.ports, *self.port_range, self.ports_in_use)
            if chosen is None:
                return None
            ports = chosen
        gpu_ids = tuple(free[: request.gpu_count])
        del free[: request.gpu_count]
        self.cpu_millis -= request.cpu_millis
        self.memory_bytes -= request.memory_bytes
        self.ports_in_use |= {(port.host_port, port.protocol.value) for port in ports}
        return AllocationResult(
            AllocationOutcome.ALLOCATED,
            gpu_model=gpu_model if request.gpu_count else None,
            gpu_ids=gpu_ids,
            ports=tuple(ports),
        )


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
    the caller must hold no row locks (module docstring of `allocation`).
    """
    planned = list({plan.request.environment_id: plan for plan in reversed(planned)}.values())[::-1]
    if not planned:
        return {}
    xact_lock_all(
        connection,
        [lock_key(LockNamespace.QUOTA_WORKSPACE, plan.request.workspace_id) for plan in planned]
        + [lock_key(LockNamespace.QUOTA_USER, plan.request.user_id) for plan in planned],
    )
    # A new statement, after the locks: its snapshot sees every commit made under them.
    ids = [plan.request.environment_id for plan in planned]
    states = {row.id: row for row in connection.execute(_STATES_SQL, {"ids": ids})}
    results: dict[uuid.UUID, AllocationResult] = {}
    candidates: list[PlannedAllocation] = []
    for plan in planned:
        refused = refusal(states.get(plan.request.environment_id), plan.request)
        if refused is not None:
            results[plan.request.environment_id] = refused
        else:
            candidates.append(plan)
    host_keys = {plan.host_id: lock_key(LockNamespace.HOST, plan.host_id) for plan in candidates}
    held = try_xact_lock_each(connection, host_keys.values())
    locked = sorted(host for host, key in host_keys.items() if key in held)
    rooms = (
        {
            row.id: _HostRoom.from_row(row)
            for row in connection.execute(_HOSTS_UNDER_LOCK_SQL, {"hosts": locked})
        }
        if locked
        else {}
    )
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
            results[request.environment_id] = AllocationResult(
                AllocationOutcome.OVER_QUOTA, reason=over[0].message(), violations=tuple(over)
            )
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
    _write_batch(connection, written)
    for request, result in fitted:
        results[request.environment_id] = result if request.environment_id in kept else _declined()
    for plan in stragglers:
        results[plan.request.environment_id] = _allocate_one(connection, plan, strategy, accept)
    return results


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


def _write_batch(
    connection: Connection, allocations: Sequence[tuple[AllocationRequest, AllocationResult]]
) -> None:
    """Every allocation, claim, history row and counter of the batch, in one statement."""
    if not allocations:
        return
    gpu_pairs = [(r.environment_id, gpu) for r, result in allocations for gpu in result.gpu_ids]
    port_rows = []
    for request, result in allocations:
        by_container = {(p.container_port, p.protocol): p for p in request.ports}
        for port in result.ports:
            wanted = by_container[(port.container_port, port.protocol)]
            port_rows.append(
                (
                    request.environment_id,
                    port.container_port,
                    port.host_port,
                    port.protocol.value,
                    wanted.purpose.value,
                    wanted.name,
                )
            )
    connection.execute(
        _WRITE_BATCH_SQL,
        {
            "envs": [r.environment_id for r, _ in allocations],
            "workspaces": [r.workspace_id for r, _ in allocations],
            "users": [r.user_id for r, _ in allocations],
            "hosts": [result.host_id for _, result in allocations],
            "generations": [r.generation for r, _ in allocations],
            "models": [result.gpu_model for _, result in allocations],
            "gpu_counts": [r.gpu_count for r, _ in allocations],
            "cpus": [r.cpu_millis for r, _ in allocations],
            "mems": [r.memory_bytes for r, _ in allocations],
            "storages": [r.storage_charge for r, _ in allocations],
            "port_counts": [len(result.ports) for _, result in allocations],
            "gpu_envs": [env for env, _ in gpu_pairs],
            "gpu_ids": [gpu for _, gpu in gpu_pairs],
            "port_envs": [row[0] for row in port_rows],
            "container_ports": [row[1] for row in port_rows],
            "host_ports": [row[2] for row in port_rows],
            "protocols": [row[3] for row in port_rows],
            "purposes": [row[4] for row in port_rows],
            "names": [row[5] for row in port_rows],
        },
    )
