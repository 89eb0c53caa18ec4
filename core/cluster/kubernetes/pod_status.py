"""A pod's status, as the API returns it, mapped to what the reconciler acts on (`PodObservation`).

Pure functions over the pod's JSON: no cluster needed to test them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from remotegpu.core.cluster.driver import PodObservation, PodState
from remotegpu.core.cluster.manifests import ALLOCATED_GPUS_ANNOTATION

# Waiting reasons Kubernetes itself keeps retrying: we report them and retry with backoff.
RETRYABLE_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerError"}
)
# Reasons no retry of the same spec can fix.
PERMANENT_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"})


def observation_from_pod(pod: dict[str, Any]) -> PodObservation:
    """Pod status → (state, reason): Running+Ready is running; waiting and termination reasons are named."""
    status = pod.get("status", {})
    spec = pod.get("spec", {})
    labels = pod.get("metadata", {}).get("labels", {})
    generation = int(labels.get("remotegpu.io/generation", 0)) or None
    node = spec.get("nodeName")
    phase = status.get("phase", "Pending")
    annotation = pod.get("metadata", {}).get("annotations", {}).get(ALLOCATED_GPUS_ANNOTATION, "")
    devices = tuple(device for device in annotation.split(",") if device)
    message = ""
    if phase == "Failed":
        reason = status.get("reason") or "PodFailed"
        return PodObservation(
            PodState.FAILED, reason, status.get("message", ""), node, generation, retryable=False
        )
    for container in status.get("containerStatuses", []):
        waiting = container.get("state", {}).get("waiting") or {}
        reason = waiting.get("reason")
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return PodObservation(
                PodState.FAILED, "OOMKilled", "the container ran out of memory", node, generation
            )
        if reason in RETRYABLE_REASONS or reason in PERMANENT_REASONS:
            return PodObservation(
                PodState.FAILED,
                reason,
                waiting.get("message", ""),
                node,
                generation,
                retryable=reason in RETRYABLE_REASONS,
            )
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))
    if phase == "Running" and ready:
        return PodObservation(PodState.RUNNING, None, message, node, generation, devices=devices)
    started_at = _started_unready(status.get("containerStatuses", []))
    if phase == "Running" and started_at is not None:
        # Its container runs but fails its readiness probe (only Jupyter environments have one).
        return PodObservation(
            PodState.RUNNING,
            None,
            message,
            node,
            generation,
            devices=devices,
            ready=False,
            started_at=started_at,
        )
    return PodObservation(PodState.PENDING, "ContainerCreating", message, node, generation, devices=devices)


def _started_unready(containers: list[dict[str, Any]]) -> dt.datetime | None:
    """When the containers started, if every one runs and one of them reports itself not ready; else None
    (not started yet, or a pod that is not ready for another reason, e.g. its node went NotReady)."""
    starts = [(c.get("state") or {}).get("running", {}).get("startedAt") for c in containers]
    if not containers or None in starts or all(c.get("ready") for c in containers):
        return None
    return max(dt.datetime.fromisoformat(str(start).replace("Z", "+00:00")) for start in starts)


def pod_events_from_listing(listing: dict[str, Any]) -> list[dict[str, Any]]:
    """An event listing → type, reason, message and time of each event, oldest first."""
    events = [
        {
            "type": item.get("type"),
            "reason": item.get("reason"),
            "message": item.get("message"),
            "at": item.get("lastTimestamp") or item.get("eventTime"),
            # resourceVersions are opaque but grow in practice: they order events of the same second
            "order": int(version)
            if (version := item["metadata"].get("resourceVersion", "")).isdigit()
            else 0,
        }
        for item in listing.get("items", [])
    ]
    return sorted(events, key=lambda event: (event["at"] or "", event["order"]))
