"""Running a reconciler replica in this process, against the in-memory cluster.

Until the Kubernetes driver lands, the cluster the reconciler drives is `InMemoryCluster`, whose nodes
are the hosts registered in the database. `remotegpu dev` seeds a small demo inventory when it has none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator

from sqlalchemy import text
from sqlalchemy.engine import URL

from remotegpu.core.db import make_engine
from remotegpu.core.inventory import GpuDevice, register_host
from remotegpu.core.memory_cluster import InMemoryCluster
from remotegpu.core.settings import Settings
from remotegpu.reconciler.loop import Reconciler

GIB = 1 << 30


def seed_demo_inventory(url: URL, hosts: int = 4, gpus_per_host: int = 8) -> int:
    """Register `hosts` demo H100 hosts when the database has none; returns how many were added."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            if connection.execute(text("SELECT count(*) FROM hosts")).scalar_one():
                return 0
            for index in range(hosts):
                register_host(
                    connection,
                    f"dev-node-{index}",
                    [GpuDevice("H100", 80 * GIB) for _ in range(gpus_per_host)],
                    cpu_millis=128_000,
                    memory_bytes=1024 * GIB,
                    labels={"nvidia.com/gpu.product": "H100"},
                )
        return hosts
    finally:
        engine.dispose()


def memory_cluster_for(url: URL, start_delay: dt.timedelta = dt.timedelta(seconds=2)) -> InMemoryCluster:
    """An in-memory cluster whose nodes are the database's hosts."""
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            names = set(connection.execute(text("SELECT name FROM hosts WHERE removed_at IS NULL")).scalars())
    finally:
        engine.dispose()
    return InMemoryCluster(nodes=names, start_delay=start_delay)


@contextlib.contextmanager
def running_reconciler(
    url: URL, settings: Settings, cluster: InMemoryCluster | None = None, identity: str | None = None
) -> Iterator[Reconciler]:
    """A reconciler replica in a background thread, stopped (and resigned) on exit."""
    reconciler = Reconciler(url, cluster or memory_cluster_for(url), settings, identity=identity)
    stop = threading.Event()
    thread = threading.Thread(target=reconciler.run, args=(stop,), name="reconciler", daemon=True)
    thread.start()
    try:
        yield reconciler
    finally:
        stop.set()
        thread.join(timeout=30)


def wait_for_leadership(reconciler: Reconciler, timeout_s: float = 10.0) -> bool:
    """Wait until `reconciler` leads (or the timeout passes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reconciler.is_leader:
            return True
        time.sleep(0.05)
    return False
