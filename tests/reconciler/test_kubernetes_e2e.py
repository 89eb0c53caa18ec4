"""End to end over HTTP: reconciler → Kubernetes driver (official client) → simulated cluster."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.accounts.ssh_keys import add_ssh_key, remove_ssh_key
from remotegpu.core.capacity.audit import audit
from remotegpu.core.cluster.driver import NoContainerError
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.environments.desired import set_desired_state, submit_environment
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.environments.views import access_details
from remotegpu.core.inventory.addresses import PUBLIC_ADDRESS_ANNOTATION
from remotegpu.core.inventory.sync import sync_inventory
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.builtin import EncryptedSecretStore
from remotegpu.core.secrets.registry_credentials import (
    REGISTRY_CREDENTIALS,
    CachedRegistryCredentials,
    docker_config_for,
)
from remotegpu.core.secrets.store import SecretScope
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.reconciler.gc import collect_garbage
from remotegpu.reconciler.hosts import sync_host_health
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.allocation_world import make_user, make_workspace
from remotegpu.tests.core.test_ssh_keys import ed25519_line
from remotegpu.tests.polling import poll_until
from remotegpu.tests.secrets_world import builtin_store
from remotegpu.tests.specs import environment_spec

SPEC: dict[str, Any] = {
    "image": "harbor.example.org/ml/pytorch:24.05-cuda12",
    "command": ["sleep", "infinity"],
    "resources": {"gpus": {"count": 2, "model": "H100"}, "cpu": 8, "memory": "64Gi"},
    "access": ["ssh", "jupyter"],
    "volumes": [{"name": "data", "size": "100Gi", "mount": "/workspace"}],
}


@dataclass
class Stack:
    engine: Engine
    sim: SimulatedCluster
    driver: KubernetesCluster
    api: client.CoreV1Api
    reconciler: Reconciler
    workspace: uuid.UUID
    user: uuid.UUID
    secrets: EncryptedSecretStore

    def submit(self, name: str, spec: dict[str, Any] | None = None) -> uuid.UUID:
        with self.engine.begin() as connection:
            return submit_environment(
                connection,
                workspace_id=self.workspace,
                user_id=self.user,
                spec=environment_spec(name, SPEC if spec is None else spec),
            )

    def desire(self, env: uuid.UUID, state: DesiredState) -> None:
        with self.engine.begin() as connection:
            set_desired_state(connection, env, state)

    def row(self, env: uuid.UUID) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT e.phase, e.reason, h.name AS host FROM environments e"
                    " LEFT JOIN hosts h ON h.id = e.host_id WHERE e.id = :id"
                ),
                {"id": env},
            ).one()

    def converge(
        self, check: Callable[[], bool], timeout_s: float = 20, what: str = "the environment to converge"
    ) -> None:
        """Run the reconciler until `check` holds; the simulated kubelet works in real time, so poll."""

        def reconciled() -> bool:
            self.reconciler.run_until_idle()
            return check()

        poll_until(reconciled, timeout_s, what, interval_s=0.05)

    def column(self, env: uuid.UUID, name: str) -> Any:
        with self.engine.connect() as connection:
            query = text(f"SELECT {name} FROM environments WHERE id = :e")
            return connection.execute(query, {"e": env}).scalar_one()

    def phase_is(self, env: uuid.UUID, phase: str) -> Callable[[], bool]:
        return lambda: self.row(env).phase == phase

    def pods(self) -> list[client.V1Pod]:
        return list(
            self.api.list_namespaced_pod(
                "default", label_selector="app.kubernetes.io/managed-by=remotegpu"
            ).items
        )


@contextlib.contextmanager
def running_stack(
    engine: Engine,
    database_url: URL,
    tmp_path: Path,
    *,
    nodes: int = 2,
    settings: Settings | None = None,
    identity: str = "e2e",
) -> Iterator[Stack]:
    """A simulated cluster of `nodes` H100 nodes synced into the inventory, a user with a workspace, and
    a reconciler driving the cluster through the Kubernetes driver; all stopped on exit."""
    template = NodeTemplate(count=nodes, gpus=8, model="H100")
    with SimulatedCluster(template, start_delay=dt.timedelta(milliseconds=50)) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        driver = KubernetesCluster.from_kubeconfig(str(kubeconfig))
        with engine.begin() as connection:
            sync_inventory(connection, driver.list_nodes())
            user = make_user(connection)
            workspace = make_workspace(connection, user)
        api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        secrets = builtin_store(engine)
        reconciler = Reconciler(
            database_url, driver, settings or Settings(), identity=identity, listen=False, secrets=secrets
        )
        made = Stack(engine, sim, driver, api, reconciler, workspace, user, secrets)
        try:
            yield made
        finally:
            made.reconciler.close()  # the one the test left in place (a test may replace it)


@pytest.fixture
def stack(engine: Engine, database_url: URL, sessions: object, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(engine, database_url, tmp_path) as made:
        yield made
    with engine.connect() as connection:
        assert audit(connection) == []


def test_inventory_comes_from_the_nodes(stack: Stack) -> None:
    with stack.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT h.name, count(g.id) FROM hosts h JOIN gpus g ON g.host_id = h.id GROUP BY h.name ORDER BY h.name"
            )
        ).all()
        models = set(connection.execute(text("SELECT DISTINCT model FROM gpus")).scalars())
    assert [tuple(r) for r in rows] == [("gpu-node-0", 8), ("gpu-node-1", 8)]
    assert models == {"H100"}


def test_environment_runs_stops_keeps_its_volume_starts_again_and_is_deleted(stack: Stack) -> None:
    env = stack.submit("train")
    stack.converge(stack.phase_is(env, "running"))
    (pod,) = stack.pods()
    assert pod.spec.node_name == stack.row(env).host
    container = pod.spec.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "2"
    with stack.engine.connect() as connection:
        mapped = set(
            connection.execute(
                text("SELECT container_port, host_port FROM port_mappings WHERE released_at IS NULL")
            ).all()
        )
    assert {(p.container_port, p.host_port) for p in container.ports} == {tuple(m) for m in mapped}
    assert "Started container main" in stack.driver.read_logs(env)
    claim_uid = stack.api.read_namespaced_persistent_volume_claim(f"env-{env}-data", "default").metadata.uid

    stack.desire(env, DesiredState.STOPPED)
    stack.converge(stack.phase_is(env, "stopped"))
    assert stack.pods() == []
    assert stack.driver.volume_claim_exists(env, "data"), "stop keeps the persistent volume"

    stack.desire(env, DesiredState.RUNNING)
    stack.converge(stack.phase_is(env, "running"))
    assert (
        stack.api.read_namespaced_persistent_volume_claim(f"env-{env}-data", "default").metadata.uid
        == claim_uid
    )

    stack.desire(env, DesiredState.DELETED)
    stack.converge(stack.phase_is(env, "deleted"))
    assert stack.pods() == []
    assert not stack.driver.volume_claim_exists(env, "data")
    assert stack.api.list_namespaced_service("default").items == []


@pytest.mark.parametrize(("fault", "reason"), [("image", "ImagePullBackOff"), ("oom", "OOMKilled")])
def test_pod_faults_surface_as_readable_reasons(stack: Stack, fault: str, reason: str) -> None:
    image = f"faulty-{fault}:1"
    if fault == "image":
        stack.sim.fail_image_pulls(image)
    else:
        stack.sim.crash(image, oom=True)
    env = stack.submit("faulty", {**SPEC, "image": image})
    stack.converge(lambda: stack.row(env).reason == reason)
    assert stack.row(env).phase == "provisioning", "a temporary failure is retried, not failed at once"


def test_a_node_going_not_ready_moves_the_environment_elsewhere(stack: Stack) -> None:
    env = stack.submit("moving")
    stack.converge(stack.phase_is(env, "running"))
    first = stack.row(env).host
    stack.sim.set_node_ready(first, False)
    down_after = dt.timedelta(seconds=stack.reconciler.ctx.settings.host_down_after_seconds)
    with clock.frozen_at(clock.now() + down_after + dt.timedelta(seconds=1)):  # its heartbeat is stale now
        sync_host_health(stack.reconciler.ctx)
    stack.converge(lambda: stack.row(env).phase == "running" and stack.row(env).host not in (None, first))
    assert [p.spec.node_name for p in stack.pods()] == [stack.row(env).host]


def test_a_host_sync_writes_each_host_row_once_and_none_of_an_unchanged_cluster_seconds_later(
    stack: Stack,
) -> None:
    stack.reconciler.run_until_idle()  # leads: the sync's writes are fenced by its epoch
    ctx = stack.reconciler.ctx

    def hosts() -> list[tuple[str, str, str, dt.datetime]]:
        with stack.engine.connect() as connection:
            return [
                (row.name, row.version, row.health, row.last_heartbeat_at)
                for row in connection.execute(
                    text(
                        "SELECT name, xmin::text AS version, health, last_heartbeat_at FROM hosts ORDER BY name"
                    )
                )
            ]

    later = clock.now() + dt.timedelta(minutes=1)
    with clock.frozen_at(later):  # every heartbeat is old: each host row is written, once
        sync_host_health(ctx)
    synced = hosts()
    assert synced
    assert all(health == "ready" and beat == later for _, _, health, beat in synced)
    with clock.frozen_at(later + dt.timedelta(seconds=2)):  # nothing changed, heartbeats fresh
        sync_host_health(ctx)
    assert hosts() == synced, "no host row rewritten"
    with clock.frozen_at(later + dt.timedelta(seconds=6)):
        sync_host_health(ctx)
    assert [beat for *_, beat in hosts()] == [later + dt.timedelta(seconds=6)] * len(synced)


def test_a_restart_mid_provision_creates_no_duplicate_objects(stack: Stack, database_url: URL) -> None:
    env = stack.submit("restarted")
    stack.reconciler.run_until_idle()  # scheduled and the pod created; it may not be running yet
    stack.reconciler.close()
    stack.reconciler = Reconciler(
        database_url, stack.driver, Settings(), identity="e2e-2", listen=False, secrets=stack.secrets
    )
    with stack.engine.begin() as connection:  # the old replica's leases die with it
        connection.execute(text("UPDATE environments SET lock_token = NULL, lock_expires_at = NULL"))
    stack.converge(stack.phase_is(env, "running"))
    assert len(stack.pods()) == 1
    assert len(stack.api.list_namespaced_persistent_volume_claim("default").items) == 1


def _orphan_pod(api: client.CoreV1Api, name: str, environment: uuid.UUID) -> None:
    labels = {"app.kubernetes.io/managed-by": "remotegpu", "remotegpu.io/environment": str(environment)}
    api.create_namespaced_pod(
        "default",
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1PodSpec(containers=[client.V1Container(name="main", image="leftover:1")]),
        ),
    )
    api.create_namespaced_service(
        "default",
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1ServiceSpec(cluster_ip="None"),
        ),
    )


def test_garbage_collection_cleans_every_kind_of_orphan(stack: Stack) -> None:
    # 1. objects of an environment that never existed
    ghost = uuid.uuid4()
    _orphan_pod(stack.api, f"env-{ghost}", ghost)
    # 2. a pod left behind by an environment that is stopped (its volume must stay)
    stopped = stack.submit("stopped")
    stack.converge(stack.phase_is(stopped, "running"))
    stack.desire(stopped, DesiredState.STOPPED)
    stack.converge(stack.phase_is(stopped, "stopped"))
    _orphan_pod(stack.api, f"env-{stopped}", stopped)
    # 3. claims of an environment deleted by a crash between release and delete
    crashed = stack.submit("crashed")
    stack.converge(stack.phase_is(crashed, "running"))
    with stack.engine.begin() as connection:
        connection.execute(
            text("UPDATE environments SET phase = 'deleted', deleted_at = now() WHERE id = :id"),
            {"id": crashed},
        )

    stack.reconciler.run_until_idle()  # takes leadership
    cleaned = collect_garbage(stack.reconciler.ctx)

    # ghost: pod + service; stopped: pod + service (its PVC stays; its Secrets went with the stop);
    # crashed: pod + service + PVC + keys Secret + Jupyter Secret
    assert cleaned == {"objects": 9, "claims": 1, "gateway_connections": 0}
    remaining = {p.metadata.name for p in stack.pods()}
    assert remaining == set(), "the crashed environment's pod goes with its claims' owner"
    assert stack.driver.volume_claim_exists(stopped, "data"), "a stopped environment keeps its volume"
    assert not stack.driver.volume_claim_exists(crashed, "data")
    with stack.engine.connect() as connection:
        active = connection.execute(
            text("SELECT count(*) FROM gpu_claims WHERE released_at IS NULL")
        ).scalar_one()
    assert active == 0
    assert collect_garbage(stack.reconciler.ctx) == {"objects": 0, "claims": 0, "gateway_connections": 0}, (
        "a second pass finds nothing"
    )


def test_a_running_environment_without_its_pod_is_repaired(stack: Stack) -> None:
    stack.reconciler.ctx.settings = Settings(resync_seconds=0.1)
    env = stack.submit("repaired")
    stack.converge(stack.phase_is(env, "running"))
    stack.api.delete_namespaced_pod(f"env-{env}", "default")
    stack.converge(lambda: len(stack.pods()) == 1 and stack.row(env).phase == "running")


def _events(stack: Stack, env: uuid.UUID, reason: str) -> list[Any]:
    with stack.engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT message, data FROM events WHERE environment_id = :e AND reason = :r"),
                {"e": env, "r": reason},
            )
        )


def test_the_devices_the_node_gave_are_recorded_with_the_running_event(stack: Stack) -> None:
    env = stack.submit("bound")
    stack.converge(stack.phase_is(env, "running"))
    (pod,) = stack.pods()
    given = pod.metadata.annotations["remotegpu.io/allocated-gpus"].split(",")
    ((_, data),) = _events(stack, env, "Running")
    assert data["devices"] == given
    with stack.engine.connect() as connection:
        claimed = set(
            connection.execute(
                text(
                    "SELECT g.device_uuid FROM gpu_claims c JOIN gpus g ON g.id = c.gpu_id WHERE c.environment_id = :e AND c.released_at IS NULL"
                ),
                {"e": env},
            ).scalars()
        )
    assert claimed == set(given)
    assert _events(stack, env, "GpuBindingMismatch") == []


def test_device_id_binding_pins_the_pod_to_the_gpus_it_claimed(stack: Stack, database_url: URL) -> None:
    settings = Settings(gpu_binding="device-id")
    by_id = KubernetesCluster(stack.driver._core.api_client, gpu_binding=settings.gpu_binding)
    stack.reconciler.close()
    stack.reconciler = Reconciler(
        database_url, by_id, settings, identity="e2e-device-id", listen=False, secrets=stack.secrets
    )
    env = stack.submit("pinned")
    stack.converge(stack.phase_is(env, "running"))
    (pod,) = stack.pods()
    (container,) = pod.spec.containers
    with stack.engine.connect() as connection:
        claimed = sorted(
            connection.execute(
                text(
                    "SELECT g.device_uuid FROM gpu_claims c JOIN gpus g ON g.id = c.gpu_id"
                    " WHERE c.environment_id = :e AND c.released_at IS NULL"
                ),
                {"e": env},
            ).scalars()
        )
    assert len(claimed) == SPEC["resources"]["gpus"]["count"]
    visible = {e.name: e.value for e in container.env or []}["NVIDIA_VISIBLE_DEVICES"]
    assert visible == ",".join(claimed)
    assert "nvidia.com/gpu" not in (container.resources.limits or {})
    assert pod.spec.runtime_class_name == "nvidia"


def test_a_device_binding_mismatch_is_an_event_and_a_condition(stack: Stack) -> None:
    # A pod that is not ours holds device 0 of every node, so the device plugin gives our pod others.
    for node in ("gpu-node-0", "gpu-node-1"):
        _foreign_pod(stack, node, gpus=1)
    env = stack.submit("mismatched")
    stack.converge(stack.phase_is(env, "running"))
    ((message, data),) = _events(stack, env, "GpuBindingMismatch")
    assert set(data["given"]) != set(data["claimed"])
    with stack.engine.connect() as connection:
        conditions = connection.execute(
            text("SELECT conditions FROM environments WHERE id = :e"), {"e": env}
        ).scalar_one()
    assert [c["reason"] for c in conditions if c["type"] == "GpuBinding"] == ["GpuBindingMismatch"]
    assert "node gave" in message


def test_the_driver_reports_changes_of_our_pods(stack: Stack) -> None:
    changed: list[uuid.UUID] = []
    stop = threading.Event()
    watcher = threading.Thread(target=stack.driver.watch_workloads, args=(changed.append, stop), daemon=True)
    watcher.start()
    try:
        env = stack.submit("watched")
        stack.converge(lambda: env in changed)
    finally:
        stop.set()
        watcher.join(timeout=10)


def test_a_pod_change_makes_its_environment_due_at_the_next_tick(stack: Stack) -> None:
    stack.sim.kubelets.start_delay = dt.timedelta(minutes=10)  # the pod stays Pending for now
    env = stack.submit("nudged")
    stack.reconciler.run_until_idle()
    with stack.engine.begin() as connection:  # not due for an hour
        connection.execute(
            text("UPDATE environments SET next_attempt_at = now() + interval '1 hour' WHERE id = :e"),
            {"e": env},
        )
    steps = stack.reconciler.steps_done
    stack.reconciler.tick()
    assert stack.reconciler.steps_done == steps, "nothing is due yet"
    stack.reconciler.on_pod_change(env)
    stack.reconciler.tick()  # leases it and hands it to a worker
    poll_until(
        lambda: stack.reconciler.steps_done,
        20,
        "the worker's step",
        until=lambda done: done != steps,
        interval_s=0.01,
    )
    assert stack.reconciler.steps_done == steps + 1


def test_gpus_and_host_ports_used_by_pods_that_are_not_ours_are_never_allocated(stack: Stack) -> None:
    for node in ("gpu-node-0", "gpu-node-1"):
        _foreign_pod(stack, node, gpus=3, host_port=30000)
    stack.converge(
        lambda: all(p.status.phase == "Running" for p in stack.api.list_namespaced_pod("default").items)
    )
    stack.reconciler.run_until_idle()  # leadership, so the job below may write
    sync_host_health(stack.reconciler.ctx)
    with stack.engine.connect() as connection:
        pools = connection.execute(text("SELECT total, free FROM gpu_pools ORDER BY host_id")).all()
        foreign = connection.execute(text("SELECT count(*) FROM gpus WHERE foreign_use")).scalar_one()
    assert [tuple(p) for p in pools] == [(5, 5), (5, 5)]
    assert foreign == 6
    env = stack.submit("polite")
    stack.converge(stack.phase_is(env, "running"))
    assert _events(stack, env, "GpuBindingMismatch") == [], "our claims match the devices the node gave"
    with stack.engine.connect() as connection:
        ports = set(
            connection.execute(
                text("SELECT host_port FROM port_mappings WHERE released_at IS NULL")
            ).scalars()
        )
    assert 30000 not in ports


def _foreign_pod(stack: Stack, node: str, *, gpus: int, host_port: int | None = None) -> None:
    """A pod that is not RemoteGPU's, pinned to `node`, holding GPUs (and a host port)."""
    ports = [client.V1ContainerPort(container_port=22, host_port=host_port)] if host_port else None
    container = client.V1Container(
        name="main",
        image="other:1",
        resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
        ports=ports,
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=f"foreign-{node}"),
        spec=client.V1PodSpec(node_name=node, containers=[container]),
    )
    stack.api.create_namespaced_pod("default", pod)


def test_logs_stream_line_by_line_and_pod_events_are_readable(stack: Stack) -> None:
    env = stack.submit("chatty")
    stack.converge(stack.phase_is(env, "running"))
    lines = list(stack.driver.stream_logs(env))
    assert "Started container main" in lines
    assert list(stack.driver.stream_logs(env, tail_lines=1)) == lines[-1:]
    reasons = [event["reason"] for event in stack.driver.pod_events(env)]
    assert reasons[:2] == ["Scheduled", "Started"]
    stack.desire(env, DesiredState.STOPPED)
    stack.converge(stack.phase_is(env, "stopped"))
    # Refused when the stream is opened, not once the lines are read (the API has answered by then).
    with pytest.raises(NoContainerError, match="no running container"):
        stack.driver.stream_logs(env)


def test_environment_variables_live_in_a_config_map_that_goes_with_the_pod(stack: Stack) -> None:
    env = stack.submit("configured", {**SPEC, "env": {"WANDB_MODE": "offline"}})
    stack.converge(stack.phase_is(env, "running"))
    config_map = stack.api.read_namespaced_config_map(f"env-{env}-env", "default")
    assert config_map.data == {"WANDB_MODE": "offline"}
    stack.desire(env, DesiredState.STOPPED)
    stack.converge(stack.phase_is(env, "stopped"))
    assert stack.api.list_namespaced_config_map("default").items == []


@pytest.mark.parametrize("fault", ["crash", "api-5xx"])
def test_crash_loops_and_api_outages_are_retried_not_failed(stack: Stack, fault: str) -> None:
    image = "crashing:1"
    if fault == "crash":
        stack.sim.crash(image)
        env = stack.submit("faulty", {**SPEC, "image": image})
        stack.converge(lambda: stack.row(env).reason == "CrashLoopBackOff")
        assert stack.row(env).phase == "provisioning"
        return
    env = stack.submit("outage")
    stack.sim.fail_requests(count=1000)
    stack.reconciler.run_until_idle()
    stack.converge(lambda: stack.row(env).reason == "ClusterUnavailable")
    stack.sim.fail_requests(count=0)
    with stack.engine.begin() as connection:  # skip the backoff the outage earned
        connection.execute(text("UPDATE environments SET next_attempt_at = now() WHERE id = :e"), {"e": env})
    stack.converge(stack.phase_is(env, "running"))


def test_one_namespace_per_workspace_holds_each_workspace_s_objects(stack: Stack, database_url: URL) -> None:
    per_workspace = KubernetesCluster(stack.driver._core.api_client, namespace_per_workspace=True)
    stack.reconciler.close()
    stack.reconciler = Reconciler(
        database_url, per_workspace, Settings(), identity="e2e-ns", listen=False, secrets=stack.secrets
    )
    env = stack.submit("isolated")
    stack.converge(stack.phase_is(env, "running"))
    namespace = f"rgpu-ws-{stack.workspace}"
    assert [p.metadata.name for p in stack.api.list_namespaced_pod(namespace).items] == [f"env-{env}"]
    policies = client.NetworkingV1Api(stack.api.api_client).list_namespaced_network_policy(namespace).items
    assert [p.metadata.name for p in policies] == [f"ws-{stack.workspace}-isolation"]
    assert stack.pods() == [], "nothing lands in the default namespace"

    restarted = KubernetesCluster(stack.driver._core.api_client, namespace_per_workspace=True)
    assert restarted.namespace_of(env) == namespace, "found again by label after a restart"
    stack.desire(env, DesiredState.DELETED)
    stack.converge(stack.phase_is(env, "deleted"))
    assert stack.api.list_namespaced_pod(namespace).items == []
    assert stack.api.list_namespaced_persistent_volume_claim(namespace).items == []


def test_registry_credentials_are_kept_as_a_pull_secret_in_the_namespace(
    stack: Stack, database_url: URL
) -> None:
    """The credentials come from the secrets store; a change reaches the namespace's pull Secret."""
    store = builtin_store(stack.engine)
    store.put(REGISTRY_CREDENTIALS, json.dumps(docker_config_for("harbor.example.org", "robot", "first")))
    private = KubernetesCluster(
        stack.driver._core.api_client, registry_credentials=CachedRegistryCredentials(store, ttl_seconds=0)
    )
    stack.reconciler.close()
    stack.reconciler = Reconciler(
        database_url, private, Settings(), identity="e2e-pull", listen=False, secrets=stack.secrets
    )

    def pulled_with() -> str:
        secret = stack.api.read_namespaced_secret("remotegpu-pull", "default")
        assert secret.type == "kubernetes.io/dockerconfigjson"
        config = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))
        return base64.b64decode(config["auths"]["harbor.example.org"]["auth"]).decode()

    env = stack.submit("private-image")
    stack.converge(stack.phase_is(env, "running"))
    assert pulled_with() == "robot:first"
    (pod,) = stack.pods()
    assert [s.name for s in pod.spec.image_pull_secrets] == ["remotegpu-pull"]

    store.put(REGISTRY_CREDENTIALS, json.dumps(docker_config_for("harbor.example.org", "robot", "second")))
    second = stack.submit("private-image-2")
    stack.converge(stack.phase_is(second, "running"))
    assert pulled_with() == "robot:second", "the namespace's Secret follows the store"


def test_ssh_commands_name_the_node_s_address_and_the_claimed_port(stack: Stack) -> None:
    with stack.engine.connect() as connection:
        observed = connection.execute(
            text("SELECT name, address, address_source FROM hosts ORDER BY name")
        ).all()
    assert [tuple(r) for r in observed] == [
        ("gpu-node-0", "10.0.0.1", "InternalIP"),
        ("gpu-node-1", "10.0.0.2", "InternalIP"),
    ], "the simulated nodes report an InternalIP and no ExternalIP"

    stack.sim.annotate_node("gpu-node-0", PUBLIC_ADDRESS_ANNOTATION, "gpu0.lab.example.org")
    with stack.engine.begin() as connection:
        sync_inventory(connection, stack.driver.list_nodes())
    expected = {"gpu-node-0": "gpu0.lab.example.org", "gpu-node-1": "10.0.0.2"}

    env = stack.submit("reachable")
    stack.converge(stack.phase_is(env, "running"))
    with stack.engine.connect() as connection:
        environment = connection.execute(
            text("SELECT id, phase FROM environments WHERE id = :id"), {"id": env}
        ).one()
        details = {d.kind: d for d in access_details(connection, environment)}
        claimed: dict[int, int] = dict(
            connection.execute(
                text("SELECT container_port, host_port FROM port_mappings WHERE environment_id = :id"),
                {"id": env},
            ).all()
        )
    address = expected[stack.row(env).host]
    assert details["ssh"].command == f"ssh -p {claimed[22]} root@{address}"
    assert details["jupyter"].url == f"http://{address}:{claimed[8888]}/"
    (pod,) = stack.pods()
    assert {p.container_port: p.host_port for p in pod.spec.containers[0].ports} == claimed, (
        "the command's port is the one the pod publishes on the node"
    )


def _authorized_keys(stack: Stack, env: uuid.UUID) -> list[str]:
    secret = stack.api.read_namespaced_secret(f"env-{env}-ssh", "default")
    return base64.b64decode(secret.data["authorized_keys"]).decode().splitlines()


def test_the_keys_secret_is_mounted_follows_the_keys_and_goes_with_the_environment(
    stack: Stack, database_url: URL
) -> None:
    store = builtin_store(stack.engine)
    stack.reconciler.close()
    stack.reconciler = Reconciler(
        database_url, stack.driver, Settings(), identity="e2e-keys", listen=False, secrets=store
    )
    keep, drop = ed25519_line("keep"), ed25519_line("drop")
    with stack.engine.begin() as connection:
        add_ssh_key(connection, stack.user, keep)
        dropped = add_ssh_key(connection, stack.user, drop)
    env = stack.submit("reachable")
    stack.converge(stack.phase_is(env, "running"))
    lines = _authorized_keys(stack, env)
    assert sorted(lines[:-1]) == sorted([keep, drop])
    assert lines[-1].startswith("ssh-ed25519 ")
    assert lines[-1].endswith(" remotegpu-platform")
    (pod,) = stack.pods()
    mounted = {v.name: v.secret.secret_name for v in pod.spec.volumes if v.secret}
    assert mounted == {"ssh-keys": f"env-{env}-ssh"}

    with stack.engine.begin() as connection:
        remove_ssh_key(connection, stack.user, dropped.id)
        # the next resync, now rather than in resync_seconds
        connection.execute(text("UPDATE environments SET next_attempt_at = now() WHERE id = :e"), {"e": env})
    stack.converge(lambda: _authorized_keys(stack, env)[:-1] == [keep])
    assert _authorized_keys(stack, env)[-1] == lines[-1], "the platform key stays the same"

    stack.desire(env, DesiredState.DELETED)
    stack.converge(stack.phase_is(env, "deleted"))
    assert (
        stack.api.list_namespaced_secret("default", label_selector=f"remotegpu.io/environment={env}").items
        == []
    )
    assert store.list(SecretScope.workspace(stack.workspace)) == [], "the platform key is deleted too"


def test_garbage_collection_deletes_the_platform_key_of_a_crashed_delete(
    stack: Stack, database_url: URL
) -> None:
    store = builtin_store(stack.engine)
    stack.reconciler.close()
    stack.reconciler = Reconciler(
        database_url, stack.driver, Settings(), identity="e2e-gc-keys", listen=False, secrets=store
    )
    env = stack.submit("crashed")
    stack.converge(stack.phase_is(env, "running"))
    assert sorted(store.list(SecretScope.workspace(stack.workspace))) == [
        f"env-{env}-jupyter-token",
        f"env-{env}-platform-key",
    ]
    with stack.engine.begin() as connection:
        connection.execute(
            text("UPDATE environments SET phase = 'deleted', deleted_at = now() WHERE id = :id"), {"id": env}
        )
    stack.reconciler.run_until_idle()  # takes leadership
    collect_garbage(stack.reconciler.ctx)
    assert (
        stack.api.list_namespaced_secret("default", label_selector=f"remotegpu.io/environment={env}").items
        == []
    )
    assert store.list(SecretScope.workspace(stack.workspace)) == []
