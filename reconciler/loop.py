"""The reconciler process: campaign for leadership, and while leading, reconcile.

Followers are hot standbys that campaign every `heartbeat_seconds`. The leader, on every tick: pings its
lock connection (at most once per heartbeat interval; any failure ends leadership before anything else
runs), runs the scheduling pass, leases due environments for its free workers and hands them over. A
tick happens when a NOTIFY arrives, when a worker requeues work for right now, and at least every
`POLL_SECONDS`, so every environment whose `next_attempt_at` has passed is picked up even when every
notification is lost (level-triggered). Singleton jobs (host heartbeats, and the hooks later features
register: meter tick, policy stops, invoices, registry sync, garbage collection) run under APScheduler
only while leading. The scheduling pass runs on a thread of its own, woken with the loop, so leasing
never waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import msgspec
import psycopg
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from remotegpu.core.cluster.driver import ClusterDriver, PullSecretConsumer, WorkloadWatcher
from remotegpu.core.environments.access_keys import PlatformKeys
from remotegpu.core.environments.shards import rebalance
from remotegpu.core.gateways.configured import ConfiguredGateways
from remotegpu.core.monitoring.gpu_metrics import GpuMetrics
from remotegpu.core.platform.db import make_engine, normalise_url
from remotegpu.core.platform.log_context import bound_log_fields
from remotegpu.core.platform.notify import CHANNEL
from remotegpu.core.platform.settings import Settings
from remotegpu.core.registry.directory import ClientFactory, RegistryDirectory
from remotegpu.core.registry.factory import default_client_factory
from remotegpu.core.secrets.configured import secret_store_if_configured
from remotegpu.core.secrets.store import SecretStore
from remotegpu.reconciler.context import ReconcilerContext, SimulatedCrashError
from remotegpu.reconciler.environments.leases import Lease, fetch_leases
from remotegpu.reconciler.environments.pipeline import reconcile
from remotegpu.reconciler.gc import collect_garbage
from remotegpu.reconciler.hosts import sync_host_health
from remotegpu.reconciler.invoicing import INVOICE_SECONDS, invoice_tick
from remotegpu.reconciler.leader import FencedOutError, LeaderElector, default_identity, fence
from remotegpu.reconciler.metering import meter_tick
from remotegpu.reconciler.policies import policy_tick
from remotegpu.reconciler.registry_sync import registry_sync_tick
from remotegpu.reconciler.scheduler import schedule_pass
from remotegpu.reconciler.telemetry import MetricsServer, PlatformCollector, ReconcilerMetrics
from remotegpu.reconciler.writer_stamp import stamp_writes, writer_value

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""Longest sleep between ticks while leading."""
QUEUE_SHARD = 0
"""The shard whose leader runs the capacity queue (admission, the scheduling pass) and the singleton
jobs; every environment's steps run on the leader of its own shard."""
PER_SHARD_JOBS = frozenset({"metering", "policies"})
"""Jobs that each shard's leader runs for its own environments; the others run on `QUEUE_SHARD` only."""
GC_SECONDS = 60.0
"""How often the leader collects orphaned cluster objects and claims."""
HOST_SYNC_SECONDS = 5.0
"""How often the leader syncs hosts with the cluster's nodes (well inside `host_down_after_seconds`)."""


def lease_limit(workers: int, in_flight: int) -> int:
    """How many environments a tick leases: none while more steps are in flight than there are
    workers, else enough for every worker and a queue as long again.

    Leasing one environment per finished step made a lease statement (the fencing check, three due
    classes, the state of each row) per step, and the tick thread spent most of a busy minute in them;
    leasing only once the queue has drained to the workers' count takes about a worker's count at a
    time, while the queued steps keep every worker busy. A queued lease waits a few steps' time, far
    inside its expiry; shutting down gives back the queued ones (`_release_leases`).
    """
    return 2 * workers - in_flight if in_flight <= workers else 0


JOB_INTERVALS = {
    "metering": "meter_seconds",
    "policies": "policy_seconds",
    "registry-sync": "registry_sync_seconds",
}
"""The leader jobs whose interval is a setting (a reload reschedules them)."""
RELOADABLE = frozenset(
    {
        "reconcile_workers",
        "resync_seconds",
        "backoff_base_seconds",
        "backoff_cap_seconds",
        "provisioning_deadline_seconds",
        "stopping_deadline_seconds",
        "meter_close_seconds",
        *JOB_INTERVALS.values(),
    }
)
"""What a running replica takes from reloaded settings (`apply_settings`); the rest needs a restart."""


class Reconciler:
    """One reconciler replica (leader or standby) for one shard."""

    def __init__(
        self,
        url: URL | str,
        cluster: ClusterDriver,
        settings: Settings,
        *,
        identity: str | None = None,
        shard: int = 0,
        kill_point: Callable[[str], None] | None = None,
        listen: bool = True,
        secrets: SecretStore | None = None,
        registry_clients: ClientFactory | None = None,
        watch_pods: bool = True,
        metrics: ReconcilerMetrics | None = None,
    ) -> None:
        self.url = normalise_url(make_url(url) if isinstance(url, str) else url)
        self.identity = identity or default_identity()
        self.elector = LeaderElector(self.url, shard=shard, identity=self.identity)
        engine = make_engine(
            self.url,
            pool_size=settings.reconcile_workers + 2,
            application_name=f"remotegpu-reconciler-{shard}",
            # No round trip per checkout: a dropped connection fails one step (retried when its lease
            # expires) and SQLAlchemy then replaces the pool's connections.
            pre_ping=False,
        )
        # One store for both: without one, Jupyter environments wait and keys Secrets hold users' keys only.
        store = secrets if secrets is not None else secret_store_if_configured(settings, engine)
        self.ctx = ReconcilerContext(
            engine,
            cluster,
            settings,
            self.identity,
            shard,
            wake=self._wake_now,
            secrets=store,
            platform_keys=PlatformKeys(store) if store is not None else None,
            gateways=ConfiguredGateways(settings, store) if len(settings.configured_gateways()) > 1 else None,
            metrics=metrics.for_shard(shard) if metrics is not None else ReconcilerMetrics(shard),
            registries=RegistryDirectory(engine, store, registry_clients or default_client_factory),
            gpu_metrics=GpuMetrics.from_settings(settings),
        )
        stamp_writes(engine, lambda: writer_value(self.ctx.shard, self.ctx.epoch))
        if isinstance(cluster, PullSecretConsumer) and self.ctx.registries is not None:
            cluster.use_pull_secrets(self.ctx.registries.pull_secret)
        self.metrics = self.ctx.metrics
        if shard == QUEUE_SHARD:  # the platform's gauges come from the leader of shard 0 only
            self.metrics.registry.register(PlatformCollector(self.ctx, lambda: self.is_leader))
        self._metrics_server: MetricsServer | None = None
        self._pending_settings: Settings | None = None
        self._settings_lock = threading.Lock()
        if kill_point is not None:
            self.ctx.kill_point = kill_point
        self._listen = listen
        self._watch_pods = watch_pods
        self.may_campaign: Callable[[], bool] = lambda: True
        """Whether to try to take the shard now (a process leading its fair share of shards says no)."""
        self.should_resign: Callable[[], bool] = lambda: False
        """Whether to hand the shard over now (a process leading more than its fair share says yes)."""
        self._wake = threading.Event()
        self._schedule_wake = threading.Event()
        self._fenced = threading.Event()
        self._workers = ThreadPoolExecutor(settings.reconcile_workers, thread_name_prefix="reconcile")
        self._in_flight: dict[uuid.UUID, Future[None]] = {}
        self._pod_changes: set[uuid.UUID] = set()
        self._pod_changes_lock = threading.Lock()
        self._jobs: BackgroundScheduler | None = None
        self._job_specs: list[tuple[Callable[[ReconcilerContext], object], float, str]] = [
            (sync_host_health, HOST_SYNC_SECONDS, "host-heartbeats"),
            (collect_garbage, GC_SECONDS, "garbage-collection"),
            (meter_tick, settings.meter_seconds, "metering"),
            (policy_tick, settings.policy_seconds, "policies"),
            (invoice_tick, INVOICE_SECONDS, "invoices"),
            (registry_sync_tick, settings.registry_sync_seconds, "registry-sync"),
        ]
        self._last_heartbeat = 0.0
        self.steps_done = 0
        self.steps_failed = 0

    # -- public ---------------------------------------------------------------------------------
    def add_job(self, job: Callable[[ReconcilerContext], object], every_seconds: float, name: str) -> None:
        """Register a singleton job that runs only on the leader (meter tick, registry sync, gc…)."""
        self._job_specs.append((job, every_seconds, name))

    def apply_settings(self, new: Settings) -> set[str]:
        """Take the reloadable settings of `new` (`RELOADABLE`); returns those that differ from what the
        replica runs or was last asked to. The loop's thread applies them at its next tick: the worker
        pool resized, the leader jobs rescheduled. A standby applies them when it leads; asked back to
        what it runs before then, it has nothing left to apply."""
        with self._settings_lock:
            running = self.ctx.settings
            asked = self._pending_settings or running
            changed = {name for name in RELOADABLE if getattr(asked, name) != getattr(new, name)}
            differs = any(getattr(running, name) != getattr(new, name) for name in RELOADABLE)
            self._pending_settings = (
                msgspec.structs.replace(running, **{name: getattr(new, name) for name in RELOADABLE})
                if differs
                else None
            )
        if changed:
            self._wake_now()
        return changed

    def _take_pending_settings(self) -> None:
        with self._settings_lock:
            pending, self._pending_settings = self._pending_settings, None
            if pending is None:
                return
            old, self.ctx.settings = self.ctx.settings, pending
        if pending.reconcile_workers != old.reconcile_workers:
            previous = self._workers  # its steps in flight finish; they stay in `_in_flight` until reaped
            self._workers = ThreadPoolExecutor(pending.reconcile_workers, thread_name_prefix="reconcile")
            previous.shutdown(wait=False)
        self._job_specs = [
            (job, getattr(pending, JOB_INTERVALS[name]) if name in JOB_INTERVALS else every, name)
            for job, every, name in self._job_specs
        ]
        if self._jobs is not None:
            for _job, every, name in self._job_specs:
                self._jobs.reschedule_job(name, trigger="interval", seconds=every)

    def serve_metrics(self, host: str, port: int) -> str:
        """Serve this replica's `/metrics` on host:port (0: any free port) until `close`; returns its URL."""
        if self._metrics_server is None:
            self._metrics_server = MetricsServer(self.metrics.registry, host, port)
        return self._metrics_server.url

    @property
    def metrics_url(self) -> str | None:
        """Where this replica serves `/metrics`; None when it does not."""
        return self._metrics_server.url if self._metrics_server is not None else None

    @property
    def is_leader(self) -> bool:
        """Whether this replica leads its shard right now."""
        return self.elector.is_leader

    def run(self, stop: threading.Event) -> None:
        """Campaign and reconcile until `stop` is set; then resign and clean up."""
        listener = threading.Thread(target=self._listen_loop, args=(stop,), daemon=True, name="notify")
        scheduling = threading.Thread(
            target=self._scheduling_loop, args=(stop,), daemon=True, name="schedule"
        )
        if self._listen:
            listener.start()
        if self.ctx.shard == QUEUE_SHARD:
            scheduling.start()
        if self._watch_pods and isinstance(self.ctx.cluster, WorkloadWatcher):
            threading.Thread(
                target=self.ctx.cluster.watch_workloads,
                args=(self.on_pod_change, stop),
                daemon=True,
                name="pods",
            ).start()
        try:
            while not stop.is_set():
                if self._fenced.is_set():
                    self._fenced.clear()
                    self._lose_leadership("fenced out")
                if not self._ensure_leadership():
                    stop.wait(self.ctx.settings.heartbeat_seconds)
                    continue
                try:
                    self.tick()
                except Exception:  # a database hiccup must not end the loop: the next tick retries
                    log.exception("Tick failed; retrying at the next one")
                    stop.wait(POLL_SECONDS)
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
        finally:
            self._wake_now()
            for thread in (listener, scheduling):
                if thread.is_alive():
                    thread.join(timeout=5)
            self.close()

    def close(self) -> None:
        """Wait for jobs and the steps in flight, give back the leases not worked on, resign (if
        leading: a standby takes over at its next campaign, within a heartbeat), close every connection."""
        if self._jobs is not None:
            self._jobs.shutdown(wait=True)
            self._jobs = None
        self._workers.shutdown(wait=True, cancel_futures=True)
        if self.elector.is_leader:
            self.metrics.lost("resigned")
            self._release_leases()
        self.elector.resign()
        self.elector.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        if self.ctx.gpu_metrics is not None:
            self.ctx.gpu_metrics.close()
        self.ctx.engine.dispose()

    def _release_leases(self) -> None:
        """Give back the leases of work this replica will not do (queued steps cancelled at shutdown), so
        the next leader takes those environments at once rather than after the lease expires. Best
        effort: a lease left behind still expires."""
        try:
            with self.ctx.engine.begin() as connection:
                connection.execute(
                    text(
                        "UPDATE environments SET lock_token = NULL, lock_expires_at = NULL, lock_owner = NULL"
                        " WHERE lock_owner = :me AND shard = :shard AND lock_token IS NOT NULL"
                    ),
                    {"me": self.identity, "shard": self.ctx.shard},
                )
                fence(connection, self.ctx.shard, self.ctx.epoch)  # a replaced leader's leases just expire
        except Exception as error:
            log.warning("Leases not released; they expire", extra={"error": type(error).__name__})

    def tick(self) -> None:
        """One round of leader work: lease due environments for the workers (`lease_limit`)."""
        self._take_pending_settings()
        self._reap()
        limit = lease_limit(self.ctx.settings.reconcile_workers, len(self._in_flight))
        if limit == 0:
            return  # the workers have a queue: pod changes wait for the next lease, in its round trip
        nudge = self._take_pod_changes()
        try:
            leases = fetch_leases(self.ctx, limit, exclude=set(self._in_flight), nudge=nudge)
        except FencedOutError:
            self._lose_leadership("fenced out while leasing")
            return
        except Exception:  # the nudge rolled back with the lease: its pod changes wait for the next tick
            with self._pod_changes_lock:
                self._pod_changes.update(nudge)
            raise
        for lease in leases:
            self._in_flight[lease.environment_id] = self._workers.submit(
                self._reconcile, lease, time.monotonic(), self.ctx.epoch
            )
        self.metrics.in_flight.labels(self.metrics.shard).set(len(self._in_flight))

    def run_until_idle(self, max_rounds: int = 100) -> int:
        """Synchronously reconcile until nothing is due (tests; needs leadership). Returns steps run."""
        if not self._ensure_leadership():
            raise RuntimeError("run_until_idle needs this replica to lead")
        steps = 0
        for _ in range(max_rounds):
            try:
                if self.ctx.shard == QUEUE_SHARD:
                    schedule_pass(self.ctx)
            except SimulatedCrashError:
                log.warning("Scheduling pass killed at a kill point")
            leases = fetch_leases(self.ctx, 1000)
            if not leases:
                return steps
            for lease in leases:
                self._reconcile(lease)
                steps += 1
        return steps

    # -- leadership -----------------------------------------------------------------------------
    def _ensure_leadership(self) -> bool:
        if self.elector.is_leader:
            if time.monotonic() - self._last_heartbeat < self.ctx.settings.heartbeat_seconds:
                return True
            self._last_heartbeat = time.monotonic()
            if self.should_resign():
                self.hand_over()
                return False
            if self.elector.heartbeat():
                return True
            self._lose_leadership("heartbeat failed")
            return False
        if not self.may_campaign() or not self.elector.campaign():
            return False
        assert self.elector.epoch is not None
        self.ctx.epoch = self.elector.epoch
        self.metrics.led(self.elector.epoch)
        self._last_heartbeat = time.monotonic()
        if self.ctx.shard == QUEUE_SHARD:
            self._rebalance_shards()
        self._start_jobs()
        return True

    def hand_over(self) -> None:
        """Give the shard up while running (another process is short of its share): jobs stop, the
        leases not worked on go back, the lock is released; steps in flight finish or are fenced out."""
        if self._jobs is not None:
            self._jobs.shutdown(wait=True)
            self._jobs = None
        if self.elector.is_leader:
            self._cancel_queued()  # before their leases go back: another replica may take them at once
            self._release_leases()
            self.metrics.lost("handed over")
            self.elector.resign()

    def _rebalance_shards(self) -> None:
        """Put every environment in the shard `reconciler_shards` gives it (the count may have changed
        since the last term); best effort, the next term of shard 0 tries again."""
        try:
            with self.ctx.engine.begin() as connection:
                moved = rebalance(connection, self.ctx.settings.reconciler_shards)
                fence(connection, self.ctx.shard, self.ctx.epoch)
            if moved:
                log.info("Environments moved between shards", extra={"moved": moved})
        except Exception as error:
            log.warning("Shards not rebalanced", extra={"error": type(error).__name__})

    def _lose_leadership(self, reason: str) -> None:
        if self._jobs is not None:
            self._jobs.shutdown(wait=True)  # a job still running would only be fenced out anyway
            self._jobs = None
        if self.elector.is_leader:
            self._cancel_queued()
            self.elector.step_down(reason)
            self.metrics.lost(reason)

    def _start_jobs(self) -> None:
        jobs = BackgroundScheduler(daemon=True)
        for job, every, name in self._job_specs:
            if self.ctx.shard != QUEUE_SHARD and name not in PER_SHARD_JOBS:
                continue
            jobs.add_job(
                self._guarded(job, name), "interval", seconds=every, id=name, max_instances=1, coalesce=True
            )
        jobs.start()
        self._jobs = jobs

    def _guarded(self, job: Callable[[ReconcilerContext], object], name: str) -> Callable[[], None]:
        def run() -> None:
            try:
                with bound_log_fields(job=name, shard=self.ctx.shard, epoch=self.ctx.epoch):
                    self.metrics.timed_job(name, lambda: job(self.ctx))
            except FencedOutError:
                log.warning("Singleton job fenced out", extra={"job": name})
            except Exception:
                log.exception("Singleton job failed", extra={"job": name})

        return run

    # -- workers --------------------------------------------------------------------------------
    def _reconcile(self, lease: Lease, leased_at: float | None = None, epoch: int | None = None) -> None:
        """Run a lease's steps; a lease that waited in the queue (`leased_at`, in the term `epoch`) is
        dropped unworked when it is no longer safe to start on (`_stale`)."""
        if leased_at is not None:
            why = self._stale(leased_at, epoch)
            if why is not None:
                log.info(
                    "Queued lease dropped unworked; it expires",
                    extra={"env": str(lease.environment_id), "why": why},
                )
                return
        self.steps_done += 1
        moved = True  # unless the step says otherwise: a step that failed may have done anything
        with bound_log_fields(
            environment=str(lease.environment_id), shard=self.ctx.shard, epoch=self.ctx.epoch
        ):
            try:
                moved = reconcile(self.ctx, lease)
            except SimulatedCrashError:
                log.warning("Step killed at a kill point; its lease will expire", extra={"lease": str(lease)})
            except FencedOutError:
                log.warning("Step fenced out: another replica leads now")
            except Exception:
                self.steps_failed += 1
                self.metrics.errors.labels(lease.state.phase.value, "Exception").inc()
                log.exception("Step failed; the lease will expire and the step be retried")
            finally:
                # A worker is free: the loop may lease. The scheduling pass runs only when the step may
                # have changed what it sees (waking it after each of 1,000 resyncs a second at 10,000
                # running kept it busy admitting nothing: a fifth of the process); it polls anyway.
                self._wake.set()
                if moved:
                    self._schedule_wake.set()

    def _stale(self, leased_at: float, epoch: int | None) -> str | None:
        """Why a queued lease must not be started on, if it must not: this replica no longer leads the
        term it was leased in (a takeover may have handed the environment to another replica), or it
        waited past half its lease (a step must start with time to apply before the lease expires, or
        the scheduler or another leader could act on the row meanwhile)."""
        if not self.elector.is_leader or epoch != self.ctx.epoch:
            return "leadership changed"
        if time.monotonic() - leased_at > self.ctx.settings.lease_seconds / 2:
            return "waited past half its lease"
        return None

    def _cancel_queued(self) -> None:
        """Cancel the steps still waiting for a worker (those started finish or are fenced out)."""
        for future in self._in_flight.values():
            future.cancel()

    def _reap(self) -> None:
        for environment_id, future in list(self._in_flight.items()):
            if future.done():
                del self._in_flight[environment_id]

    def on_pod_change(self, environment_id: uuid.UUID) -> None:
        """A pod of ours changed: its environment becomes due at the next tick (see `fetch_leases`)."""
        if not self.elector.is_leader:
            return
        with self._pod_changes_lock:
            self._pod_changes.add(environment_id)
        self._wake.set()  # the step it makes due tells the scheduling pass if it moves anything

    def _take_pod_changes(self) -> list[uuid.UUID]:
        """Pod changes to act on now. Those of environments a worker is on stay for a later tick: the
        worker may have looked at the pod just before it changed and requeued it for later."""
        with self._pod_changes_lock:
            ready = [changed for changed in self._pod_changes if changed not in self._in_flight]
            self._pod_changes.difference_update(ready)
        return ready

    def _wake_now(self) -> None:
        self._wake.set()
        self._schedule_wake.set()

    def _scheduling_loop(self, stop: threading.Event) -> None:
        """While leading, run the scheduling pass whenever work may have changed (and every poll)."""
        while not stop.is_set():
            self._schedule_wake.wait(POLL_SECONDS)
            self._schedule_wake.clear()
            if not self.elector.is_leader or stop.is_set():
                continue
            try:
                schedule_pass(self.ctx)
            except FencedOutError:
                self._fenced.set()
            except SimulatedCrashError:
                log.warning("Scheduling pass killed at a kill point")
            except Exception:
                log.exception("Scheduling pass failed; it runs again at the next wake-up")

    def _listen_loop(self, stop: threading.Event) -> None:
        """LISTEN on the environments channel and wake the loop; reconnects after errors."""
        dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    while not stop.is_set():
                        for _ in connection.notifies(timeout=0.5, stop_after=1):
                            self._wake_now()
            except Exception as error:
                log.warning("Notification listener reconnecting", extra={"error": repr(error)})
                with contextlib.suppress(Exception):
                    stop.wait(1.0)
