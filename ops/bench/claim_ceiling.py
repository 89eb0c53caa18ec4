"""The allocation benchmark's ceiling: the bare claim transaction, in the same run on the same Postgres.

An allocation is, at its core, a host's advisory lock and a write of a GPU row of that host, in one
transaction. Here that is all there is: a table with one row per GPU of the seeded inventory, and the
same number of worker processes each looping over `BEGIN; pg_advisory_xact_lock(host key of a random
host); UPDATE one GPU row of that host … RETURNING; COMMIT` through raw psycopg (no SQLAlchemy, no
quota, no candidate query, no counters). What the benchmark's claims/s is a fraction of.
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

TABLE = "bench_bare_gpus"


def _prepare(conninfo: str) -> list[tuple[int, list[uuid.UUID]]]:
    """The bare table, copied from the seeded `gpus`; returns (host lock key, GPU ids) per host."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {TABLE}")
        connection.execute(f"CREATE TABLE {TABLE} AS SELECT id, host_id, NULL::uuid AS holder FROM gpus")
        connection.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)")
        connection.execute(f"ANALYZE {TABLE}")
        hosts: dict[uuid.UUID, list[uuid.UUID]] = {}
        for gpu, host in connection.execute(f"SELECT id, host_id FROM {TABLE} ORDER BY host_id, id"):
            hosts.setdefault(host, []).append(gpu)
    return [(lock_key(LockNamespace.HOST, host).value, gpus) for host, gpus in hosts.items()]


def _worker(
    conninfo: str,
    hosts: list[tuple[int, list[uuid.UUID]]],
    seconds: float,
    seed: int,
    ready: Any,
    out: Any,
) -> None:
    """One claiming process: connect, wait for the others, claim until `seconds` passed; puts its count."""
    rng = random.Random(seed)
    holder = uuid.uuid4()
    claims = 0
    with psycopg.connect(conninfo, application_name="remotegpu-bench-ceiling") as connection:
        ready.wait(timeout=120)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            key, gpus = hosts[rng.randrange(len(hosts))]
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
                connection.execute(
                    f"UPDATE {TABLE} SET holder = %s WHERE id = %s RETURNING id",
                    (holder, gpus[rng.randrange(len(gpus))]),
                ).fetchone()
            claims += 1
    out.put(claims)


def claims_per_s(url: URL, workers: int, seconds: float) -> float:
    """Bare claim transactions per second over `workers` processes, on the seeded inventory of `url`."""
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    hosts = _prepare(conninfo)
    total: int = sum(run_together(_worker, workers, (conninfo, hosts, seconds), seconds))
    return round(total / seconds, 1)
