"""The faults of a chaos run, drawn from a seeded schedule, each undone after it has had its effect."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from remotegpu.ops.chaos.stack import ChaosStack, Managed
from remotegpu.ops.simcluster.kubelets import PODS
from remotegpu.reconciler.loop import HOST_SYNC_SECONDS

LEASE_S = 5.0
"""The run's `lease_seconds` (`stack.SETTINGS`): a pause must outlast it to matter."""

NODE_GONE_S = HOST_SYNC_SECONDS * 1.5
"""A deleted node stays away past a host sync, so the reconciler sees it gone."""


def _kill_and_restart(stack: ChaosStack, replica: Managed | None, role: str) -> str:
    """kill -9 of the replica's process group; it is started again (as a supervisor would)."""
    if replica is None:
        return f"kill -9 {role}: none right now (skipped)"
    replica.signal(signal.SIGKILL)
    assert replica.process is not None
    replica.process.wait(timeout=10)
    replica.start(stack.env())
    return f"kill -9 {role} {replica.name}, restarted"


def kill_leader(stack: ChaosStack) -> str:
    """kill -9 of the leader."""
    return _kill_and_restart(stack, stack.leader(), "leader")


def kill_follower(stack: ChaosStack) -> str:
    """kill -9 of a replica that does not lead."""
    leader = stack.leader()
    return _kill_and_restart(
        stack, next((replica for replica in stack.replicas if replica is not leader), None), "follower"
    )


def pause_leader(stack: ChaosStack) -> str:
    """SIGSTOP of the leader past its lease, then SIGCONT: a stale leader wakes up and must be fenced."""
    leader = stack.leader()
    if leader is None:
        return "pause leader: no leader right now (skipped)"
    leader.signal(signal.SIGSTOP)
    time.sleep(LEASE_S * 1.5)
    leader.signal(signal.SIGCONT)
    return f"SIGSTOP leader {leader.name} for {LEASE_S * 1.5:g} s, then SIGCONT"


def cut_connections(stack: ChaosStack) -> str:
    """`pg_terminate_backend` of every reconciler and API connection."""
    cut = stack.terminate_backends("remotegpu-reconciler") + stack.terminate_backends("remotegpu-api")
    return f"pg_terminate_backend of {cut} reconciler and API connections"


def restart_postgres(stack: ChaosStack) -> str:
    """The database server stops and starts again: every connection breaks at once."""
    stack.restart_postgres()
    return "Postgres restarted"


def cluster_errors(stack: ChaosStack) -> str:
    """The cluster answers 5xx to the next requests, then slowly, then normally again."""
    stack.cluster.fail_requests(count=25)
    stack.cluster.slow_down(200)
    time.sleep(3)
    stack.cluster.slow_down(0)
    return "cluster: 25 answers 5xx, 3 s of 200 ms answers"


def node_not_ready(stack: ChaosStack) -> str:
    """A node turns NotReady for a while, then Ready again."""
    stack.cluster.set_node_ready("chaos-node-1", False)
    time.sleep(4)
    stack.cluster.set_node_ready("chaos-node-1", True)
    return "node chaos-node-1 NotReady for 4 s"


def delete_node(stack: ChaosStack) -> str:
    """The busiest node is deleted with its pods (a machine gone), past a host sync, then rejoins."""
    cluster = stack.cluster
    pods, _ = cluster.store.list(PODS, None, lambda pod: bool(pod.get("spec", {}).get("nodeName")))
    load = Counter(pod["spec"]["nodeName"] for pod in pods)
    node = load.most_common(1)[0][0] if load else "chaos-node-2"
    removed = cluster.delete_node(node)
    time.sleep(NODE_GONE_S)
    cluster.restore_node(removed)
    return f"node {node} deleted with its {load[node]} pods for {NODE_GONE_S:g} s, then rejoined"


def drop_watches(stack: ChaosStack) -> str:
    """Every watch stream the cluster serves ends at once (the reconcilers must watch again)."""
    return f"cluster: {stack.cluster.drop_watches()} watch streams dropped"


def gpu_unhealthy(stack: ChaosStack) -> str:
    """A claimed GPU is marked unhealthy by an admin for a while, then healthy again."""
    with stack.admin_client() as admin:
        listed = admin.get("/gpus")
        if listed.status_code != 200:  # the API may be answering 503 while the database comes back
            return f"GPU unhealthy: the API answered {listed.status_code} (skipped)"
        gpus = listed.json()
        target = next((gpu for gpu in gpus if gpu.get("environment_id")), None) or gpus[0]
        admin.post(f"/gpus/{target['id']}/health", json={"health": "unhealthy", "reason": "chaos: XID 79"})
        time.sleep(3)
        admin.post(f"/gpus/{target['id']}/health", json={"health": "healthy"})
    return f"GPU {target['id']} unhealthy for 3 s"


FAULTS: dict[str, Callable[[ChaosStack], str]] = {
    "drop-watches": drop_watches,
    "gpu-unhealthy": gpu_unhealthy,
    "kill-leader": kill_leader,
    "kill-follower": kill_follower,
    "pause-leader": pause_leader,
    "cut-connections": cut_connections,
    "restart-postgres": restart_postgres,
    "cluster-errors": cluster_errors,
    "node-not-ready": node_not_ready,
    "delete-node": delete_node,
}


@dataclass(frozen=True)
class Scheduled:
    """A fault and when (seconds after the churn began) it strikes."""

    at_s: float
    kind: str


def schedule(seed: int, duration_s: float, count: int) -> list[Scheduled]:
    """`count` faults spread over `duration_s`: every kind once before any repeats, in a seeded order,
    at seeded moments in evenly spaced slots."""
    rng = random.Random(seed)
    kinds: list[str] = []
    while len(kinds) < count:
        batch = list(FAULTS)
        rng.shuffle(batch)
        kinds += batch
    slot = duration_s / count
    return [
        Scheduled(index * slot + rng.uniform(0.2, 0.8) * slot, kind)
        for index, kind in enumerate(kinds[:count])
    ]
