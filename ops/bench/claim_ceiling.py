"""The allocation benchmark's ceiling: the bare claim transaction, in the same run on the same Postgres.

An allocation is, at its core, a host's advisory lock and a write of a GPU row of that host, in one
transaction. Here that is all there is: a table with one row per GPU of the seeded inventory, and the
same number of worker processes each looping over `BEGIN; pg_advisory_xact_lock(host key of a random
host); UPDATE one GPU row of that host … RETURNING; COMMIT` through raw psycopg (no SQLAlchemy, no
quota, no candidate query, no counters). What the benchmark's claims/s is a fraction of.

`cycle_claims_per_s` runs the same transaction under the benchmark's release rule: once a worker holds
its share, it first releases one of its holdings (`BEGIN; pg_advisory_xact_lock(that host's key); UPDATE
that GPU row back … RETURNING; COMMIT`). The benchmark's loop releases about once per claim, so its
claims/s divided by the bare claim's counts every release against it; this says what that mix allows
when both operations are the bare transaction (`ratio_bare_cycle`).
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
    held_limit: int | None,
    seed: int,
    ready: Any,
    out: Any,
) -> None:
    """One claiming process: connect, wait for the others, claim until `seconds` passed; puts its count
    of claims and releases. With `held_limit`, once it holds that many GPUs it releases one first."""
    rng = random.Random(seed)
    holder = uuid.uuid4()
    held: list[tuple[int, uuid.UUID]] = []
    claims = releases = 0
    with psycopg.connect(conninfo, application_name="remotegpu-bench-ceiling") as connection:
        ready.wait(timeout=120)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if held_limit is not None and len(held) >= held_limit:
                key, gpu = held.pop(rng.randrange(len(held)))
                _bare_write(connection, key, gpu, None)
                releases += 1
                continue
            key, gpus = hosts[rng.randrange(len(hosts))]
            gpu = gpus[rng.randrange(len(gpus))]
            _bare_write(connection, key, gpu, holder)
            claims += 1
            if held_limit is not None:
                held.append((key, gpu))
    out.put((claims, releases))


def _bare_write(
    connection: psycopg.Connection[Any], key: int, gpu: uuid.UUID, holder: uuid.UUID | None
) -> None:
    """The bare transaction: the host's lock and one GPU row set to `holder` (None: released)."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        connection.execute(
            f"UPDATE {TABLE} SET holder = %s WHERE id = %s RETURNING id", (holder, gpu)
        ).fetchone()


def claims_per_s(url: URL, workers: int, seconds: float) -> float:
    """Bare claim transactions per second over `workers` processes, on the seeded inventory of `url`."""
    claims, _ = _run(url, workers, seconds, None)
    return round(claims / seconds, 1)


def cycle_claims_per_s(url: URL, workers: int, share: int, seconds: float) -> tuple[float, int]:
    """Bare claims per second with the benchmark's release rule (each worker holds at most `share` GPUs,
    one per bare claim), and the releases among them."""
    claims, releases = _run(url, workers, seconds, share)
    return round(claims / seconds, 1), releases


def _run(url: URL, workers: int, seconds: float, held_limit: int | None) -> tuple[int, int]:
    """Claims and releases of `workers` processes over `seconds`, on a fresh copy of the inventory."""
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    hosts = _prepare(conninfo)
    counts = run_together(_worker, workers, (conninfo, hosts, seconds, held_limit), seconds)
    return sum(claims for claims, _ in counts), sum(releases for _, releases in counts)
