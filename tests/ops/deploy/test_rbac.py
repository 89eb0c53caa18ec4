"""The deployment's RBAC grants each component exactly the verbs its Kubernetes calls need.

What is needed is derived from the code, not written down twice: the driver methods each component
calls are read from its source (every attribute access in `reconciler/` or `api/` that names a method of
`KubernetesCluster`), each is driven end to end against the simulated cluster, and the cluster records
every request as the API server's RBAC authorizer sees it (verb, group, resource, namespace). The test
fails when a Role lacks a verb a call needs, grants one no call uses, or when a component starts calling
a driver method this test does not drive.
"""

from __future__ import annotations

import ast
import base64
import datetime as dt
import functools
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from remotegpu.core.capacity.requests import ClaimedPort
from remotegpu.core.cluster.driver import DatasetSyncJob, VolumeSpec, WorkloadSpec
from remotegpu.core.cluster.kubernetes.client import api_client_from_kubeconfig
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.environments.states import PortPurpose, Protocol
from remotegpu.core.inventory.gpu_report import GpuReading
from remotegpu.core.registry.credentials import PullSecret
from remotegpu.ops.agent.publisher import NodeAnnotations
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.ops.simcluster.server import Access
from remotegpu.ops.simcluster.store import BY_PATH
from remotegpu.tests.ops.deploy.rendering import find, render
from remotegpu.tests.polling import poll_until

ROOT = Path(__file__).resolve().parents[3]
Grant = tuple[str, str, str, str | None]
"""(verb, group, resource, namespace of a Role; None for a ClusterRole)."""

COMPONENTS = {
    "remotegpu-reconciler": ("reconciler", "ops/reconciler_runner.py"),
    "remotegpu-api": ("api", "ops/api_server.py"),
}
"""Service account → the code that runs under it."""


def driver_methods_called(sources: Iterable[str]) -> set[str]:
    """Public `KubernetesCluster` methods named anywhere in these folders or files."""
    methods = {
        name
        for name, value in vars(KubernetesCluster).items()
        if callable(value) and not name.startswith("_")
    }
    called: set[str] = set()
    for source in sources:
        path = ROOT / source
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in methods:
                    called.add(node.attr)
    return called


def granted(objects: tuple[dict[str, Any], ...], service_account: str) -> set[Grant]:
    """Every (verb, group, resource, namespace) the rendered bindings give one service account."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}
    grants: set[Grant] = set()
    for binding in (o for o in objects if o["kind"] in {"RoleBinding", "ClusterRoleBinding"}):
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == service_account for s in binding["subjects"]
        ):
            continue
        namespace = binding["metadata"].get("namespace")  # None: a ClusterRoleBinding
        ref = binding["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        for rule in role["rules"]:
            assert "resourceNames" not in rule
            assert "*" not in rule["verbs"] + rule["resources"]
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    grants.update((verb, group, resource, namespace) for verb in rule["verbs"])
    return grants


def uncovered(needed: set[Access], grants: set[Grant]) -> set[Access]:
    """Requests no grant allows (a ClusterRole allows its verbs in every namespace too)."""
    return {a for a in needed if a not in grants and (a[0], a[1], a[2], None) not in grants}


# -- driving each driver method against the simulated cluster -------------------------------------------
SPEC = WorkloadSpec(
    environment_id=uuid.UUID("00000000-0000-0000-0000-0000000000e1"),
    workspace_id=uuid.UUID("00000000-0000-0000-0000-0000000000a1"),
    generation=1,
    node="gpu-node-0",
    image="pytorch:24.05",
    command=("sleep", "infinity"),
    gpu_count=1,
    cpu_millis=1000,
    memory_bytes=1 << 30,
    ports=(
        ClaimedPort(22, 30022, Protocol.TCP, PortPurpose.SSH),
        ClaimedPort(8888, 30023, Protocol.TCP, PortPurpose.JUPYTER),
    ),
    volumes=(VolumeSpec("data", 1 << 30, "/workspace"),),
    env=(("WANDB_MODE", "offline"),),
)


def _registry_login(secret: PullSecret, _image: str) -> PullSecret:
    return secret


class _Drive:
    """One driver per step, so caches never hide a request (a restarted replica has none either)."""

    def __init__(self, sim: SimulatedCluster, kubeconfig: Path, namespace: str) -> None:
        self.sim, self.kubeconfig, self.namespace = sim, kubeconfig, namespace
        self.credentials = '{"auths": {"registry.example.org": {"auth": "dXNlcjpvbmU="}}}'

    def driver(self) -> KubernetesCluster:
        return KubernetesCluster.from_kubeconfig(
            str(self.kubeconfig), namespace=self.namespace, registry_credentials=lambda: self.credentials
        )

    def ensure_workload(self) -> None:
        assert self.driver().ensure_workload(SPEC)
        self.credentials = '{"auths": {"registry.example.org": {"auth": "dXNlcjp0d28="}}}'
        assert not self.driver().ensure_workload(SPEC)  # the pull Secret is replaced with the new login

    def use_pull_secrets(self) -> None:
        """The image's registry has a login of its own: its pull Secret is written, then replaced."""
        for login in ("dXNlcjpvbmU=", "dXNlcjp0d28="):
            config = f'{{"auths": {{"harbor.example.org": {{"auth": "{login}"}}}}}}'
            driver = self.driver()
            driver.use_pull_secrets(
                functools.partial(_registry_login, PullSecret("remotegpu-pull-harbor", config))
            )
            driver.ensure_workload(SPEC)
        stored = self.sim.store.get(BY_PATH[("", "v1", "secrets")], self.namespace, "remotegpu-pull-harbor")
        assert "dXNlcjp0d28=" in base64.b64decode(stored["data"][".dockerconfigjson"]).decode()

    def ensure_environment_secret(self) -> None:
        for keys in ("ssh-ed25519 AAAA one\n", "ssh-ed25519 AAAA two\n"):  # created, then replaced
            self.driver().ensure_environment_secret(
                SPEC.environment_id, SPEC.workspace_id, "ssh", {"authorized_keys": keys}
            )
        self.driver().ensure_environment_secret(
            SPEC.environment_id, SPEC.workspace_id, "jupyter", {"JUPYTER_TOKEN": "a-token"}
        )

    def observe_workload(self) -> None:
        poll_until(
            lambda: self.driver().observe_workload(SPEC.environment_id).state.value == "running",
            20,
            "the pod to run",
        )

    def node_ready(self) -> None:
        assert self.driver().node_ready("gpu-node-0")

    def list_nodes(self) -> None:
        assert [node.name for node in self.driver().list_nodes()] == ["gpu-node-0"]

    def owned_objects(self) -> None:
        assert self.driver().owned_objects()

    def watch_workloads(self) -> None:
        stop, seen = threading.Event(), threading.Event()
        watching = threading.Thread(target=self.driver().watch_workloads, args=(lambda _id: seen.set(), stop))
        watching.start()
        try:
            poll_until(seen.is_set, 20, "the watch to report the pod")
        finally:
            stop.set()
            watching.join(timeout=10)

    def stream_logs(self) -> None:
        self.sim.write_log(SPEC.name, "hello", self.namespace)
        assert "hello" in list(self.driver().stream_logs(SPEC.environment_id))

    def delete_object(self) -> None:
        assert self.driver().delete_object("configmap", self.namespace, f"{SPEC.name}-env")

    def ensure_dataset_sync(self) -> None:
        """An S3 dataset's claim and sync Job for the environment, created, then found."""
        job = DatasetSyncJob(
            environment_id=SPEC.environment_id,
            workspace_id=SPEC.workspace_id,
            dataset_id=uuid.UUID("00000000-0000-0000-0000-0000000000d1"),
            source="s3://datasets/corpus/",
            size_bytes=1 << 20,
            image="ghcr.io/remotegpu/remotegpu:0.1.0",
            credentials_secret=f"{SPEC.name}-dataset-s3",
        )
        self.driver().ensure_dataset_sync(job)
        self.driver().ensure_dataset_sync(job)

    def delete_workload(self) -> None:
        assert self.driver().delete_workload(SPEC.environment_id, keep_volumes=False)


ORDER = (
    "ensure_environment_secret",
    "ensure_workload",
    "use_pull_secrets",
    "observe_workload",
    "node_ready",
    "list_nodes",
    "owned_objects",
    "watch_workloads",
    "stream_logs",
    "delete_object",
    "ensure_dataset_sync",
    "delete_workload",
)
"""The life of an environment, so each step finds what the one before made."""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[Access]]:
    """Driver method → the requests it made, each driven once in an environment's order."""
    settings = find(render("production"), "ConfigMap", "remotegpu-settings")["data"]
    namespace = settings["REMOTEGPU_KUBERNETES_NAMESPACE"]
    with SimulatedCluster(NodeTemplate(count=1, gpus=2), start_delay=dt.timedelta(seconds=0.05)) as sim:
        sim.store.create(BY_PATH[("", "v1", "namespaces")], None, {"metadata": {"name": namespace}})
        drive = _Drive(sim, sim.write_kubeconfig(tmp_path_factory.mktemp("rbac") / "kubeconfig"), namespace)
        requests: dict[str, set[Access]] = {}
        for method in ORDER:
            sim.forget_requests()
            step: Callable[[], None] = getattr(drive, method)
            step()
            requests[method] = sim.forget_requests()
        return requests


@pytest.mark.parametrize("service_account", sorted(COMPONENTS))
def test_the_role_grants_exactly_what_the_driver_calls_of_the_component_need(
    service_account: str, recorded: dict[str, set[Access]]
) -> None:
    called = driver_methods_called(COMPONENTS[service_account])
    assert called, f"{service_account}: no driver call found in {COMPONENTS[service_account]}"
    assert called <= set(recorded), (
        f"driver calls this test does not drive yet: {sorted(called - set(recorded))}"
    )
    needed = set().union(*(recorded[method] for method in called))
    grants = granted(render("production"), service_account)
    assert not uncovered(needed, grants), (
        f"{service_account}'s role lacks: {sorted(uncovered(needed, grants))}"
    )
    unused = {g for g in grants if g not in needed}
    assert not unused, f"{service_account}'s role grants what no call uses: {sorted(unused, key=str)}"


def test_every_overlay_binds_the_same_roles() -> None:
    for service_account in COMPONENTS:
        assert granted(render("dev"), service_account) == granted(render("production"), service_account)


def test_the_agent_s_role_grants_exactly_what_publishing_a_report_needs(tmp_path: Path) -> None:
    """The agent reads its node and patches its annotations: written once, then found unchanged."""
    with SimulatedCluster(NodeTemplate(count=1, gpus=1)) as sim:
        publisher = NodeAnnotations(
            api_client_from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kc"))), "gpu-node-0"
        )
        readings = [GpuReading(0, "GPU-00000000-1111-2222-3333-444444444444", "NVIDIA H100 80GB HBM3", 81559)]
        sim.forget_requests()
        assert publisher.publish(readings)
        assert not publisher.publish(readings)
        needed = sim.forget_requests()
    grants = granted(render("production"), "remotegpu-agent")
    assert not uncovered(needed, grants), f"the agent's role lacks: {sorted(uncovered(needed, grants))}"
    assert {g for g in grants if g not in needed} == set(), "the agent's role grants what it never uses"
