"""`SimulatedCluster`: nodes, the API server and the kubelets together, with a kubeconfig for clients.

Node addresses: every node reports a `Hostname` and a distinct `InternalIP` in 10.0.0.0/16 (the n-th
node of the cluster gets 10.0.n//254.n%254+1), as a node on a private network does. A template's
`external_address` adds an `ExternalIP` to its nodes: `remotegpu dev` gives its nodes 127.0.0.1, so the
SSH command `remotegpu access` prints points at the local machine. The annotation
`remotegpu.io/public-address` (`annotate_node`, or `kubectl annotate node`) overrides both for inventory
sync, as it does on a real cluster; the simulated cluster only stores it.

GPUs: each node carries the annotations RemoteGPU's host agent publishes from NVML (UUID, model,
memory, health per GPU; `core.inventory.gpu_report`); `report_gpu` turns one unhealthy or removes it, as
the agent reports a GPU with XID errors or one that fell off the bus.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from remotegpu.core.inventory.gpu_report import (
    GpuReading,
    readings_from_annotations,
    report_annotations,
)
from remotegpu.ops.simcluster.dcgm import UTILISATION_ANNOTATION
from remotegpu.ops.simcluster.jobs import JobController
from remotegpu.ops.simcluster.kubelets import NODES, PODS, Faults, Kubelets, device_uuid
from remotegpu.ops.simcluster.server import DCGM_PATH, Access, SimulatedApiServer
from remotegpu.ops.simcluster.store import BY_PATH, ApiError, Obj, Store, now_iso


@dataclass(frozen=True)
class NodeTemplate:
    """How many nodes of which shape."""

    count: int = 8
    gpus: int = 8
    model: str = "H100"
    gpu_memory_mib: int = 81920
    cpu: int = 128
    memory_gib: int = 1024
    prefix: str = "gpu-node"
    external_address: str | None = None
    """An `ExternalIP` every node of the template reports (none by default: InternalIP only)."""


def internal_ip(ordinal: int) -> str:
    """The `InternalIP` of the cluster's `ordinal`-th node (from 0): distinct up to 65,024 nodes."""
    return f"10.0.{ordinal // 254}.{ordinal % 254 + 1}"


def node_object(name: str, template: NodeTemplate, ordinal: int = 0) -> dict[str, object]:
    """A Node as a GPU node with the NVIDIA device plugin and GPU feature discovery reports it; the
    `ordinal`-th node of the cluster (it picks the node's InternalIP)."""
    addresses = [
        {"type": "Hostname", "address": name},
        {"type": "InternalIP", "address": internal_ip(ordinal)},
    ]
    if template.external_address:
        addresses.append({"type": "ExternalIP", "address": template.external_address})
    capacity = {
        "cpu": str(template.cpu),
        "memory": f"{template.memory_gib}Gi",
        "nvidia.com/gpu": str(template.gpus),
        "pods": "110",
    }
    return {
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.product": template.model,
                "nvidia.com/gpu.memory": str(template.gpu_memory_mib),
                "nvidia.com/gpu.count": str(template.gpus),
            },
            # what RemoteGPU's host agent publishes on a real node (core.inventory.gpu_report)
            "annotations": report_annotations(
                [
                    GpuReading(i, device_uuid(name, i), template.model, template.gpu_memory_mib)
                    for i in range(template.gpus)
                ]
            ),
        },
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": now_iso(),
                    "lastTransitionTime": now_iso(),
                }
            ],
            "addresses": addresses,
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": device_uuid(name, 9999)[4:],
                "containerRuntimeVersion": "sim://1",
                "kernelVersion": "6.1.0-sim",
                "kubeProxyVersion": "v1.31.0",
                "kubeletVersion": "v1.31.0-remotegpu-sim",
                "machineID": device_uuid(name, 9998)[4:].replace("-", ""),
                "operatingSystem": "linux",
                "osImage": "RemoteGPU simulated node",
                "systemUUID": device_uuid(name, 9997)[4:],
            },
        },
    }


class SimulatedCluster:
    """A whole simulated cluster; `start()` serves it on 127.0.0.1, `stop()` shuts it down."""

    def __init__(
        self,
        nodes: NodeTemplate | list[NodeTemplate] = NodeTemplate(),
        *,
        start_delay: dt.timedelta = dt.timedelta(seconds=1),
        port: int = 0,
        failing_images: Iterable[str] = (),
        volumes: Path | None = None,
    ) -> None:
        """`failing_images`: images (or repositories) whose pulls fail, besides any whose repository or
        tag contains `does-not-exist`. `volumes`: a folder standing in for PersistentVolumeClaims' storage,
        where Jobs running our own command (dataset syncs) write (`jobs`); none: every Job just completes."""
        self.store = Store()
        self.faults = Faults(image_pull=set(failing_images))
        self.kubelets = Kubelets(self.store, self.faults, start_delay)
        self.jobs = JobController(self.store, start_delay.total_seconds(), volumes)
        self.server = SimulatedApiServer(("127.0.0.1", port), self.store, self.kubelets, self.faults)
        self._thread: threading.Thread | None = None
        templates = nodes if isinstance(nodes, list) else [nodes]
        ordinal = 0
        for template in templates:
            for index in range(template.count):
                self.store.create(NODES, None, node_object(f"{template.prefix}-{index}", template, ordinal))
                ordinal += 1
        self.store.create(BY_PATH[("", "v1", "namespaces")], None, {"metadata": {"name": "default"}})

    @property
    def url(self) -> str:
        """The API server's base URL."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SimulatedCluster:
        """Serve the API and run the kubelets in background threads."""
        self.kubelets.start()
        self.jobs.start()
        self._thread = threading.Thread(target=self.server.serve_forever, name="sim-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (open watches end) and stop the kubelets."""
        self.server.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.kubelets.stop()
        self.jobs.stop()

    def __enter__(self) -> SimulatedCluster:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path) -> Path:
        """Write a kubeconfig that points `kubectl` and the Python client at this cluster."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "remotegpu-sim", "cluster": {"server": self.url}}],
            "users": [{"name": "remotegpu-sim", "user": {"token": "simulated"}}],
            "contexts": [
                {"name": "remotegpu-sim", "context": {"cluster": "remotegpu-sim", "user": "remotegpu-sim"}}
            ],
            "current-context": "remotegpu-sim",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        return path

    # -- faults -------------------------------------------------------------------------------------
    def fail_image_pulls(self, image: str) -> None:
        """Pods of `image` (a reference, or a repository for all its tags) never pull it (ErrImagePull,
        then ImagePullBackOff)."""
        self.faults.image_pull.add(image)

    def lack_jupyter(self, image: str) -> None:
        """Pods of `image` have no `jupyter`: a Jupyter environment's container runs but fails its
        readiness probe (images whose reference contains `nojupyter` always do)."""
        self.faults.no_jupyter.add(image)

    def write_log(self, pod: str, line: str, namespace: str = "default") -> None:
        """Print `line` in the log of `pod`'s container (followers of the log receive it)."""
        self.kubelets.write_log((namespace, pod), line)

    def crash(self, image: str, *, oom: bool = False) -> None:
        """Pods of `image` crash loop (OOMKilled when `oom`)."""
        (self.faults.oom if oom else self.faults.crash).add(image)

    def annotate_node(self, node: str, key: str, value: str | None) -> None:
        """Set (or, with None, remove) an annotation of a node, as `kubectl annotate node` does."""
        self.store.patch(NODES, None, node, {"metadata": {"annotations": {key: value}}})

    def report_gpu(self, node: str, index: int, *, problem: str | None = None, present: bool = True) -> None:
        """Change one GPU in the node's agent report, as the host agent would: unhealthy with `problem`
        (healthy again with None), or missing from the report (`present=False`)."""
        annotations = self.store.get(NODES, None, node)["metadata"].get("annotations") or {}
        readings = readings_from_annotations(annotations) or []
        if not present:
            readings = [r for r in readings if r.index != index]
        else:
            readings = [
                dataclasses.replace(r, healthy=problem is None, problems=(problem,) if problem else ())
                if r.index == index
                else r
                for r in readings
            ]
        self.store.patch(NODES, None, node, {"metadata": {"annotations": report_annotations(readings)}})

    def set_node_ready(self, node: str, ready: bool) -> None:
        """Mark a node Ready or NotReady."""
        self.kubelets.set_node_ready(node, ready)

    def delete_node(self, node: str) -> Obj:
        """Delete a node, as `kubectl delete node` does, and its pods, as Kubernetes' pod garbage
        collector does for pods bound to a node that no longer exists. Returns the node (`restore_node`)."""
        removed = self.store.delete(NODES, None, node)
        pods, _ = self.store.list(PODS, None, lambda pod: pod.get("spec", {}).get("nodeName") == node)
        for pod in pods:
            with contextlib.suppress(ApiError):  # deleted meanwhile by its owner
                self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        return removed

    def restore_node(self, node: Obj) -> None:
        """Register a deleted node again (a machine rejoining under its old name), Ready."""
        metadata = {k: v for k, v in node["metadata"].items() if k not in {"uid", "resourceVersion"}}
        self.store.create(NODES, None, {**node, "metadata": metadata})
        self.kubelets.set_node_ready(metadata["name"], True)

    def requests_seen(self) -> set[Access]:
        """Every distinct (verb, API group, resource, namespace) clients asked for since the start or
        the last `forget_requests`: what RBAC must grant them (namespace None: cluster-wide)."""
        return self.server.accesses()

    def forget_requests(self) -> set[Access]:
        """Start recording requests afresh; returns what was recorded until now."""
        return self.server.accesses(forget=True)

    def fail_requests(self, count: int = 0, rate: float = 0.0) -> None:
        """Answer the next `count` requests with 503, and a `rate` share of all requests with 500."""
        self.faults.next_5xx, self.faults.error_rate_5xx = count, rate

    def drop_watches(self) -> int:
        """End every open watch stream (clients must reconnect); returns how many were open."""
        return self.store.end_watches()

    @property
    def dcgm_url(self) -> str:
        """Where the simulated DCGM exporter serves its metrics (for a Prometheus scrape job)."""
        return self.url + DCGM_PATH

    def set_gpu_utilisation(self, pod: str, percent: float | None, namespace: str = "default") -> None:
        """Make the GPUs of `pod` run at `percent` in the DCGM exporter's series (None: the default), as
        `kubectl annotate pod POD remotegpu.io/sim-gpu-utilisation=PERCENT` does."""
        value = None if percent is None else f"{percent:g}"
        self.store.patch(PODS, namespace, pod, {"metadata": {"annotations": {UTILISATION_ANNOTATION: value}}})

    def set_default_gpu_utilisation(self, percent: float) -> None:
        """The utilisation of the GPUs of pods without the annotation (0 % to begin with)."""
        self.faults.gpu_utilisation = percent

    def slow_down(self, milliseconds: int) -> None:
        """Delay every response."""
        self.faults.slow_ms = milliseconds
