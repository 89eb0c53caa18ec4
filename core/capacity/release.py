"""Release: the mirror of the claim write, and giving back the storage of deleted volumes.

`release` takes the host lock of every host the environment holds claims on (blocking; it holds no
other advisory lock, so it cannot close a cycle), then frees everything in one statement: the
allocation, its GPU claims and port mappings, with history rows, and every counter the claim write
raised. It is idempotent: a second release finds nothing active and changes nothing.

Storage is the exception to the mirror: volumes outlive a stop, so release leaves the quotas' storage
and `release_storage` gives it back once a delete has removed the volumes.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from remotegpu.core.capacity.capacity_sql import GPU_IN_POOL
from remotegpu.core.capacity.eligibility import lock_quotas
from remotegpu.core.platform.locks import LockNamespace, lock_all_statement, lock_key
from remotegpu.core.platform.pipeline import run_pipelined


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


_ACTIVE_HOSTS_SQL = text(
    """
    SELECT host_id FROM allocations WHERE environment_id = :env AND released_at IS NULL
    UNION SELECT host_id FROM gpu_claims WHERE environment_id = :env AND released_at IS NULL
    UNION SELECT host_id FROM port_mappings WHERE environment_id = :env AND released_at IS NULL
    """
)

_RELEASE_SQL = text(
    f"""
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
                 WHERE {GPU_IN_POOL}
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
         WHERE h.id = x.host_id AND h.id = ANY(CAST(:hosts AS uuid[]))
        RETURNING 1
    ), subject AS (
        -- the workspace's and the user's quota rows, each through its own index (an OR of the two
        -- scanned every quota row of the installation)
        SELECT q.id, a.gpu_model, a.gpu_count, a.cpu_millis, a.memory_bytes
          FROM alloc a JOIN resource_quotas q ON q.workspace_id = a.workspace_id
        UNION ALL
        SELECT q.id, a.gpu_model, a.gpu_count, a.cpu_millis, a.memory_bytes
          FROM alloc a JOIN resource_quotas q ON q.user_id = a.user_id
    ), quota AS (
        UPDATE resource_quotas q SET used_gpus = q.used_gpus - s.gpu_count,
                                     used_cpu_millis = q.used_cpu_millis - s.cpu_millis,
                                     used_memory_bytes = q.used_memory_bytes - s.memory_bytes,
                                     running_environments = q.running_environments - 1
          FROM subject s
         WHERE q.id = s.id
        RETURNING 1
    ), model_quota AS (
        UPDATE gpu_model_quotas m SET used_gpus = m.used_gpus - s.gpu_count
          FROM subject s
         WHERE m.quota_id = s.id AND m.gpu_model = s.gpu_model AND s.gpu_count > 0
        RETURNING 1
    ), environment AS (
        UPDATE environments SET host_id = NULL, allocated_at = NULL
         WHERE id = :env AND EXISTS (SELECT 1 FROM alloc)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gpu_release) AS gpus, (SELECT count(*) FROM port_release) AS ports,
           (SELECT coalesce(array_agg(DISTINCT r.host_id), '{{}}')
              FROM (SELECT host_id FROM alloc UNION ALL SELECT host_id FROM gpu_release
                    UNION ALL SELECT host_id FROM port_release) r) AS released_hosts,
           -- claims on hosts we did not lock (an allocation committed after we listed the hosts)
           EXISTS (SELECT 1 FROM allocations WHERE environment_id = :env AND released_at IS NULL
                      AND NOT host_id = ANY(CAST(:hosts AS uuid[]))) AS elsewhere,
           (SELECT count(*) FROM history), (SELECT count(*) FROM pool), (SELECT count(*) FROM host),
           (SELECT count(*) FROM quota), (SELECT count(*) FROM model_quota), (SELECT count(*) FROM environment)
    """
)


def release(
    connection: Connection, environment_id: uuid.UUID, hosts: Collection[uuid.UUID] = ()
) -> ReleaseResult:
    """Free every claim of the environment inside the caller's transaction; idempotent.

    Two round trips (`run_pipelined`): the hosts it holds claims on, then their locks with the release
    (a new statement, whose snapshot is taken once the locks are held). `hosts`, where the caller last
    saw the environment placed (a step's lease row), skips the first: a wrong guess costs that read after
    all, never a missed claim, since the release reports claims on hosts it did not lock.
    """
    gpus = ports = 0
    released_hosts: set[uuid.UUID] = set()
    guess = sorted(set(hosts))
    # Claims made after we read the host list (a racing allocation) are on hosts we did not lock; loop
    # until nothing is left, so the release is complete when it returns.
    for _ in range(3 + bool(guess)):
        if guess:
            locked, guess = guess, []
        else:
            ((*rows,),) = run_pipelined(connection, [(_ACTIVE_HOSTS_SQL, {"env": environment_id})])
            locked = sorted(row.host_id for row in rows)
            if not locked:
                break
        keys = [lock_key(LockNamespace.HOST, host) for host in locked]
        _, (row,) = run_pipelined(
            connection, [lock_all_statement(keys), (_RELEASE_SQL, {"env": environment_id, "hosts": locked})]
        )
        gpus += row.gpus
        ports += row.ports
        released_hosts.update(row.released_hosts)
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
    lock_quotas(connection, [(owner.workspace_id, owner.user_id)])
    held: int = connection.execute(_RELEASE_STORAGE_SQL, {"env": environment_id}).one().held
    return held
