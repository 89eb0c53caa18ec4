"""The claim write: the one statement that records allocations, their claims and every counter.

Both allocation paths end here (`allocate` writes a batch of one): an `allocations` row per
environment, its `gpu_claims` and `port_mappings`, a `claim_history` row per claim, and the counters
placement and quotas read (`gpu_pools.free`, the host's `*_claimed`, the workspace and user quotas
with their per-model GPU counts, the environment's host and storage held). `release` is its mirror.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, text

from remotegpu.core.capacity.requests import AllocationRequest, AllocationResult

# Adds the allocations to a subject's usage counters, one row per subject (ON CONFLICT may touch
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

_WRITE_CLAIMS_SQL = text(
    f"""
    WITH a AS (
        SELECT * FROM unnest(CAST(:envs AS uuid[]), CAST(:workspaces AS uuid[]), CAST(:users AS uuid[]),
                             CAST(:hosts AS uuid[]), CAST(:generations AS int[]), CAST(:models AS text[]),
                             CAST(:gpu_counts AS int[]), CAST(:cpus AS bigint[]), CAST(:mems AS bigint[]),
                             CAST(:storages AS bigint[]), CAST(:port_counts AS int[]))
               AS t(env, ws, usr, host, generation, gpu_model, gpu_count, cpu, mem, storage, port_count)
         LIMIT cardinality(CAST(:envs AS uuid[]))
    -- The statement runs on a generic plan once psycopg has prepared it, and a generic plan cannot see how
    -- many rows `unnest` yields (it guesses 10). The LIMIT keeps every row (one per environment) but makes
    -- that guess 1, so the writes below join their rows by index (hosts, environments) instead of hashing
    -- seq-scanned tables; the key lookups also name their keys as arrays (`= ANY(...)`) for the same reason.
    -- Data-modifying CTEs run to completion whether read or not: only those read later return rows.
    ), alloc AS (
        INSERT INTO allocations (environment_id, workspace_id, user_id, host_id, generation,
                                 gpu_model, gpu_count, cpu_millis, memory_bytes, storage_bytes)
        SELECT env, ws, usr, host, generation, gpu_model, gpu_count, cpu, mem, storage FROM a
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
    ), pool AS (
        UPDATE gpu_pools p SET free = p.free - x.n
          FROM (SELECT host, gpu_model, sum(gpu_count) AS n FROM a WHERE gpu_count > 0
                 GROUP BY host, gpu_model) x
         WHERE p.host_id = x.host AND p.model = x.gpu_model AND p.host_id = ANY(CAST(:hosts AS uuid[]))
    ), host AS (
        UPDATE hosts h SET gpus_claimed = h.gpus_claimed + x.gpus,
                           cpu_millis_claimed = h.cpu_millis_claimed + x.cpu,
                           memory_bytes_claimed = h.memory_bytes_claimed + x.mem,
                           ports_claimed = h.ports_claimed + x.ports
          FROM (SELECT host, sum(gpu_count) AS gpus, sum(cpu) AS cpu, sum(mem) AS mem, sum(port_count) AS ports
                  FROM a GROUP BY host) x
         WHERE h.id = x.host AND h.id = ANY(CAST(:hosts AS uuid[]))
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
    ), env AS (
        UPDATE environments e SET host_id = a.host, allocated_at = clock_timestamp(),
                                  storage_bytes_held = e.storage_bytes_held + a.storage
          FROM a WHERE e.id = a.env AND e.id = ANY(CAST(:envs AS uuid[]))
    )
    SELECT 1
    """
)


def write_claims(
    connection: Connection, allocations: Sequence[tuple[AllocationRequest, AllocationResult]]
) -> None:
    """Write every allocation of `allocations` (each request with its ALLOCATED result): the
    allocation rows, GPU claims, port mappings, their history rows and every counter, in one statement.

    The caller holds the quota locks and the host locks of every host written to. A unique violation
    (the locks bypassed) raises `IntegrityError`, and the caller's transaction rolls back.
    """
    if not allocations:
        return
    gpu_pairs = [(r.environment_id, gpu) for r, result in allocations for gpu in result.gpu_ids]
    port_rows = [
        (
            request.environment_id,
            port.container_port,
            port.host_port,
            port.protocol.value,
            port.purpose.value,
            port.name,
        )
        for request, result in allocations
        for port in result.ports
    ]
    connection.execute(
        _WRITE_CLAIMS_SQL,
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
