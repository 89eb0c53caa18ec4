"""Nodes and pods that are not ours, as the API returns them → what inventory sync reads; no cluster."""

from __future__ import annotations

from typing import Any

from remotegpu.core.cluster.kubernetes.nodes import foreign_usage_by_node, is_ready, observed_node
from remotegpu.core.cluster.manifests import ALLOCATED_GPUS_ANNOTATION, GPU_RESOURCE, MANAGED_LABEL, MANAGER
from remotegpu.core.inventory.addresses import PUBLIC_ADDRESS_ANNOTATION
from remotegpu.core.inventory.sync import ForeignUsage, ObservedNode


def _node(name: str = "gpu-1", *, ready: str = "True", gpus: str | None = "8") -> dict[str, object]:
    allocatable = {"cpu": "63500m", "memory": "512Gi"}
    if gpus is not None:
        allocatable[GPU_RESOURCE] = gpus
    return {
        "metadata": {
            "name": name,
            "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559"},
            "annotations": {"remotegpu.io/gpu-uuids": "GPU-0,GPU-1"},
        },
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}],
        },
    }


def test_a_gpu_node_reads_as_its_allocatable_gpus_model_memory_and_device_ids() -> None:
    assert observed_node(_node()) == ObservedNode(
        name="gpu-1",
        ready=True,
        gpu_count=8,
        gpu_model="NVIDIA-H100-80GB-HBM3",
        gpu_memory_bytes=81559 << 20,
        gpu_uuids=("GPU-0", "GPU-1"),
        cpu_millis=63500,
        memory_bytes=512 << 30,
        labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559"},
        foreign=ForeignUsage(),
    )


def test_a_node_without_the_device_plugin_or_feature_discovery_has_no_gpus_and_an_unknown_model() -> None:
    node = observed_node(
        {"metadata": {"name": "cpu-1"}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}}
    )
    assert (node.gpu_count, node.gpu_model, node.gpu_memory_bytes, node.gpu_uuids) == (0, "unknown", None, ())
    assert (node.cpu_millis, node.memory_bytes, node.ready) == (4000, 8 << 30, False)


def test_only_a_true_ready_condition_makes_a_node_ready() -> None:
    assert is_ready(_node(ready="True"))
    assert not is_ready(_node(ready="False"))
    assert not is_ready(_node(ready="Unknown"))
    assert not is_ready({"metadata": {"name": "new"}})


def _foreign_pod(node: str | None, *, phase: str = "Running", ours: bool = False) -> dict[str, object]:
    return {
        "metadata": {
            "labels": {MANAGED_LABEL: MANAGER} if ours else {"app": "inference"},
            "annotations": {ALLOCATED_GPUS_ANNOTATION: "GPU-7"},
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "server",
                    "resources": {"limits": {GPU_RESOURCE: "1", "cpu": "2"}, "requests": {"memory": "1Gi"}},
                    "ports": [
                        {"containerPort": 80, "hostPort": 8080},
                        {"containerPort": 53, "protocol": "UDP"},
                    ],
                },
                {"name": "sidecar", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            ],
        },
        "status": {"phase": phase},
    }


def test_foreign_usage_sums_live_pods_that_are_not_ours_per_node() -> None:
    usage = foreign_usage_by_node(
        [
            _foreign_pod("gpu-1"),
            _foreign_pod("gpu-1", phase="Pending"),
            _foreign_pod("gpu-1", phase="Succeeded"),
            _foreign_pod("gpu-1", phase="Failed"),
            _foreign_pod("gpu-1", ours=True),
            _foreign_pod(None),
            _foreign_pod("gpu-2"),
        ]
    )
    assert usage["gpu-1"] == ForeignUsage(
        gpus=2,
        gpu_devices=("GPU-7", "GPU-7"),
        cpu_millis=2 * 2250,
        memory_bytes=2 * ((1 << 30) + (64 << 20)),
        host_ports=((8080, "tcp"), (8080, "tcp")),
    )
    assert usage["gpu-2"].gpus == 1
    assert set(usage) == {"gpu-1", "gpu-2"}, "a pod not yet scheduled uses nothing on any node"


def _addressed(*kinds: tuple[str, str], annotation: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = _node()
    node["status"]["addresses"] = [{"type": kind, "address": address} for kind, address in kinds]
    if annotation is not None:
        node["metadata"]["annotations"][PUBLIC_ADDRESS_ANNOTATION] = annotation
    return node


def test_a_node_is_reached_by_its_external_ip_before_its_internal_ip() -> None:
    node = observed_node(
        _addressed(("Hostname", "gpu-1"), ("InternalIP", "10.0.0.7"), ("ExternalIP", "203.0.113.7"))
    )
    assert (node.address, node.address_source) == ("203.0.113.7", "ExternalIP")


def test_without_an_external_ip_the_internal_ip_is_used_and_a_hostname_only_as_a_flagged_last_resort() -> (
    None
):
    internal = observed_node(_addressed(("Hostname", "gpu-1"), ("InternalIP", "10.0.0.7")))
    assert (internal.address, internal.address_source) == ("10.0.0.7", "InternalIP")
    named = observed_node(_addressed(("Hostname", "gpu-1.cluster.local")))
    assert (named.address, named.address_source) == ("gpu-1.cluster.local", "Hostname")
    assert (observed_node(_node()).address, observed_node(_node()).address_source) == (None, None)


def test_the_public_address_annotation_wins_over_the_node_s_own_addresses() -> None:
    node = observed_node(
        _addressed(
            ("InternalIP", "10.0.0.7"), ("ExternalIP", "203.0.113.7"), annotation="gpu1.lab.example.org"
        )
    )
    assert (node.address, node.address_source) == ("gpu1.lab.example.org", "annotation")


def test_an_annotation_that_is_not_an_address_is_ignored() -> None:
    node = observed_node(_addressed(("InternalIP", "10.0.0.7"), annotation="not an address!"))
    assert (node.address, node.address_source) == ("10.0.0.7", "InternalIP")
