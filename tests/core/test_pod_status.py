"""A pod's status as the API returns it → what the reconciler acts on; no cluster involved."""

from __future__ import annotations

import pytest

from remotegpu.core.cluster.driver import PodState
from remotegpu.core.cluster.kubernetes.pod_status import observation_from_pod, pod_events_from_listing
from remotegpu.core.cluster.manifests import ALLOCATED_GPUS_ANNOTATION


def _pod(
    phase: str,
    *,
    waiting: str | None = None,
    oom: bool = False,
    ready: bool = False,
    reason: str | None = None,
) -> dict[str, object]:
    container: dict[str, object] = {
        "name": "main",
        "state": {"waiting": {"reason": waiting, "message": f"{waiting} happened"}} if waiting else {},
    }
    if oom:
        container["lastState"] = {"terminated": {"reason": "OOMKilled"}}
    status: dict[str, object] = {
        "phase": phase,
        "containerStatuses": [container],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if reason:
        status["reason"] = reason
        status["message"] = "Pod was rejected"
    return {
        "metadata": {
            "labels": {"remotegpu.io/generation": "2"},
            "annotations": {ALLOCATED_GPUS_ANNOTATION: "GPU-a,GPU-b"},
        },
        "spec": {"nodeName": "n1"},
        "status": status,
    }


@pytest.mark.parametrize(
    ("pod", "state", "reason", "retryable"),
    [
        (_pod("Pending", waiting="ContainerCreating"), PodState.PENDING, "ContainerCreating", True),
        (_pod("Running"), PodState.PENDING, "ContainerCreating", True),
        (_pod("Running", ready=True), PodState.RUNNING, None, True),
        (_pod("Pending", waiting="ImagePullBackOff"), PodState.FAILED, "ImagePullBackOff", True),
        (_pod("Pending", waiting="ErrImagePull"), PodState.FAILED, "ErrImagePull", True),
        (_pod("Running", waiting="CrashLoopBackOff"), PodState.FAILED, "CrashLoopBackOff", True),
        (_pod("Pending", waiting="CreateContainerError"), PodState.FAILED, "CreateContainerError", True),
        (_pod("Running", waiting="CrashLoopBackOff", oom=True), PodState.FAILED, "OOMKilled", True),
        (_pod("Pending", waiting="InvalidImageName"), PodState.FAILED, "InvalidImageName", False),
        (_pod("Pending", waiting="ErrImageNeverPull"), PodState.FAILED, "ErrImageNeverPull", False),
        (
            _pod("Pending", waiting="CreateContainerConfigError"),
            PodState.FAILED,
            "CreateContainerConfigError",
            False,
        ),
        (_pod("Failed", reason="OutOfnvidia.com/gpu"), PodState.FAILED, "OutOfnvidia.com/gpu", False),
        (_pod("Failed"), PodState.FAILED, "PodFailed", False),
    ],
)
def test_pod_status_maps_to_a_state_and_a_readable_reason(
    pod: dict[str, object], state: PodState, reason: str | None, retryable: bool
) -> None:
    observed = observation_from_pod(pod)
    assert (observed.state, observed.reason, observed.retryable) == (state, reason, retryable)
    assert (observed.node, observed.generation) == ("n1", 2)


def test_a_waiting_failure_carries_the_kubelet_message_and_a_rejection_the_pod_message() -> None:
    assert observation_from_pod(_pod("Pending", waiting="ErrImagePull")).message == "ErrImagePull happened"
    assert observation_from_pod(_pod("Failed", reason="OutOfcpu")).message == "Pod was rejected"
    assert observation_from_pod(_pod("Running", oom=True)).message == "the container ran out of memory"


def test_the_devices_the_node_gave_the_pod_are_read_back_from_its_annotation() -> None:
    assert observation_from_pod(_pod("Running", ready=True)).devices == ("GPU-a", "GPU-b")
    assert observation_from_pod(_pod("Pending")).devices == ("GPU-a", "GPU-b")


def test_a_pod_just_created_reads_as_pending_with_no_node_and_no_generation() -> None:
    observed = observation_from_pod({"metadata": {}, "spec": {}, "status": {}})
    assert observed == observation_from_pod({})
    assert (observed.state, observed.reason, observed.node, observed.generation, observed.devices) == (
        PodState.PENDING,
        "ContainerCreating",
        None,
        None,
        (),
    )


def test_events_are_ordered_by_time_then_by_resource_version() -> None:
    listing = {
        "items": [
            {
                "type": "Normal",
                "reason": "Started",
                "message": "m3",
                "lastTimestamp": "2024-01-01T00:00:02Z",
                "metadata": {"resourceVersion": "12"},
            },
            {
                "type": "Normal",
                "reason": "Pulled",
                "message": "m2",
                "lastTimestamp": "2024-01-01T00:00:01Z",
                "metadata": {"resourceVersion": "11"},
            },
            {
                "type": "Normal",
                "reason": "Pulling",
                "message": "m1",
                "eventTime": "2024-01-01T00:00:01Z",
                "metadata": {"resourceVersion": "9"},
            },
            {"type": "Warning", "reason": "Unknown", "message": "m0", "metadata": {"resourceVersion": "x"}},
        ]
    }
    events = pod_events_from_listing(listing)
    assert [event["reason"] for event in events] == ["Unknown", "Pulling", "Pulled", "Started"]
    assert events[0] == {"type": "Warning", "reason": "Unknown", "message": "m0", "at": None, "order": 0}
    assert pod_events_from_listing({}) == []


def _started(*, container_ready: bool, pod_ready: bool) -> dict[str, object]:
    pod = _pod("Running", ready=pod_ready)
    status = pod["status"]
    assert isinstance(status, dict)
    status["containerStatuses"] = [
        {
            "name": "main",
            "ready": container_ready,
            "state": {"running": {"startedAt": "2026-11-24T12:00:00Z"}},
        }
    ]
    return pod


def test_a_running_container_that_fails_its_readiness_probe_is_running_and_not_ready() -> None:
    seen = observation_from_pod(_started(container_ready=False, pod_ready=False))
    assert (seen.state, seen.ready) == (PodState.RUNNING, False)
    assert seen.started_at is not None
    assert seen.started_at.isoformat() == "2026-11-24T12:00:00+00:00"
    ready = observation_from_pod(_started(container_ready=True, pod_ready=True))
    assert (ready.state, ready.ready) == (PodState.RUNNING, True)


def test_a_pod_not_ready_while_its_container_is_waits_as_before() -> None:
    """A node gone NotReady marks the pod, not the container, not ready: no probe failed."""
    seen = observation_from_pod(_started(container_ready=True, pod_ready=False))
    assert seen.state is PodState.PENDING
