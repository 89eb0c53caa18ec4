"""One reconciler process for every shard: a `Reconciler` per shard, leading its fair share of them.

Each shard has its own leader lock and fencing epoch (`reconciler.leader`), so any process may lead any
shard. To spread the shards over N processes, each process holds a *membership* advisory lock (two-key
form, its own class id) for as long as it runs, and counts the live processes as the granted locks of
that class: the fair share is `ceil(shards / processes)`. A process campaigns for a free shard only while
it leads fewer than its share, and hands its highest shard over while it leads more, so a process that
joins gets shards within a heartbeat or two, and the shards of one that dies (its sessions end, and with
them its locks: a paused process's idle sessions are ended by the server) are taken by the others.

The process watches the cluster's pods once and tells every shard it leads; each `Reconciler` filters
the environments of its own shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from remotegpu.core.cluster.driver import ClusterDriver, WorkloadWatcher
from remotegpu.core.platform.db import normalise_url
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.leader import default_identity
from remotegpu.reconciler.loop import Reconciler
from remotegpu.reconciler.telemetry import MetricsServer, ReconcilerMetrics

log = logging.getLogger(__name__)

MEMBERSHIP_CLASS = 0x52475055
"""The first key of every membership lock ("RGPU"); the second is the process's identity, hashed."""

_COUNT_SQL = text(
    """
    SELECT count(*) FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = CAST(:class AS oid)
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    """
)


def _identity_key(identity: str) -> int:
    return int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=4).digest(), "big", signed=True)


class Membership:
    """This process's membership lock, and how many processes hold one (itself included)."""

    def __init__(self, url: URL, identity: str, idle_timeout_s: float = 5.0, refresh_s: float = 0.5) -> None:
        self.identity = identity
        self._key = _identity_key(identity)
        self._idle_timeout_ms = int(idle_timeout_s * 1000)
        self._refresh_s = refresh_s
        self._engine: Engine = create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": f"remotegpu-member-{identity}"[:63], "connect_timeout": 5},
        )
        self._connection: Connection | None = None
        self._lock = threading.Lock()
        self._counted = (0.0, 1)

    def processes(self) -> int:
        """Live reconciler processes (at least 1: this one), read at most every `refresh_s`."""
        with self._lock:
            read_at, count = self._counted
            if time.monotonic() - read_at < self._refresh_s:
                return count
            try:
                connection = self._connect()
                count = max(1, int(connection.execute(_COUNT_SQL, {"class": MEMBERSHIP_CLASS}).scalar_one()))
            except Exception as error:
                log.warning("Membership not counted", extra={"error": type(error).__name__})
                self._drop()
            self._counted = (time.monotonic(), count)
            return count

    def close(self) -> None:
        with self._lock:
            self._drop()
            self._engine.dispose()

    def _connect(self) -> Connection:
        if self._connection is None:
            connection = self._engine.connect()
            try:
                # a paused process keeps its TCP session: the server ends it when idle this long
                connection.execute(text(f"SET idle_session_timeout = {self._idle_timeout_ms}"))
                connection.execute(
                    text("SELECT pg_try_advisory_lock(:class, :key)"),
                    {"class": MEMBERSHIP_CLASS, "key": self._key},
                )
            except Exception:
                connection.invalidate()
                raise
            self._connection = connection
        return self._connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.invalidate()
                connection.close()


class ShardedReconciler:
    """The reconcilers of one process, one per shard (`reconciler_shards`), sharing its identity, its
    metrics registry and one pod watch."""

    def __init__(
        self,
        url: URL | str,
        cluster: ClusterDriver,
        settings: Settings,
        *,
        identity: str | None = None,
        **options: Any,
    ) -> None:
        self.identity = identity or default_identity()
        self.cluster = cluster
        self.metrics = ReconcilerMetrics(0)
        self.members = [
            Reconciler(
                url,
                cluster,
                settings,
                identity=self.identity,
                shard=shard,
                watch_pods=False,
                metrics=self.metrics,
                **options,
            )
            for shard in range(settings.reconciler_shards)
        ]
        parsed = normalise_url(make_url(url) if isinstance(url, str) else url)
        self.membership = Membership(parsed, self.identity, refresh_s=settings.heartbeat_seconds / 2)
        for member in self.members:
            member.may_campaign = self._below_share
            member.should_resign = self._above_share(member)
        self._metrics_server: MetricsServer | None = None

    # -- what the process tells its shards ---------------------------------------------------------
    def fair_share(self) -> int:
        """How many shards this process should lead: the shards divided by the live processes."""
        return math.ceil(len(self.members) / self.membership.processes())

    def led_shards(self) -> list[int]:
        return [member.ctx.shard for member in self.members if member.is_leader]

    def _below_share(self) -> bool:
        return len(self.led_shards()) < self.fair_share()

    def _above_share(self, member: Reconciler) -> Callable[[], bool]:
        def above() -> bool:
            led = self.led_shards()
            # one shard at a time, the highest: the others see it free at their next campaign
            return len(led) > self.fair_share() and member.ctx.shard == max(led)

        return above

    # -- the interface of a replica (`running_reconciler`, the CLI, `remotegpu dev`) ----------------
    @property
    def is_leader(self) -> bool:
        """Whether this process leads at least one shard."""
        return any(member.is_leader for member in self.members)

    @property
    def leads_queue(self) -> Reconciler | None:
        """The member that leads shard 0 (the capacity queue and the singleton jobs), if this process does."""
        first = self.members[0]
        return first if first.is_leader else None

    def apply_settings(self, new: Settings) -> set[str]:
        changed: set[str] = set()
        for member in self.members:
            changed |= member.apply_settings(new)
        return changed

    def serve_metrics(self, host: str, port: int) -> str:
        """Serve the process's `/metrics` (every shard's series, one registry) until `close`."""
        if self._metrics_server is None:
            self._metrics_server = MetricsServer(self.metrics.registry, host, port)
        return self._metrics_server.url

    @property
    def metrics_url(self) -> str | None:
        return self._metrics_server.url if self._metrics_server is not None else None

    def on_pod_change(self, environment_id: Any) -> None:
        for member in self.members:
            member.on_pod_change(environment_id)

    def run(self, stop: threading.Event) -> None:
        """Run every shard's reconciler until `stop` is set; then each resigns and cleans up."""
        threads = [
            threading.Thread(target=member.run, args=(stop,), name=f"shard-{member.ctx.shard}", daemon=True)
            for member in self.members
        ]
        if isinstance(self.cluster, WorkloadWatcher):
            threading.Thread(
                target=self.cluster.watch_workloads, args=(self.on_pod_change, stop), daemon=True, name="pods"
            ).start()
        for thread in threads:
            thread.start()
        try:
            stop.wait()
        finally:
            for thread in threads:
                thread.join(timeout=30)
            self.close()

    def close(self) -> None:
        self.membership.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None


@contextlib.contextmanager
def running_shards(sharded: ShardedReconciler) -> Iterator[ShardedReconciler]:
    """`sharded` running in a background thread until the block ends."""
    stop = threading.Event()
    thread = threading.Thread(target=sharded.run, args=(stop,), name="reconciler", daemon=True)
    thread.start()
    try:
        yield sharded
    finally:
        stop.set()
        thread.join(timeout=60)
