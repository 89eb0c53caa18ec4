"""Nodes and the pods that are not ours, as the API returns them, read into what inventory sync needs.

A node's GPUs come from the NVIDIA device plugin (allocatable `nvidia.com/gpu`) and GPU feature
discovery (`nvidia.com/gpu.product`, `nvidia.com/gpu.memory` labels). Pure functions over JSON.
"""

from __future__ import annotations

from typing import Any

from remotegpu.core.cluster.manifests import ALLOCATED_GPUS_ANNOTATION, GPU_RESOURCE, MANAGED_LABEL, MANAGER
from remotegpu.core.inventory.addresses import node_address
from remotegpu.core.inventory.gpu_report import GPU_UUIDS_ANNOTATION, product_label, readings_from_annotations
from remotegpu.core.inventory.sync import ForeignUsage, ObservedNode
from remotegpu.core.platform.quantities import parse_bytes, parse_cpu_millis


def is_ready(node: dict[str, Any]) -> bool:
    """The node's Ready condition is True."""
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def observed_node(node: dict[str, Any]) -> ObservedNode:
    """A node as the NVIDIA device plugin and GPU feature discovery describe it (no foreign usage yet),
    with the address users reach it by (`status.addresses`, or the public-address annotation).

    Where RemoteGPU's host agent reports the node's GPUs (`core.inventory.gpu_report`), its report is
    the truth about them: count, UUIDs, memory and health; the product label still names the model
    when there is one (else NVML's name, written as the label would be), so hosts keep the model name
    they were registered with."""
    metadata, status = node.get("metadata", {}), node.get("status", {})
    labels = metadata.get("labels", {})
    annotations = metadata.get("annotations") or {}
    allocatable = status.get("allocatable", {})
    memory_mib = labels.get("nvidia.com/gpu.memory")
    uuids = annotations.get(GPU_UUIDS_ANNOTATION, "")
    reached = node_address(status.get("addresses") or [], annotations)
    report = readings_from_annotations(annotations)
    gpu_count = int(allocatable.get(GPU_RESOURCE, 0))
    gpu_uuids = tuple(u for u in uuids.split(",") if u)
    model = labels.get("nvidia.com/gpu.product")
    memory = int(memory_mib) << 20 if memory_mib else None
    unhealthy: tuple[tuple[str, str], ...] = ()
    if report is not None:
        gpu_count, gpu_uuids = len(report), tuple(r.uuid for r in report)
        if report:
            model = model or product_label(report[0].model)
            memory = report[0].memory_mib << 20
        unhealthy = tuple((r.uuid, r.health_reason) for r in report if r.health_reason)
    return ObservedNode(
        name=metadata["name"],
        ready=is_ready(node),
        gpu_count=gpu_count,
        gpu_model=model or "unknown",
        gpu_memory_bytes=memory,
        gpu_uuids=gpu_uuids,
        gpu_reported=report is not None,
        unhealthy_gpus=unhealthy,
        cpu_millis=parse_cpu_millis(allocatable.get("cpu", 0)),
        memory_bytes=parse_bytes(allocatable.get("memory", 0)),
        labels=dict(labels),
        address=reached[0] if reached else None,
        address_source=reached[1].value if reached else None,
    )


def foreign_usage_by_node(pods: list[dict[str, Any]]) -> dict[str, ForeignUsage]:
    """Sum what live pods that are not RemoteGPU's request on each node (GPUs, CPU, memory, host ports)."""
    totals: dict[str, dict[str, Any]] = {}
    for pod in pods:
        labels = pod.get("metadata", {}).get("labels") or {}
        node = pod.get("spec", {}).get("nodeName")
        if not node or labels.get(MANAGED_LABEL) == MANAGER:
            continue
        if pod.get("status", {}).get("phase") in {"Succeeded", "Failed"}:
            continue
        total = totals.setdefault(node, {"gpus": 0, "devices": [], "cpu": 0, "memory": 0, "ports": []})
        for container in pod.get("spec", {}).get("containers", []):
            resources = container.get("resources") or {}
            limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
            total["gpus"] += int(limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE, 0)))
            total["cpu"] += parse_cpu_millis(requests.get("cpu", limits.get("cpu", 0)))
            total["memory"] += parse_bytes(requests.get("memory", limits.get("memory", 0)))
            for port in container.get("ports") or []:
                if port.get("hostPort"):
                    total["ports"].append((int(port["hostPort"]), str(port.get("protocol", "TCP")).lower()))
        annotation = (pod.get("metadata", {}).get("annotations") or {}).get(ALLOCATED_GPUS_ANNOTATION, "")
        total["devices"].extend(device for device in annotation.split(",") if device)
    return {
        node: ForeignUsage(
            gpus=t["gpus"],
            gpu_devices=tuple(t["devices"]),
            cpu_millis=t["cpu"],
            memory_bytes=t["memory"],
            host_ports=tuple(t["ports"]),
        )
        for node, t in totals.items()
    }
