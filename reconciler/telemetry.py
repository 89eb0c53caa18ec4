"""The reconciler's Prometheus metrics: what this replica does, and — while it leads shard 0 — the
platform's state read from the database (`core.platform.gauges`).

Each replica has a registry of its own (tests run several in one process), served on its own port by
`serve_metrics`. Names follow Prometheus conventions: base units (seconds), `_total` counters, labels with
few values (phases, step outcomes, reasons the reconciler itself writes, GPU models, hosts, workspaces).
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text

from remotegpu.core.environments.states import Phase
from remotegpu.core.platform import clock
from remotegpu.core.platform.gauges import PlatformGauges, read_platform_gauges

if TYPE_CHECKING:
    from remotegpu.reconciler.context import ReconcilerContext

log = logging.getLogger(__name__)

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
GAUGE_READ_TIMEOUT_MS = 2000
"""The platform gauges' statements give up after this: a slow database fails a scrape, not the loop."""


class ReconcilerMetrics:
    """The metrics of one replica, on a registry of its own."""

    def __init__(self, shard: int = 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shard = str(shard)
        registry = self.registry
        self.leader = Gauge(
            "remotegpu_reconciler_leader",
            "1 while this replica leads the shard.",
            ["shard"],
            registry=registry,
        )
        self.epoch = Gauge(
            "remotegpu_reconciler_epoch",
            "The fencing epoch this replica leads with.",
            ["shard"],
            registry=registry,
        )
        self.leadership_acquired = Counter(
            "remotegpu_reconciler_leadership_acquired",
            "Times this replica became the shard's leader (a failover, after the first).",
            ["shard"],
            registry=registry,
        )
        self.leadership_lost = Counter(
            "remotegpu_reconciler_leadership_lost",
            "Times this replica stopped leading, by why.",
            ["shard", "reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "remotegpu_reconciler_steps_in_flight",
            "Leases this replica's workers hold now.",
            ["shard"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "remotegpu_reconcile_step_duration_seconds",
            "One step (decide and record) on one environment, by the phase it started in and its outcome.",
            ["phase", "result"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "remotegpu_reconcile_errors",
            "Steps that retried or failed, by phase and reason (Exception: the step raised).",
            ["phase", "reason"],
            registry=registry,
        )
        self.backoffs = Counter(
            "remotegpu_reconcile_backoffs",
            "Temporary errors retried with backoff, by phase and reason.",
            ["phase", "reason"],
            registry=registry,
        )
        self.deadline_failures = Counter(
            "remotegpu_reconcile_deadline_failures",
            "Environments failed for retrying past their phase's deadline.",
            ["phase"],
            registry=registry,
        )
        self.job_duration = Histogram(
            "remotegpu_job_duration_seconds",
            "One run of a leader job (metering, policies, invoices, garbage collection, host sync).",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.job_failures = Counter(
            "remotegpu_job_failures", "Leader job runs that raised.", ["job"], registry=registry
        )
        self.job_last_success = Gauge(
            "remotegpu_job_last_success_timestamp_seconds",
            "When the leader job last finished without error (Unix time).",
            ["job"],
            registry=registry,
        )
        for labelled in (self.leader, self.epoch, self.in_flight, self.leadership_acquired):
            labelled.labels(self.shard)

    def for_shard(self, shard: int) -> ReconcilerMetrics:
        """The same metrics (one registry) seen from another shard of this process: its leadership
        series carry that shard; step and job series add up over the process's shards."""
        view = copy.copy(self)
        view.shard = str(shard)
        for labelled in (self.leader, self.epoch, self.in_flight, self.leadership_acquired):
            labelled.labels(view.shard)
        return view

    def led(self, epoch: int) -> None:
        """This replica became the leader at `epoch`."""
        self.leader.labels(self.shard).set(1)
        self.epoch.labels(self.shard).set(epoch)
        self.leadership_acquired.labels(self.shard).inc()

    def lost(self, reason: str) -> None:
        """This replica stopped leading."""
        self.leader.labels(self.shard).set(0)
        self.leadership_lost.labels(self.shard, reason).inc()

    def timed_job(self, name: str, job: Callable[[], object]) -> None:
        """Run a leader job, timing it and counting a failure (then re-raising it)."""
        started = time.perf_counter()
        try:
            job()
        except Exception:
            self.job_failures.labels(name).inc()
            raise
        finally:
            self.job_duration.labels(name).observe(time.perf_counter() - started)
        self.job_last_success.labels(name).set(time.time())


class PlatformCollector(Collector):
    """The platform gauges, read at scrape time, exported only while `leads()` (the leader of shard 0):
    every replica would read the same numbers, and a sum over replicas must count them once."""

    def __init__(self, ctx: ReconcilerContext, leads: Callable[[], bool]) -> None:
        self._ctx = ctx
        self._leads = leads

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read at scrape time only: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        if not self._leads():
            return
        settings = self._ctx.settings
        ok = GaugeMetricFamily(
            "remotegpu_platform_gauges_up", "1 when the platform gauges below were read from the database."
        )
        try:
            with self._ctx.engine.connect() as connection, connection.begin():
                connection.execute(text("SET TRANSACTION READ ONLY"))
                connection.execute(text(f"SET LOCAL statement_timeout = {GAUGE_READ_TIMEOUT_MS}"))
                gauges = read_platform_gauges(
                    connection,
                    clock.now(),
                    provisioning_deadline=dt.timedelta(seconds=settings.provisioning_deadline_seconds),
                    stopping_deadline=dt.timedelta(seconds=settings.stopping_deadline_seconds),
                )
        except Exception as error:
            log.warning("Platform gauges not read", extra={"error": type(error).__name__})
            ok.add_metric([], 0)
            yield ok
            return
        ok.add_metric([], 1)
        yield ok
        yield from families(gauges, settings.currency)


def families(gauges: PlatformGauges, currency: str) -> Iterator[Metric]:
    """The Prometheus families of one snapshot."""
    gpus = GaugeMetricFamily(
        "remotegpu_gpus",
        "GPUs by host, model and state (free, claimed, foreign, unhealthy, lost); the sum is the total.",
        labels=["host", "model", "state"],
    )
    for host, model, state, count in gauges.gpus:
        gpus.add_metric([host, model, state], count)
    yield gpus
    up = GaugeMetricFamily(
        "remotegpu_host_up", "1 while the host's node is ready and heartbeating.", labels=["host"]
    )
    cordoned = GaugeMetricFamily(
        "remotegpu_host_cordoned", "1 while the host takes no new environments.", labels=["host"]
    )
    ports = GaugeMetricFamily(
        "remotegpu_host_ports_free", "Host ports left to map in the host's range.", labels=["host"]
    )
    for host, health, is_cordoned, free in gauges.hosts:
        up.add_metric([host], 1 if health == "ready" else 0)
        cordoned.add_metric([host], 1 if is_cordoned else 0)
        ports.add_metric([host], free)
    yield from (up, cordoned, ports)
    length = GaugeMetricFamily(
        "remotegpu_queue_length",
        'Environments waiting for capacity, by GPU model ("": none).',
        labels=["model"],
    )
    oldest = GaugeMetricFamily(
        "remotegpu_queue_oldest_wait_seconds",
        "How long the longest-waiting environment of the queue has waited, by GPU model.",
        labels=["model"],
    )
    for model, waiting, wait in gauges.queue:
        length.add_metric([model], waiting)
        oldest.add_metric([model], wait)
    yield from (length, oldest)
    environments = GaugeMetricFamily(
        "remotegpu_environments",
        "Environments (not deleted) by phase and desired state.",
        labels=["phase", "desired_state"],
    )
    for phase, desired, count in gauges.environments:
        environments.add_metric([phase, desired], count)
    yield environments
    stuck = GaugeMetricFamily(
        "remotegpu_environments_past_deadline",
        "Environments still in a work phase past that phase's deadline.",
        labels=["phase"],
    )
    counts = dict.fromkeys(sorted(Phase.where(Phase.is_in_progress)), 0) | dict(gauges.stuck)
    for phase, count in counts.items():  # every work phase, 0 too: an alert's series never vanishes
        stuck.add_metric([str(phase)], count)
    yield stuck
    due = GaugeMetricFamily(
        "remotegpu_reconcile_due",
        "Environments due for a step now (the lease queue), by shard.",
        labels=["shard"],
    )
    for shard, count in gauges.due:
        due.add_metric([str(shard)], count)
    yield due
    accrued = CounterMetricFamily(
        "remotegpu_billing_accrued",
        "Usage metered into intervals so far, in the deployment's currency, by workspace and resource.",
        labels=["workspace", "resource", "currency"],
    )
    for workspace, resource, amount in gauges.accrued:
        accrued.add_metric([workspace, resource, currency], float(amount))
    yield accrued
    lag = GaugeMetricFamily(
        "remotegpu_meter_lag_seconds",
        "Age of the oldest usage not yet closed into intervals (normal: up to meter_close_seconds plus"
        " meter_seconds).",
    )
    lag.add_metric([], gauges.meter_lag_seconds)
    yield lag


class MetricsServer:
    """`/metrics` of one registry over HTTP on a port of its own, in a daemon thread, until `close`."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, host, registry)
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host if ':' not in host else f'[{host}]'}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
