"""The reconcile benchmark's ceilings: what one environment's bare work costs, in the same run.

An environment's way to running costs one lease and two applies in the database (each one statement)
and, on a real cluster, three calls: create its Service, create its Pod, read the Pod. Measured here
without the loop, the scheduling pass, the watch or the decisions, with as many threads as the
reconciler has workers:

- `statements_envs_per_s`: environments (seeded on a shard of their own, so the benchmark's replicas
  never see them, and the other way round) leased as the loop leases them (one statement for as many
  as there are workers) and applied `provision` then `become_running`, through the reconciler's own
  `fetch_leases` and `apply`;
- `cluster_envs_per_s`: Service + Pod created and the Pod read, through the official client with the
  driver's manifests and its raw-JSON calls, against the same simulated cluster, on nodes with a free
  GPU (so the simulated kubelets start the pods, as they did the benchmark's).

Run after the benchmark, with its replicas stopped: the ceiling and the measurement never share the
machine.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.cluster.manifests import pod_manifest, service_manifest
from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.environments.derived import PodPlacement, resource_requests, workload_spec
from remotegpu.core.environments.desired import submit_environment
from remotegpu.core.environments.lifecycle import Trigger
from remotegpu.core.environments.spec import parse_spec
from remotegpu.core.environments.states import Phase
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.environments.apply import apply
from remotegpu.reconciler.environments.leases import Lease, fetch_leases
from remotegpu.reconciler.environments.results import advance
from remotegpu.reconciler.leader import LeaderElector

CEILING_SHARD = 1
"""The shard the statements' ceiling runs on: the benchmark's replicas lead shard 0 only."""


def _in_threads(threads: int, work: Callable[[], None]) -> float:
    """Run `work` on `threads` threads at once; seconds until the last one ended. The first error of
    any thread is raised here: a ceiling that skipped work would read too high."""
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            work()
        except BaseException as error:
            errors.append(error)

    started = time.perf_counter()
    running = [threading.Thread(target=guarded, name=f"ceiling-{index}") for index in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def statements_envs_per_s(
    url: URL,
    workspace: uuid.UUID,
    user: uuid.UUID,
    spec: dict[str, Any],
    *,
    envs: int,
    workers: int,
) -> float:
    """Environments per second through the bare lease + two applies, on `workers` threads."""
    engine = make_engine(
        url, pool_size=workers + 2, application_name="remotegpu-bench-ceiling", pre_ping=False
    )
    elector = LeaderElector(url, shard=CEILING_SHARD, identity="bench-ceiling")
    try:
        _seed_scheduled(engine, workspace, user, spec, envs)
        if not elector.campaign() or elector.epoch is None:
            raise RuntimeError("the ceiling's shard has another leader")
        # No resync while it runs: a run of 10,000 outlasts the default, and a running environment
        # leased again for its resync would be taken for one to provision.
        settings = Settings(reconcile_workers=workers, resync_seconds=3600)
        ctx = ReconcilerContext(
            engine, InMemoryCluster(), settings, "bench-ceiling", shard=CEILING_SHARD, epoch=elector.epoch
        )
        done = 0
        leased: list[Lease] = []
        turn = threading.Lock()

        def work() -> None:
            # As the loop does: one lease statement for as many environments as there are workers.
            nonlocal done
            while True:
                with turn:
                    if not leased:
                        leased.extend(fetch_leases(ctx, workers))
                        if not leased:
                            return
                    lease = leased.pop()
                    done += 1
                provisioned = apply(
                    ctx, lease, lease.state, advance(Trigger.PROVISION, "Provisioning"), keep_lease=True
                )
                assert provisioned is not None, "a kept lease gives the row back"
                apply(ctx, lease, provisioned, advance(Trigger.BECOME_RUNNING, "Running"), keep_lease=False)

        seconds = _in_threads(workers, work)
    finally:
        elector.close()
        engine.dispose()
    if done != envs:
        raise RuntimeError(f"the statements' ceiling ran {done} of {envs} environments")
    return round(envs / seconds, 1)


def _seed_scheduled(
    engine: Engine, workspace: uuid.UUID, user: uuid.UUID, spec: dict[str, Any], envs: int
) -> None:
    """`envs` environments as the scheduling pass leaves them (`scheduled`), on the ceiling's shard."""
    with engine.begin() as connection:
        ids = [
            submit_environment(
                connection,
                workspace_id=workspace,
                user_id=user,
                spec=parse_spec(spec | {"name": f"ceiling-{i}"}),
            )
            for i in range(envs)
        ]
        connection.execute(
            text(
                "UPDATE environments SET phase = :phase, shard = :shard,"
                " observed_generation = generation, seen_desired_version = desired_version"
                " WHERE id = ANY(:ids)"
            ),
            {"phase": Phase.SCHEDULED.value, "shard": CEILING_SHARD, "ids": ids},
        )


def free_gpu_nodes(engine: Engine) -> list[str]:
    """One node name per GPU that no environment claims, by node."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT h.name FROM gpus g JOIN hosts h ON h.id = g.host_id"
                    " WHERE NOT EXISTS (SELECT 1 FROM gpu_claims c WHERE c.gpu_id = g.id AND c.released_at IS NULL)"
                    " ORDER BY h.name, g.index"
                )
            ).scalars()
        )


def cluster_envs_per_s(
    kubeconfig: str,
    workspace: uuid.UUID,
    spec: dict[str, Any],
    nodes: list[str],
    *,
    envs: int,
    workers: int,
    namespace: str = "default",
) -> float:
    """Environments per second through the bare create Service + create Pod + read Pod, on `workers`
    threads sharing one client (as the reconciler's workers share its driver)."""
    if not nodes:
        raise RuntimeError("no node has a free GPU for the cluster calls' ceiling")
    api = client.CoreV1Api(config.new_client_from_config(kubeconfig))  # type: ignore[no-untyped-call]
    parsed = parse_spec(spec | {"name": "ceiling"})
    wants = resource_requests(parsed)
    workloads = [
        workload_spec(
            uuid.uuid4(),
            workspace,
            1,
            parsed,
            PodPlacement(
                nodes[index % len(nodes)], (), wants.gpu_count, wants.cpu_millis, wants.memory_bytes
            ),
        )
        for index in range(envs)
    ]
    pending = list(reversed(workloads))
    taken = threading.Lock()

    def work() -> None:
        while True:
            with taken:
                if not pending:
                    return
                workload = pending.pop()
            api.create_namespaced_service(namespace, service_manifest(workload), _preload_content=False)  # type: ignore[arg-type]
            api.create_namespaced_pod(namespace, pod_manifest(workload), _preload_content=False)  # type: ignore[arg-type]
            pod: Any = api.read_namespaced_pod(workload.name, namespace, _preload_content=False)
            json.loads(pod.data)

    seconds = _in_threads(workers, work)
    return round(envs / seconds, 1)
