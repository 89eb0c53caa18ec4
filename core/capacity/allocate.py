"""Allocation: claim GPUs, host ports and quota for one environment, all in the caller's transaction.

The protocol, in one transaction (Read Committed):

1. Take the quota advisory locks of the workspace and the user (blocking, in the global lock order).
2. In a *new statement* (its snapshot is taken after the locks are held), re-read the environment and
   both quotas and check the request against the limits in force.
3. Read candidate hosts from the `gpu_pools` counters and rank them with `policies.placement`.
4. For each candidate, try its host advisory lock without waiting; a busy host is skipped, so an
   allocator never waits while holding a host lock and no lock cycle can form. Under the lock, re-check
   the host and pick concrete free GPUs and host ports.
5. Write the allocation, the claims, their history rows and every counter in one statement.

Release is the mirror: it takes the host lock of every host the environment holds claims on (blocking;
it holds no other advisory lock, so it cannot close a cycle), then frees everything in one statement.
It is idempotent: a second release finds nothing active and changes nothing.

Storage is the exception to the mirror: volumes outlive a stop, so an allocation adds to the quotas'
storage only what the environment's volumes do not hold yet (`storage_bytes_held`), release leaves it,
and `release_storage` gives it back once a delete has removed the volumes.

Lock order, everywhere: quota advisory locks, then host advisory locks (sorted), then row locks. A
caller must not hold row locks (an updated environment row, say) when it calls `allocate` or
`release`, or a release waiting on its host lock could close a cycle with it.

The partial unique indexes on active claims stay the last line of defence: a violation raises
`IntegrityError` and the caller's transaction rolls back.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.capacity.quotas import QUOTA_STATE_SQL, quota_state_from_json
from remotegpu.core.environments.states import DesiredState, PortPurpose, Protocol
from remotegpu.core.platform.locks import LockNamespace, lock_key, try_xact_lock, xact_lock_all
from remotegpu.policies.admission import (
    QuotaRequest,
    QuotaViolation,
    models_without_headroom,
    quota_violations,
)
from remotegpu.policies.placement import (
    GpuPoolSnapshot,
    HostSnapshot,
    Placement,
    PlacementRequest,
    Strategy,
    rank_placements,
)


@dataclass(frozen=True)
class PortRequest:
    """A container port that needs a host port."""

    container_port: int
    protocol: Protocol = Protocol.TCP
    purpose: PortPurpose = PortPurpose.CUSTOM
    name: str | None = None


@dataclass(frozen=True)
class AllocationRequest:
    """What one environment generation asks for."""

    environment_id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    generation: int
    gpu_count: int
    gpu_model: str | None = None
    cpu_millis: int = 0
    memory_bytes: int = 0
    storage_bytes: int = 0
    """What the spec's volumes ask for."""
    storage_bytes_held: int = 0
    """What its volumes already hold (counted in the quotas since an earlier placement); `allocate`
    fills it in from the row it reads under the quota locks."""
    ports: tuple[PortRequest, ...] = ()

    @property
    def storage_charge(self) -> int:
        """The storage this allocation adds to the quotas: volumes outlive a stop and never shrink, so
        only growth beyond what they hold is new."""
        return max(0, self.storage_bytes - self.storage_bytes_held)

    def placement_request(self, excluded_models: frozenset[str] = frozenset()) -> PlacementRequest:
        """The placement view of this request."""
        return PlacementRequest(
            gpu_count=self.gpu_count,
            gpu_model=self.gpu_model,
            cpu_millis=self.cpu_millis,
            memory_bytes=self.memory_bytes,
            ports=len(self.ports),
            excluded_models=excluded_models,
        )


class AllocationOutcome(enum.StrEnum):
    """How an allocation attempt ended."""

    ALLOCATED = "allocated"
    ALREADY_ALLOCATED = "already-allocated"
    OVER_QUOTA = "over-quota"
    NO_CAPACITY = "no-capacity"
    CONTENDED = "contended"
    """Every fitting host was locked by another allocator, or a constraint caught a race: retry soon."""
    NOT_ALLOCATABLE = "not-allocatable"
    """The environment no longer wants this allocation (stopped, deleted, spec changed)."""


@dataclass(frozen=True)
class ClaimedPort:
    """One host port mapping made by an allocation."""

    container_port: int
    host_port: int
    protocol: Protocol
    purpose: PortPurpose
    """Why it is published, as requested and stored: SSH is known by this, never by the port number."""
    name: str | None = None


@dataclass(frozen=True)
class AllocationResult:
    """The outcome, and on success what was claimed."""

    outcome: AllocationOutcome
    reason: str = ""
    host_id: uuid.UUID | None = None
    gpu_model: str | None = None
    gpu_ids: tuple[uuid.UUID, ...] = ()
    ports: tuple[ClaimedPort, ...] = ()
    violations: tuple[QuotaViolation, ...] = ()

    @property
    def holds_claims(self) -> bool:
        """True when the environment now holds an allocation."""
        return self.outcome in {AllocationOutcome.ALLOCATED, AllocationOutcome.ALREADY_ALLOCATED}


def _no_pause(_point: str) -> None:
    return None


@dataclass(frozen=True)
class AllocationOptions:
    """How to allocate. The `unsafe_*` switches exist only so tests can show the checkers catch bugs."""

    strategy: Strategy = Strategy.BIN_PACK
    candidate_limit: int = 8
    preferred_host: uuid.UUID | None = None
    pause: Callable[[str], None] = _no_pause
    """Called at named points (`quota-locked`, `quota-checked`, `host-locked`, `gpus-chosen`), so tests
    can force interleavings."""
    unsafe_skip_quota_lock: bool = False
    unsafe_skip_host_lock: bool = False


@dataclass(frozen=True)
class ReleaseResult:
    """What a release freed."""

    gpus: int = 0
    ports: int = 0
    host_ids: tuple[uuid.UUID, ...] = field(default_factory=tuple)

    @property
    def released_anything(self) -> bool:
        """False for a repeated (idempotent) release."""
        return bool(self.gpus or self.ports or self.host_ids)


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

_ENVIRONMENT_STATE_SQL = text(ENVIRONMENT_STATE_SELECT + " WHERE e.id = :environment_id")

_HOST_HEADROOM = """
    h.port_range_start, h.port_range_end,
    h.cpu_millis_allocatable - h.cpu_millis_foreign - h.cpu_millis_claimed AS cpu_free,
    h.memory_bytes_allocatable - h.memory_bytes_foreign - h.memory_bytes_claimed AS memory_free,
    h.port_range_end - h.port_range_start + 1 - h.ports_claimed - jsonb_array_length(h.foreign_ports) AS ports_free
"""
SCHEDULABLE = "NOT h.cordoned AND NOT h.draining AND h.health = 'ready' AND h.removed_at IS NULL"

_GPU_CANDIDATES_SQL = text(
    f"""
    SELECT h.id, h.name, p.model, p.free, {_HOST_HEADROOM}
      FROM gpu_pools p JOIN hosts h ON h.id = p.host_id
     WHERE p.free >= :gpu_count
       AND (CAST(:gpu_model AS text) IS NULL OR p.model = :gpu_model)
       AND NOT (p.model = ANY(CAST(:excluded AS text[])))
       AND {SCHEDULABLE}
       AND h.cpu_millis_allocatable - h.cpu_millis_foreign - h.cpu_millis_claimed >= :cpu_millis
       AND h.memory_bytes_allocatable - h.memory_bytes_foreign - h.memory_bytes_claimed >= :memory_bytes
       AND h.port_range_end - h.port_range_start + 1 - h.ports_claimed - jsonb_array_length(h.foreign_ports) >= :port_count
     ORDER BY CASE WHEN :spread THEN -p.free ELSE p.free END, h.name
     LIMIT :limit
    """
)

_CPU_CANDIDATES_SQL = text(
    f"""
    SELECT h.id, h.name, NULL AS model, 0 AS free, {_HOST_HEADROOM}
      FROM hosts h
     WHERE {SCHEDULABLE}
       AND h.cpu_millis_allocatable - h.cpu_millis_foreign - h.cpu_millis_claimed >= :cpu_millis
       AND h.memory_bytes_allocatable - h.memory_bytes_foreign - h.memory_bytes_claimed >= :memory_bytes
       AND h.port_range_end - h.port_range_start + 1 - h.ports_claimed - jsonb_array_length(h.foreign_ports) >= :port_count
     ORDER BY h.name
     LIMIT :limit
    """
)

# Everything read under the host lock, in one statement: whether the host is still schedulable and
# fits, the free GPUs to take (only when it fits), and the host ports in use per protocol.
_UNDER_HOST_LOCK_SQL = text(
    f"""
    WITH host AS (
        SELECT h.id FROM hosts h
         WHERE h.id = :host_id AND {SCHEDULABLE}
           AND h.cpu_millis_allocatable - h.cpu_millis_foreign - h.cpu_millis_claimed >= :cpu_millis
           AND h.memory_bytes_allocatable - h.memory_bytes_foreign - h.memory_bytes_claimed >= :memory_bytes
    )
    SELECT EXISTS (SELECT 1 FROM host) AS fits,
           ARRAY(SELECT g.id FROM gpus g JOIN host ON host.id = g.host_id
                  WHERE g.model = :gpu_model AND g.health = 'healthy' AND NOT g.foreign_use
                    AND NOT EXISTS (SELECT 1 FROM gpu_claims c WHERE c.gpu_id = g.id AND c.released_at IS NULL)
                  ORDER BY g.index LIMIT :gpu_count) AS gpu_ids,
           (SELECT h.foreign_ports FROM hosts h WHERE h.id = :host_id) AS foreign_ports,
           ARRAY(SELECT m.host_port FROM port_mappings m
                  WHERE m.host_id = :host_id AND m.released_at IS NULL AND m.protocol = 'tcp') AS tcp_in_use,
           ARRAY(SELECT m.host_port FROM port_mappings m
                  WHERE m.host_id = :host_id AND m.released_at IS NULL AND m.protocol = 'udp') AS udp_in_use
    """
)

# Adds the allocation to a subject's usage counters, creating its quota row (unlimited) if it has none.
_QUOTA_UPSERT = """
        INSERT INTO resource_quotas ({column}, used_gpus, used_cpu_millis, used_memory_bytes,
                                     used_storage_bytes, running_environments)
        VALUES ({subject}, :gpu_count, :cpu, :mem, :storage, 1)
        ON CONFLICT ({column}) DO UPDATE SET
            used_gpus = resource_quotas.used_gpus + EXCLUDED.used_gpus,
            used_cpu_millis = resource_quotas.used_cpu_millis + EXCLUDED.used_cpu_millis,
            used_memory_bytes = resource_quotas.used_memory_bytes + EXCLUDED.used_memory_bytes,
            used_storage_bytes = resource_quotas.used_storage_bytes + EXCLUDED.used_storage_bytes,
            running_environments = resource_quotas.running_environments + 1
        RETURNING id"""

_WRITE_ALLOCATION_SQL = text(
    f"""
    WITH alloc AS (
        INSERT INTO allocations (environment_id, workspace_id, user_id, host_id, generation,
                                 gpu_model, gpu_count, cpu_millis, memory_bytes, storage_bytes)
        VALUES (:env, :ws, :usr, :host, :generation, :gpu_model, :gpu_count, :cpu, :mem, :storage)
        RETURNING id
    ), gpu_claim AS (
        INSERT INTO gpu_claims (gpu_id, environment_id, host_id)
        SELECT gpu, :env, :host FROM unnest(CAST(:gpu_ids AS uuid[])) AS gpu
        RETURNING gpu_id
    ), port_claim AS (
        INSERT INTO port_mappings (environment_id, host_id, container_port, host_port, protocol, purpose, name)
        SELECT :env, :host, cp, hp, pr, pu, nm
          FROM unnest(CAST(:container_ports AS int[]), CAST(:host_ports AS int[]),
                      CAST(:protocols AS text[]), CAST(:purposes AS text[]), CAST(:names AS text[]))
               AS t(cp, hp, pr, pu, nm)
        RETURNING host_port, protocol
    ), history AS (
        INSERT INTO claim_history (kind, action, environment_id, workspace_id, user_id, host_id,
                                   gpu_id, gpu_model, host_port, protocol)
        SELECT 'gpu', 'claim', :env, :ws, :usr, :host, gpu_id, :gpu_model, NULL, NULL FROM gpu_claim
        UNION ALL
        SELECT 'port', 'claim', :env, :ws, :usr, :host, NULL, NULL, host_port, protocol FROM port_claim
        RETURNING 1
    ), pool AS (
        UPDATE gpu_pools SET free = free - :gpu_count
         WHERE host_id = :host AND model = :gpu_model AND :gpu_count > 0
        RETURNING 1
    ), host AS (
        UPDATE hosts SET gpus_claimed = gpus_claimed + :gpu_count,
                         cpu_millis_claimed = cpu_millis_claimed + :cpu,
                         memory_bytes_claimed = memory_bytes_claimed + :mem,
                         ports_claimed = ports_claimed + cardinality(CAST(:host_ports AS int[]))
         WHERE id = :host
        RETURNING 1
    ), ws_quota AS ({_QUOTA_UPSERT.format(column="workspace_id", subject=":ws")}
    ), user_quota AS ({_QUOTA_UPSERT.format(column="user_id", subject=":usr")}
    ), model_quota AS (
        INSERT INTO gpu_model_quotas (quota_id, gpu_model, used_gpus)
        SELECT id, :gpu_model, :gpu_count FROM (SELECT id FROM ws_quota UNION ALL SELECT id FROM user_quota) q
         WHERE :gpu_count > 0
        ON CONFLICT (quota_id, gpu_model) DO UPDATE SET used_gpus = gpu_model_quotas.used_gpus + EXCLUDED.used_gpus
        RETURNING 1
    ), env AS (
        UPDATE environments SET host_id = :host, allocated_at = clock_timestamp(),
                                storage_bytes_held = storage_bytes_held + :storage
         WHERE id = :env
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gpu_claim), (SELECT count(*) FROM history), (SELECT count(*) FROM pool),
           (SELECT count(*) FROM host), (SELECT count(*) FROM model_quota), (SELECT count(*) FROM env),
           (SELECT count(*) FROM alloc)
    """
)


def allocate(
    connection: Connection, request: AllocationRequest, options: AllocationOptions | None = None
) -> AllocationResult:
    """Claim GPUs, ports and quota for `request` inside the caller's transaction.

    Expected outcomes are returned, not raised. The caller commits (together with its phase change)
    or rolls back; on any outcome but ALLOCATED this function has written nothing.
    """
    options = options or AllocationOptions()
    if not options.unsafe_skip_quota_lock:
        # quota before host: a fixed order, or two allocations could deadlock
        xact_lock_all(
            connection,
            [
                lock_key(LockNamespace.QUOTA_WORKSPACE, request.workspace_id),
                lock_key(LockNamespace.QUOTA_USER, request.user_id),
            ],
        )
    options.pause("quota-locked")

    # A new statement: its snapshot is taken now, after the locks are held, so it sees every commit
    # made under them. Reading in the same statement as the lock call would see a stale snapshot.
    state = connection.execute(_ENVIRONMENT_STATE_SQL, {"environment_id": request.environment_id}).first()
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
        return AllocationResult(
            AllocationOutcome.OVER_QUOTA, reason=over[0].message(), violations=tuple(over)
        )

    placements = _ranked_candidates(connection, request, quota_states, options)
    if not placements:
        return AllocationResult(
            AllocationOutcome.NO_CAPACITY, reason=f"waiting for {request.placement_request().describe()}"
        )

    busy = 0
    for placement, port_range in placements:
        host_id = placement.host_key
        assert isinstance(host_id, uuid.UUID)
        if not options.unsafe_skip_host_lock and not try_xact_lock(
            connection, lock_key(LockNamespace.HOST, host_id)
        ):
            busy += 1
            continue
        options.pause("host-locked")
        chosen = _choose_on_host(connection, request, host_id, placement.gpu_model, port_range)
        if chosen is None:
            continue
        gpu_ids, ports = chosen
        if placement.gpu_model != request.gpu_model and quota_violations_for(
            quota_states, request, placement.gpu_model
        ):
            continue
        options.pause("gpus-chosen")
        # A unique violation here means the locks were bypassed: it raises IntegrityError and the
        # caller's transaction rolls back, so nothing half-written can commit.
        _write(connection, request, host_id, placement.gpu_model, gpu_ids, ports)
        return AllocationResult(
            AllocationOutcome.ALLOCATED,
            host_id=host_id,
            gpu_model=placement.gpu_model,
            gpu_ids=tuple(gpu_ids),
            ports=tuple(ports),
        )
    if busy:
        return AllocationResult(AllocationOutcome.CONTENDED, reason=f"{busy} fitting host(s) busy; retry")
    return AllocationResult(
        AllocationOutcome.NO_CAPACITY, reason=f"waiting for {request.placement_request().describe()}"
    )


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


def _ranked_candidates(
    connection: Connection, request: AllocationRequest, quota_states: list[Any], options: AllocationOptions
) -> list[tuple[Placement, tuple[int, int]]]:
    """Placements best first, each with its host's port range (for choosing ports under the lock)."""
    excluded = models_without_headroom(quota_states, request.gpu_count)
    parameters = {
        "gpu_count": request.gpu_count,
        "gpu_model": request.gpu_model,
        "excluded": sorted(excluded),
        "cpu_millis": request.cpu_millis,
        "memory_bytes": request.memory_bytes,
        "port_count": len(request.ports),
        "spread": options.strategy is Strategy.SPREAD,
        "limit": options.candidate_limit,
    }
    sql = _GPU_CANDIDATES_SQL if request.gpu_count else _CPU_CANDIDATES_SQL
    hosts: dict[Hashable, HostSnapshot] = {}
    port_ranges: dict[Hashable, tuple[int, int]] = {}
    for row in connection.execute(sql, parameters):
        port_ranges[row.id] = (row.port_range_start, row.port_range_end)
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
    ranked = rank_placements(hosts.values(), request.placement_request(excluded), options.strategy)
    if options.preferred_host is not None:
        ranked.sort(key=lambda placement: placement.host_key != options.preferred_host)
    return [(placement, port_ranges[placement.host_key]) for placement in ranked]


def _choose_on_host(
    connection: Connection,
    request: AllocationRequest,
    host_id: uuid.UUID,
    gpu_model: str | None,
    port_range: tuple[int, int],
) -> tuple[list[uuid.UUID], list[ClaimedPort]] | None:
    """Under the host lock: concrete free GPUs and host ports, or None when the host no longer fits.

    The port range never changes while claims exist, so the candidate's range is used as read.
    """
    row = connection.execute(
        _UNDER_HOST_LOCK_SQL,
        {
            "host_id": host_id,
            "cpu_millis": request.cpu_millis,
            "memory_bytes": request.memory_bytes,
            "gpu_model": gpu_model,
            "gpu_count": request.gpu_count,
        },
    ).one()
    if not row.fits or len(row.gpu_ids) < request.gpu_count:
        return None
    ports: list[ClaimedPort] = []
    if request.ports:
        in_use = {(port, "tcp") for port in row.tcp_in_use} | {(port, "udp") for port in row.udp_in_use}
        in_use |= {(int(used["port"]), str(used["protocol"])) for used in row.foreign_ports or []}
        chosen = choose_host_ports(request.ports, port_range[0], port_range[1], in_use)
        if chosen is None:
            return None
        ports = chosen
    return list(row.gpu_ids), ports


def choose_host_ports(
    wanted: Sequence[PortRequest], first: int, last: int, in_use: set[tuple[int, str]]
) -> list[ClaimedPort] | None:
    """The lowest free host ports in [first, last], per protocol; None when the range is exhausted."""
    taken = set(in_use)
    chosen: list[ClaimedPort] = []
    candidate = {Protocol.TCP: first, Protocol.UDP: first}
    for port in wanted:
        protocol = Protocol(port.protocol)
        number = candidate[protocol]
        while number <= last and (number, protocol.value) in taken:
            number += 1
        if number > last:
            return None
        taken.add((number, protocol.value))
        candidate[protocol] = number + 1
        chosen.append(ClaimedPort(port.container_port, number, protocol, port.purpose, port.name))
    return chosen


def _write(
    connection: Connection,
    request: AllocationRequest,
    host_id: uuid.UUID,
    gpu_model: str | None,
    gpu_ids: list[uuid.UUID],
    ports: list[ClaimedPort],
) -> None:
    by_container = {(p.container_port, p.protocol): p for p in request.ports}
    connection.execute(
        _WRITE_ALLOCATION_SQL,
        {
            "env": request.environment_id,
            "ws": request.workspace_id,
            "usr": request.user_id,
            "host": host_id,
            "generation": request.generation,
            "gpu_model": gpu_model,
            "gpu_count": request.gpu_count,
            "cpu": request.cpu_millis,
            "mem": request.memory_bytes,
            "storage": request.storage_charge,
            "gpu_ids": gpu_ids,
            "container_ports": [p.container_port for p in ports],
            "host_ports": [p.host_port for p in ports],
            "protocols": [p.protocol.value for p in ports],
            "purposes": [by_container[(p.container_port, p.protocol)].purpose.value for p in ports],
            "names": [by_container[(p.container_port, p.protocol)].name for p in ports],
        },
    )


_ACTIVE_HOSTS_SQL = text(
    """
    SELECT host_id FROM allocations WHERE environment_id = :env AND released_at IS NULL
    UNION SELECT host_id FROM gpu_claims WHERE environment_id = :env AND released_at IS NULL
    UNION SELECT host_id FROM port_mappings WHERE environment_id = :env AND released_at IS NULL
    """
)

_RELEASE_SQL = text(
    """
    WITH env AS (
        SELECT workspace_id, user_id FROM environments WHERE id = :env
    ), alloc AS (
        UPDATE allocations SET released_at = clock_timestamp()
         WHERE environment_id = :env AND released_at IS NULL AND host_id = ANY(CAST(:hosts AS uuid[]))
        RETURNING workspace_id, user_id, host_id, gpu_model, gpu_count, cpu_millis, memory_bytes, storage_bytes
    ), gpu_release AS (
        UPDATE gpu_claims SET released_at = clock_timestamp()
         WHERE environment_id = :env AND released_at IS NULL AND host_id = ANY(CAST(:hosts AS uuid[]))
        RETURNING gpu_id, host_id
    ), port_release AS (
        UPDATE port_mappings SET released_at = clock_timestamp()
         WHERE environment_id = :env AND released_at IS NULL AND host_id = ANY(CAST(:hosts AS uuid[]))
        RETURNING host_id, host_port, protocol
    ), history AS (
        INSERT INTO claim_history (kind, action, environment_id, workspace_id, user_id, host_id,
                                   gpu_id, gpu_model, host_port, protocol)
        SELECT 'gpu', 'release', :env, env.workspace_id, env.user_id, r.host_id, r.gpu_id, g.model, NULL, NULL
          FROM gpu_release r JOIN gpus g ON g.id = r.gpu_id CROSS JOIN env
        UNION ALL
        SELECT 'port', 'release', :env, env.workspace_id, env.user_id, r.host_id, NULL, NULL, r.host_port, r.protocol
          FROM port_release r CROSS JOIN env
        RETURNING 1
    ), pool AS (
        -- only healthy GPUs not used by foreign pods go back to the pool
        UPDATE gpu_pools p SET free = p.free + x.n
          FROM (SELECT g.host_id, g.model, count(*) AS n
                  FROM gpu_release r JOIN gpus g ON g.id = r.gpu_id
                 WHERE g.health = 'healthy' AND NOT g.foreign_use
                 GROUP BY g.host_id, g.model) x
         WHERE p.host_id = x.host_id AND p.model = x.model
        RETURNING 1
    ), host AS (
        UPDATE hosts h SET gpus_claimed = h.gpus_claimed - x.gpus,
                           cpu_millis_claimed = h.cpu_millis_claimed - x.cpu,
                           memory_bytes_claimed = h.memory_bytes_claimed - x.mem,
                           ports_claimed = h.ports_claimed - x.ports
          FROM (SELECT host_id, sum(gpus) AS gpus, sum(cpu) AS cpu, sum(mem) AS mem, sum(ports) AS ports
                  FROM (SELECT host_id, gpu_count AS gpus, cpu_millis AS cpu, memory_bytes AS mem, 0 AS ports
                          FROM alloc
                        UNION ALL
                        SELECT host_id, 0, 0, 0, 1 FROM port_release) parts
                 GROUP BY host_id) x
         WHERE h.id = x.host_id
        RETURNING 1
    ), quota AS (
        UPDATE resource_quotas q SET used_gpus = q.used_gpus - a.gpu_count,
                                     used_cpu_millis = q.used_cpu_millis - a.cpu_millis,
                                     used_memory_bytes = q.used_memory_bytes - a.memory_bytes,
                                     running_environments = q.running_environments - 1
          FROM alloc a
         WHERE q.workspace_id = a.workspace_id OR q.user_id = a.user_id
        RETURNING 1
    ), model_quota AS (
        UPDATE gpu_model_quotas m SET used_gpus = m.used_gpus - a.gpu_count
          FROM alloc a JOIN resource_quotas q ON q.workspace_id = a.workspace_id OR q.user_id = a.user_id
         WHERE m.quota_id = q.id AND m.gpu_model = a.gpu_model AND a.gpu_count > 0
        RETURNING 1
    ), environment AS (
        UPDATE environments SET host_id = NULL, allocated_at = NULL
         WHERE id = :env AND EXISTS (SELECT 1 FROM alloc)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gpu_release) AS gpus, (SELECT count(*) FROM port_release) AS ports,
           -- claims on hosts we did not lock (an allocation committed after we listed the hosts)
           EXISTS (SELECT 1 FROM allocations WHERE environment_id = :env AND released_at IS NULL
                      AND NOT host_id = ANY(CAST(:hosts AS uuid[]))) AS elsewhere,
           (SELECT count(*) FROM history), (SELECT count(*) FROM pool), (SELECT count(*) FROM host),
           (SELECT count(*) FROM quota), (SELECT count(*) FROM model_quota), (SELECT count(*) FROM environment)
    """
)


def release(connection: Connection, environment_id: uuid.UUID) -> ReleaseResult:
    """Free every claim of the environment inside the caller's transaction; idempotent."""
    gpus = ports = 0
    released_hosts: set[uuid.UUID] = set()
    # Claims made after we read the host list (a racing allocation) are on hosts we did not lock; loop
    # until nothing is left, so the release is complete when it returns.
    for _ in range(3):
        hosts = sorted(connection.execute(_ACTIVE_HOSTS_SQL, {"env": environment_id}).scalars())
        if not hosts:
            break
        xact_lock_all(connection, [lock_key(LockNamespace.HOST, host) for host in hosts])
        row = connection.execute(_RELEASE_SQL, {"env": environment_id, "hosts": hosts}).one()
        gpus += row.gpus
        ports += row.ports
        released_hosts.update(hosts)
        if not row.elsewhere:
            break
    return ReleaseResult(gpus=gpus, ports=ports, host_ids=tuple(sorted(released_hosts)))


_STORAGE_OWNER_SQL = text(
    "SELECT workspace_id, user_id, storage_bytes_held FROM environments WHERE id = :env"
)

_RELEASE_STORAGE_SQL = text(
    """
    WITH env AS (
        -- the row lock makes a second release wait and then find nothing held
        SELECT id, workspace_id, user_id, storage_bytes_held AS held FROM environments
         WHERE id = :env AND storage_bytes_held > 0 FOR UPDATE
    ), cleared AS (
        UPDATE environments e SET storage_bytes_held = 0 FROM env WHERE e.id = env.id
        RETURNING 1
    ), quota AS (
        UPDATE resource_quotas q SET used_storage_bytes = q.used_storage_bytes - env.held
          FROM env
         WHERE q.workspace_id = env.workspace_id OR q.user_id = env.user_id
        RETURNING 1
    )
    SELECT coalesce((SELECT held FROM env), 0) AS held, (SELECT count(*) FROM cleared),
           (SELECT count(*) FROM quota)
    """
)


def release_storage(connection: Connection, environment_id: uuid.UUID) -> int:
    """Give back the storage quota of an environment whose volumes are gone (its delete); idempotent.

    Returns the bytes freed. Takes the quota locks first (the global lock order: quota, then host, then
    rows), so call it before `release` in the same transaction.
    """
    owner = connection.execute(_STORAGE_OWNER_SQL, {"env": environment_id}).one_or_none()
    if owner is None or not owner.storage_bytes_held:
        return 0
    xact_lock_all(
        connection,
        [
            lock_key(LockNamespace.QUOTA_WORKSPACE, owner.workspace_id),
            lock_key(LockNamespace.QUOTA_USER, owner.user_id),
        ],
    )
    held: int = connection.execute(_RELEASE_STORAGE_SQL, {"env": environment_id}).one().held
    return held
