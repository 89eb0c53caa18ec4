"""The allocation benchmark's second reference: the leanest claim and release that keep the invariants.

The bare claim (`claim_ceiling`) writes one row and keeps nothing an allocation must keep, so it says
what Postgres allows, not what any allocator could reach. This measures the other end: the least a
claim *and its release* can write while still enforcing what `core/capacity` enforces, on a copy of the
seeded inventory, with the benchmark's own request mix and release rule:

- claim, one server-side function call in autocommit (one round trip, its commit included): the
  workspace's and the user's quota advisory locks in the global order; the two quota counters checked
  against the limit; up to eight candidate hosts from the free-GPU counter (bin-packing, as the
  product's candidate query); each try-locked, skipped when busy; n free GPU rows and, for half the
  requests, two free host-port rows of that host marked held; the host's counters, the two quota
  counters, and one audit row (GPU ids and ports as arrays) written;
- release, the mirror: the host's lock (blocking), the held rows cleared, the counters given back,
  one audit row.

No environment row, no allocation row, no per-model counters, no claim rows per GPU: whatever design
the product moves to keeps at least this, so `ceiling_lean_claims_per_s ÷ ceiling_claims_per_s` is the
highest `ratio_claims` a design that keeps counters and an audit trail reaches on the machine it ran
on. `check` verifies afterwards that the lean writes kept their own counters and rows right, against
its audit (a bound that cheated would be no bound), and drops what the reference made.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from remotegpu.core.platform.locks import LockNamespace, lock_key
from remotegpu.ops.bench.together import run_together

SIZES = (1, 1, 1, 1, 2, 2, 4, 8)
"""The benchmark's request mix (GPUs per request)."""
PORTS_PER_HOST = 100
CANDIDATES = 8

_SCHEMA = f"""
DROP TABLE IF EXISTS lean_audit, lean_ports, lean_gpus, lean_quotas, lean_hosts;
CREATE TABLE lean_hosts (
    id uuid PRIMARY KEY, lock_key bigint NOT NULL,
    free_gpus int NOT NULL CHECK (free_gpus >= 0), cpu_millis_claimed bigint NOT NULL DEFAULT 0,
    memory_bytes_claimed bigint NOT NULL DEFAULT 0, ports_claimed int NOT NULL DEFAULT 0);
CREATE INDEX ON lean_hosts (free_gpus, id);
CREATE TABLE lean_gpus (id uuid PRIMARY KEY, host_id uuid NOT NULL, holder uuid);
CREATE INDEX ON lean_gpus (host_id) WHERE holder IS NULL;
CREATE INDEX ON lean_gpus (holder) WHERE holder IS NOT NULL;
CREATE TABLE lean_ports (host_id uuid NOT NULL, port int NOT NULL, holder uuid, PRIMARY KEY (host_id, port));
CREATE INDEX ON lean_ports (host_id) WHERE holder IS NULL;
CREATE INDEX ON lean_ports (holder) WHERE holder IS NOT NULL;
CREATE TABLE lean_quotas (
    subject uuid PRIMARY KEY, lock_key bigint NOT NULL, max_gpus int,
    used_gpus int NOT NULL DEFAULT 0 CHECK (used_gpus >= 0), used_cpu_millis bigint NOT NULL DEFAULT 0,
    used_memory_bytes bigint NOT NULL DEFAULT 0, running int NOT NULL DEFAULT 0 CHECK (running >= 0));
CREATE TABLE lean_audit (
    seq bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp(), action text NOT NULL,
    environment_id uuid NOT NULL, workspace_id uuid NOT NULL, user_id uuid NOT NULL, host_id uuid NOT NULL,
    gpu_ids uuid[] NOT NULL, ports int[] NOT NULL, cpu_millis bigint NOT NULL, memory_bytes bigint NOT NULL);

CREATE FUNCTION lean_claim(env uuid, ws uuid, usr uuid, n int, cpu bigint, mem bigint, port_count int)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    candidate record;
    gpu_ids uuid[];
    port_numbers int[];
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key) FROM lean_quotas WHERE subject = ws;
    PERFORM pg_advisory_xact_lock(lock_key) FROM lean_quotas WHERE subject = usr;
    IF EXISTS (SELECT 1 FROM lean_quotas WHERE subject IN (ws, usr) AND used_gpus + n > max_gpus) THEN
        RETURN NULL;
    END IF;
    FOR candidate IN
        SELECT id, lock_key FROM lean_hosts WHERE free_gpus >= n
         ORDER BY free_gpus, id LIMIT {CANDIDATES}
    LOOP
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(candidate.lock_key);
        SELECT array_agg(id) INTO gpu_ids
          FROM (SELECT id FROM lean_gpus WHERE host_id = candidate.id AND holder IS NULL LIMIT n) g;
        SELECT coalesce(array_agg(port), '{{}}') INTO port_numbers
          FROM (SELECT port FROM lean_ports WHERE host_id = candidate.id AND holder IS NULL
                 LIMIT port_count) p;
        CONTINUE WHEN coalesce(cardinality(gpu_ids), 0) < n OR cardinality(port_numbers) < port_count;
        UPDATE lean_gpus SET holder = env WHERE id = ANY(gpu_ids);
        UPDATE lean_ports SET holder = env WHERE host_id = candidate.id AND port = ANY(port_numbers);
        UPDATE lean_hosts SET free_gpus = free_gpus - n, cpu_millis_claimed = cpu_millis_claimed + cpu,
                              memory_bytes_claimed = memory_bytes_claimed + mem,
                              ports_claimed = ports_claimed + port_count
         WHERE id = candidate.id;
        UPDATE lean_quotas SET used_gpus = used_gpus + n, used_cpu_millis = used_cpu_millis + cpu,
                               used_memory_bytes = used_memory_bytes + mem, running = running + 1
         WHERE subject = ws;
        UPDATE lean_quotas SET used_gpus = used_gpus + n, used_cpu_millis = used_cpu_millis + cpu,
                               used_memory_bytes = used_memory_bytes + mem, running = running + 1
         WHERE subject = usr;
        INSERT INTO lean_audit (action, environment_id, workspace_id, user_id, host_id, gpu_ids, ports,
                                cpu_millis, memory_bytes)
        VALUES ('claim', env, ws, usr, candidate.id, gpu_ids, port_numbers, cpu, mem);
        RETURN candidate.id;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE FUNCTION lean_release(env uuid, ws uuid, usr uuid, host uuid, cpu bigint, mem bigint)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    gpu_ids uuid[];
    port_numbers int[];
    n int;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key) FROM lean_hosts WHERE id = host;
    WITH freed AS (UPDATE lean_gpus SET holder = NULL WHERE holder = env RETURNING id)
    SELECT array_agg(id) INTO gpu_ids FROM freed;
    WITH freed AS (UPDATE lean_ports SET holder = NULL WHERE holder = env RETURNING port)
    SELECT coalesce(array_agg(port), '{{}}') INTO port_numbers FROM freed;
    n := coalesce(cardinality(gpu_ids), 0);
    IF n = 0 THEN
        RETURN 0;
    END IF;
    UPDATE lean_hosts SET free_gpus = free_gpus + n, cpu_millis_claimed = cpu_millis_claimed - cpu,
                          memory_bytes_claimed = memory_bytes_claimed - mem,
                          ports_claimed = ports_claimed - cardinality(port_numbers)
     WHERE id = host;
    -- the workspace's row, then the user's: the order the claims take them in
    UPDATE lean_quotas SET used_gpus = used_gpus - n, used_cpu_millis = used_cpu_millis - cpu,
                           used_memory_bytes = used_memory_bytes - mem, running = running - 1
     WHERE subject = ws;
    UPDATE lean_quotas SET used_gpus = used_gpus - n, used_cpu_millis = used_cpu_millis - cpu,
                           used_memory_bytes = used_memory_bytes - mem, running = running - 1
     WHERE subject = usr;
    INSERT INTO lean_audit (action, environment_id, workspace_id, user_id, host_id, gpu_ids, ports,
                            cpu_millis, memory_bytes)
    VALUES ('release', env, ws, usr, host, gpu_ids, port_numbers, cpu, mem);
    RETURN n;
END
$$;
"""

_DROP = """
DROP FUNCTION IF EXISTS lean_claim(uuid, uuid, uuid, int, bigint, bigint, int);
DROP FUNCTION IF EXISTS lean_release(uuid, uuid, uuid, uuid, bigint, bigint);
"""


def _prepare(conninfo: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """The lean tables and functions, copied from the seeded inventory; returns the tenants."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(_DROP)
        connection.execute(_SCHEMA)
        hosts = connection.execute("SELECT host_id, count(*) FROM gpus GROUP BY host_id").fetchall()
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO lean_hosts (id, lock_key, free_gpus) VALUES (%s, %s, %s)",
                [(host, lock_key(LockNamespace.HOST, host).value, gpus) for host, gpus in hosts],
            )
        connection.execute("INSERT INTO lean_gpus (id, host_id) SELECT id, host_id FROM gpus")
        connection.execute(
            "INSERT INTO lean_ports (host_id, port) SELECT id, port"
            f" FROM hosts, generate_series(1, {PORTS_PER_HOST}) AS port"
        )
        tenants = connection.execute(
            "SELECT w.id, w.owner_id, q.max_gpus FROM workspaces w"
            " LEFT JOIN resource_quotas q ON q.workspace_id = w.id ORDER BY w.name"
        ).fetchall()
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO lean_quotas (subject, lock_key, max_gpus) VALUES (%s, %s, %s)",
                [
                    row
                    for workspace, user, max_gpus in tenants
                    for row in (
                        (workspace, lock_key(LockNamespace.QUOTA_WORKSPACE, workspace).value, max_gpus),
                        (user, lock_key(LockNamespace.QUOTA_USER, user).value, None),
                    )
                ],
            )
        connection.execute("ANALYZE lean_hosts, lean_gpus, lean_ports, lean_quotas")
    return [(workspace, user) for workspace, user, _ in tenants]


def _worker(
    conninfo: str,
    tenants: list[tuple[uuid.UUID, uuid.UUID]],
    share: int,
    seconds: float,
    seed: int,
    ready: Any,
    out: Any,
) -> None:
    """One process with the benchmark's rule: claim; once it holds `share` GPUs, release one first."""
    rng = random.Random(seed)
    held: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID, int]] = []
    held_gpus = claims = releases = 0
    with psycopg.connect(conninfo, autocommit=True, application_name="remotegpu-bench-lean") as connection:
        ready.wait(timeout=120)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if held and held_gpus >= share:
                env, workspace, user, host, gpus = held.pop(rng.randrange(len(held)))
                connection.execute(
                    "SELECT lean_release(%s, %s, %s, %s, %s, %s)",
                    (env, workspace, user, host, 4000 * gpus, gpus << 35),
                ).fetchone()
                held_gpus -= gpus
                releases += 1
                continue
            workspace, user = tenants[rng.randrange(len(tenants))]
            gpus = SIZES[rng.randrange(len(SIZES))]
            env = uuid.uuid4()
            (host,) = connection.execute(
                "SELECT lean_claim(%s, %s, %s, %s, %s, %s, %s)",
                (env, workspace, user, gpus, 4000 * gpus, gpus << 35, 2 * rng.randrange(2)),
            ).fetchone() or (None,)
            if host is not None:
                held.append((env, workspace, user, host, gpus))
                held_gpus += gpus
                claims += 1
    out.put((claims, releases))


def measure(url: URL, workers: int, share: int, seconds: float) -> tuple[float, int, list[str]]:
    """Lean claims per second over `workers` processes; the releases among them; `check`'s findings."""
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    tenants = _prepare(conninfo)
    counts = run_together(_worker, workers, (conninfo, tenants, share, seconds), seconds)
    findings = check(conninfo)
    return round(sum(claims for claims, _ in counts) / seconds, 1), sum(r for _, r in counts), findings


_HELD = """
    SELECT a.* FROM lean_audit a
     WHERE a.action = 'claim'
       AND NOT EXISTS (SELECT 1 FROM lean_audit r WHERE r.action = 'release' AND r.environment_id = a.environment_id)
"""
"""The claims not released, by the audit."""

_CHECKS = {
    "a host's counters differ from its held GPU and port rows": """
        SELECT count(*) FROM lean_hosts h
         WHERE h.free_gpus <> (SELECT count(*) FROM lean_gpus g WHERE g.host_id = h.id AND g.holder IS NULL)
            OR h.ports_claimed <> (SELECT count(*) FROM lean_ports p WHERE p.host_id = h.id
                                     AND p.holder IS NOT NULL)""",
    "a host's counters differ from the audit's claims held on it": f"""
        WITH held AS ({_HELD})
        SELECT count(*) FROM lean_hosts h
         WHERE (h.cpu_millis_claimed, h.memory_bytes_claimed)
               <> (SELECT coalesce(sum(cpu_millis), 0), coalesce(sum(memory_bytes), 0)
                     FROM held WHERE held.host_id = h.id)""",
    "a quota's counters differ from the audit's claims held by its subject": f"""
        WITH held AS ({_HELD})
        SELECT count(*) FROM lean_quotas q
         WHERE (q.used_gpus, q.used_cpu_millis, q.used_memory_bytes, q.running)
               <> (SELECT coalesce(sum(cardinality(gpu_ids)), 0), coalesce(sum(cpu_millis), 0),
                          coalesce(sum(memory_bytes), 0), count(*)
                     FROM held WHERE q.subject IN (held.workspace_id, held.user_id))""",
    "the audit's held GPUs and ports differ from the held rows": f"""
        WITH held AS ({_HELD})
        , audited AS (
            SELECT unnest(gpu_ids)::text AS item FROM held
            UNION ALL SELECT host_id::text || ':' || unnest(ports) FROM held
        ), rows AS (
            SELECT id::text FROM lean_gpus WHERE holder IS NOT NULL
            UNION ALL SELECT host_id::text || ':' || port FROM lean_ports WHERE holder IS NOT NULL
        )
        SELECT (SELECT count(*) FROM (TABLE audited EXCEPT ALL TABLE rows) missing)
             + (SELECT count(*) FROM (TABLE rows EXCEPT ALL TABLE audited) unaudited)""",
}


def check(conninfo: str) -> list[str]:
    """What the lean writes got wrong: each counter against the rows and the audit it summarises."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        findings = [
            f"lean: {name}"
            for name, query in _CHECKS.items()
            if (row := connection.execute(query).fetchone()) is not None and row[0] != 0
        ]
        connection.execute(_DROP)
        connection.execute("DROP TABLE lean_audit, lean_ports, lean_gpus, lean_quotas, lean_hosts")
    return findings
