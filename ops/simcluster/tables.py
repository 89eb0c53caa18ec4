"""Server-side printing (`meta.k8s.io/v1` Table), so `kubectl get` shows the usual columns."""

from __future__ import annotations

import datetime as dt
from typing import Any

from remotegpu.ops.simcluster.store import Obj, Resource


def _age(obj: Obj) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    seconds = int(
        (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
    )
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _pod_row(pod: Obj) -> list[Any]:
    status = pod.get("status", {})
    containers = status.get("containerStatuses", [])
    ready = sum(1 for c in containers if c.get("ready"))
    shown = status.get("phase", "Pending")
    for container in containers:
        waiting = container.get("state", {}).get("waiting")
        if waiting and waiting.get("reason") != "ContainerCreating":
            shown = waiting["reason"]
    restarts = sum(int(c.get("restartCount", 0)) for c in containers)
    total = len(pod.get("spec", {}).get("containers", []))
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        shown,
        restarts,
        _age(pod),
        status.get("podIP", "<none>"),
        pod.get("spec", {}).get("nodeName", "<none>"),
    ]


def _node_row(node: Obj) -> list[Any]:
    conditions = node.get("status", {}).get("conditions", [])
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    gpus = node.get("status", {}).get("capacity", {}).get("nvidia.com/gpu", "0")
    model = node.get("metadata", {}).get("labels", {}).get("nvidia.com/gpu.product", "")
    addresses = {a.get("type"): a.get("address") for a in node.get("status", {}).get("addresses", [])}
    return [
        node["metadata"]["name"],
        "Ready" if ready.get("status") == "True" else "NotReady",
        "<none>",
        _age(node),
        f"{gpus}×{model}",
        addresses.get("InternalIP", "<none>"),
        addresses.get("ExternalIP", "<none>"),
    ]


def _deployment_row(deployment: Obj) -> list[Any]:
    # Nothing runs a stored Deployment: its status stays empty, so no replica is ready.
    status = deployment.get("status", {})
    wanted = deployment.get("spec", {}).get("replicas", 1)
    return [
        deployment["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{wanted}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(deployment),
    ]


def _daemon_set_row(daemon_set: Obj) -> list[Any]:
    status = daemon_set.get("status", {})
    selector = daemon_set.get("spec", {}).get("template", {}).get("spec", {}).get("nodeSelector") or {}
    return [
        daemon_set["metadata"]["name"],
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>",
        _age(daemon_set),
    ]


def _job_row(job: Obj) -> list[Any]:
    status = job.get("status", {})
    completions = job.get("spec", {}).get("completions", 1)
    return [
        job["metadata"]["name"],
        "Complete" if status.get("succeeded", 0) >= completions else "Running",
        f"{status.get('succeeded', 0)}/{completions}",
        "",
        _age(job),
    ]


def _budget_row(budget: Obj) -> list[Any]:
    spec = budget.get("spec", {})
    return [
        budget["metadata"]["name"],
        spec.get("minAvailable", "N/A"),
        spec.get("maxUnavailable", "N/A"),
        budget.get("status", {}).get("disruptionsAllowed", 0),
        _age(budget),
    ]


def _created_at_row(obj: Obj) -> list[Any]:
    return [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")]


def _binding_row(binding: Obj) -> list[Any]:
    role = binding.get("roleRef", {})
    return [binding["metadata"]["name"], f"{role.get('kind')}/{role.get('name')}", _age(binding)]


_COLUMNS = {
    "pods": (["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node"], _pod_row),
    "nodes": (["Name", "Status", "Roles", "Age", "GPUs", "Internal-IP", "External-IP"], _node_row),
    "deployments": (["Name", "Ready", "Up-to-date", "Available", "Age"], _deployment_row),
    "daemonsets": (
        ["Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age"],
        _daemon_set_row,
    ),
    "jobs": (["Name", "Status", "Completions", "Duration", "Age"], _job_row),
    "poddisruptionbudgets": (
        ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"],
        _budget_row,
    ),
    "roles": (["Name", "Created At"], _created_at_row),
    "clusterroles": (["Name", "Created At"], _created_at_row),
    "rolebindings": (["Name", "Role", "Age"], _binding_row),
    "clusterrolebindings": (["Name", "Role", "Age"], _binding_row),
}
_WIDE = {"Internal-IP", "External-IP"}
"""Columns `kubectl get -o wide` adds (priority 1), as the real API server prints nodes."""


def table(resource: Resource, items: list[Obj], version: int) -> Obj:
    """A `Table` of `items` with the columns `kubectl get` shows for this kind."""
    names, row = _COLUMNS.get(resource.plural, (["Name", "Age"], lambda o: [o["metadata"]["name"], _age(o)]))
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(version)},
        "columnDefinitions": [
            {
                "name": name,
                "type": "string",
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": 1 if name in _WIDE else 0,
            }
            for name in names
        ],
        "rows": [
            {
                "cells": row(item),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item["metadata"],
                },
            }
            for item in items
        ],
    }


def partial_metadata_list(items: list[Obj], version: int) -> Obj:
    """The objects' metadata alone, as the API server answers `Accept: application/json;as=
    PartialObjectMetadataList;g=meta.k8s.io;v=v1` (what a client that needs only names and labels asks
    for: garbage collection lists every object of ours)."""
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(version)},
        "items": [
            {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]}
            for item in items
        ],
    }
