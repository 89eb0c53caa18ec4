"""The simulated cluster, driven by the unmodified `kubernetes` client and by `kubectl`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch

from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.ops.simcluster.kubelets import ALLOCATED_GPUS, PODS
from remotegpu.tests.polling import poll_until


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[SimulatedCluster, client.CoreV1Api, Path]]:
    with SimulatedCluster(
        NodeTemplate(count=2, gpus=4, model="H100"), start_delay=dt.timedelta(seconds=0.1)
    ) as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        yield cluster, api, kubeconfig


def pod(
    name: str,
    *,
    gpus: int = 1,
    image: str = "pytorch:24.05",
    node: str | None = None,
    labels: dict[str, str] | None = None,
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {"app": "train"}),
        spec=client.V1PodSpec(
            node_name=node,
            containers=[
                client.V1Container(
                    name="main",
                    image=image,
                    command=["sleep", "infinity"],
                    resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
                )
            ],
        ),
    )


def phase(api: client.CoreV1Api, name: str) -> str:
    return str(api.read_namespaced_pod(name, "default").status.phase)


def waiting_reason(api: client.CoreV1Api, name: str) -> str | None:
    statuses = api.read_namespaced_pod(name, "default").status.container_statuses or []
    return next((s.state.waiting.reason for s in statuses if s.state and s.state.waiting), None)


def wait_for_phase(api: client.CoreV1Api, name: str, expected: str) -> None:
    poll_until(lambda: phase(api, name), what=f"pod {name} {expected}", until=lambda seen: seen == expected)


def wait_for_waiting_reason(api: client.CoreV1Api, name: str, expected: str) -> None:
    poll_until(
        lambda: waiting_reason(api, name),
        what=f"pod {name} waiting with {expected}",
        until=lambda seen: seen == expected,
    )


def test_discovery_and_nodes_with_gpu_capacity_and_labels(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    _, api, kubeconfig = sim
    version = client.VersionApi(config.new_client_from_config(str(kubeconfig))).get_code()
    assert version.major == "1"
    nodes = api.list_node().items
    assert [n.metadata.name for n in nodes] == ["gpu-node-0", "gpu-node-1"]
    assert nodes[0].status.capacity["nvidia.com/gpu"] == "4"
    assert nodes[0].metadata.labels["nvidia.com/gpu.product"] == "H100"


def test_a_pod_is_scheduled_started_given_devices_and_logs(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    _, api, _ = sim
    api.create_namespaced_pod("default", pod("train", gpus=2))
    wait_for_phase(api, "train", "Running")
    created = api.read_namespaced_pod("train", "default")
    assert created.spec.node_name == "gpu-node-0"
    assert len(created.metadata.annotations[ALLOCATED_GPUS].split(",")) == 2
    assert "Started container main" in api.read_namespaced_pod_log("train", "default")


def test_second_create_is_a_409_and_a_missing_object_a_404(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    _, api, _ = sim
    api.create_namespaced_pod("default", pod("once"))
    with pytest.raises(client.ApiException) as conflict:
        api.create_namespaced_pod("default", pod("once"))
    assert (conflict.value.status, conflict.value.reason) == (409, "Conflict")
    assert json.loads(conflict.value.body or "{}")["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as missing:
        api.read_namespaced_pod("nobody", "default")
    assert missing.value.status == 404
    with pytest.raises(client.ApiException) as invalid:
        api.create_namespaced_pod("default", pod("Not_A_Name"))
    assert invalid.value.status == 422


def test_selectors_filter_lists(sim: tuple[SimulatedCluster, client.CoreV1Api, Path]) -> None:
    _, api, _ = sim
    api.create_namespaced_pod("default", pod("a", labels={"team": "x", "tier": "gpu"}))
    api.create_namespaced_pod("default", pod("b", labels={"team": "y"}))
    names = lambda **kw: [p.metadata.name for p in api.list_namespaced_pod("default", **kw).items]  # noqa: E731
    assert names(label_selector="team=x") == ["a"]
    assert names(label_selector="team in (x,y),!tier") == ["b"]
    assert names(field_selector="metadata.name=b") == ["b"]
    poll_until(
        lambda: names(field_selector="spec.nodeName=gpu-node-0"),
        what="both pods placed on gpu-node-0",
        until=lambda placed: placed == ["a", "b"],
    )


def test_watch_replays_and_streams_changes(sim: tuple[SimulatedCluster, client.CoreV1Api, Path]) -> None:
    _, api, _ = sim
    api.create_namespaced_pod("default", pod("watched"))
    seen = []
    for event in watch.Watch().stream(api.list_namespaced_pod, "default", timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name, event["object"].status.phase))
        if event["object"].status.phase == "Running" and ("deleted-by-test", "", "") not in seen:
            api.delete_namespaced_pod("watched", "default")
            seen.append(("deleted-by-test", "", ""))
        if event["type"] == "DELETED":
            break
    assert seen[0][:2] == ("ADDED", "watched")
    assert ("MODIFIED", "watched", "Running") in seen
    assert seen[-1][0] == "DELETED"


def test_a_pod_that_fits_nowhere_stays_pending_with_failed_scheduling(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    _, api, _ = sim
    api.create_namespaced_pod("default", pod("huge", gpus=16))

    def failed_scheduling() -> bool:
        events = api.list_namespaced_event("default", field_selector="involvedObject.name=huge").items
        return any(e.reason == "FailedScheduling" for e in events)

    poll_until(failed_scheduling, what="a FailedScheduling event")
    assert phase(api, "huge") == "Pending"


def test_gpu_capacity_is_enforced_on_pinned_pods(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    _, api, _ = sim
    api.create_namespaced_pod("default", pod("first", gpus=3, node="gpu-node-1"))
    wait_for_phase(api, "first", "Running")
    api.create_namespaced_pod("default", pod("second", gpus=2, node="gpu-node-1"))
    wait_for_phase(api, "second", "Failed")
    assert api.read_namespaced_pod("second", "default").status.reason == "OutOfnvidia.com/gpu"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("image", "ImagePullBackOff"), ("crash", "CrashLoopBackOff"), ("oom", "CrashLoopBackOff")],
)
def test_injected_pod_faults_show_as_kubernetes_reports_them(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path], fault: str, reason: str
) -> None:
    cluster, api, _ = sim
    image = f"broken-{fault}:1"
    {
        "image": lambda: cluster.fail_image_pulls(image),
        "crash": lambda: cluster.crash(image),
        "oom": lambda: cluster.crash(image, oom=True),
    }[fault]()
    api.create_namespaced_pod("default", pod("faulty", image=image))
    wait_for_waiting_reason(api, "faulty", reason)
    if fault == "oom":
        statuses = api.read_namespaced_pod("faulty", "default").status.container_statuses
        assert statuses[0].last_state.terminated.reason == "OOMKilled"


def test_node_not_ready_and_api_faults(sim: tuple[SimulatedCluster, client.CoreV1Api, Path]) -> None:
    cluster, api, _ = sim
    cluster.set_node_ready("gpu-node-0", False)
    ready = next(c for c in api.read_node("gpu-node-0").status.conditions if c.type == "Ready")
    assert ready.status == "False"
    cluster.fail_requests(count=1)
    with pytest.raises(client.ApiException) as unavailable:
        api.list_node()
    assert unavailable.value.status == 503
    assert len(api.list_node().items) == 2


def test_a_deleted_node_takes_its_pods_and_can_rejoin(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    cluster, api, _ = sim
    api.create_namespaced_pod("default", pod("on-zero", node="gpu-node-0"))
    api.create_namespaced_pod("default", pod("on-one", node="gpu-node-1"))
    wait_for_phase(api, "on-zero", "Running")
    removed = cluster.delete_node("gpu-node-0")
    assert [node.metadata.name for node in api.list_node().items] == ["gpu-node-1"]
    assert [item.metadata.name for item in api.list_namespaced_pod("default").items] == ["on-one"]
    cluster.restore_node(removed)
    rejoined = api.read_node("gpu-node-0")
    assert rejoined.metadata.uid != removed["metadata"]["uid"]
    assert next(c for c in rejoined.status.conditions if c.type == "Ready").status == "True"
    assert rejoined.status.capacity["nvidia.com/gpu"] == removed["status"]["capacity"]["nvidia.com/gpu"]
    api.create_namespaced_pod("default", pod("again", node="gpu-node-0"))
    wait_for_phase(api, "again", "Running")


def test_kubectl_lists_nodes_and_pods(sim: tuple[SimulatedCluster, client.CoreV1Api, Path]) -> None:
    _, api, kubeconfig = sim
    api.create_namespaced_pod("default", pod("shown"))
    wait_for_phase(api, "shown", "Running")

    def run(*args: str) -> str:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout

    assert "8×H100" not in run("get", "nodes")
    assert "4×H100" in run("get", "nodes")
    pods = run("get", "pods", "-o", "wide")
    assert "shown" in pods
    assert "Running" in pods
    assert "gpu-node-0" in pods
    assert '"nvidia.com/gpu": "1"' in run("get", "pod", "shown", "-o", "json")


def test_a_new_pod_reads_pending_before_anything_schedules_it(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    """Found flaky in CI: a pod read right after its create had no status at all."""
    _, api, _ = sim
    created = api.create_namespaced_pod("default", pod("fresh"))
    assert created.status.phase == "Pending"
    assert phase(api, "fresh") in {"Pending", "Running"}


def _read_until(chunks: Iterator[bytes], wanted: str) -> str:
    seen = ""
    for chunk in chunks:
        seen += chunk.decode()
        if wanted in seen:
            return seen
    pytest.fail(f"the stream ended before {wanted!r}: {seen!r}")


def test_logs_follow_sends_lines_as_written_until_the_pod_ends(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    cluster, api, _ = sim
    api.create_namespaced_pod("default", pod("train"))
    wait_for_phase(api, "train", "Running")
    response: Any = api.read_namespaced_pod_log(
        "train", "default", follow=True, _preload_content=False, _request_timeout=30
    )
    chunks = response.stream(1024)
    assert "Started container main" in _read_until(chunks, "command: sleep infinity\n")
    cluster.write_log("train", "epoch 1: loss 0.42")
    assert _read_until(chunks, "epoch 1: loss 0.42\n") == "epoch 1: loss 0.42\n"
    api.delete_namespaced_pod("train", "default")
    assert b"".join(chunks) == b"", "the stream ends with the pod"


def test_kubectl_logs_follow_follows(sim: tuple[SimulatedCluster, client.CoreV1Api, Path]) -> None:
    cluster, api, kubeconfig = sim
    api.create_namespaced_pod("default", pod("shown"))
    wait_for_phase(api, "shown", "Running")
    with subprocess.Popen(
        ["kubectl", "--kubeconfig", str(kubeconfig), "logs", "-f", "--tail", "1", "shown"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as following:
        try:
            assert following.stdout is not None
            assert following.stdout.readline() == "command: sleep infinity\n"
            cluster.write_log("shown", "step 2")
            assert following.stdout.readline() == "step 2\n"
            api.delete_namespaced_pod("shown", "default")
            assert following.wait(timeout=30) == 0, following.stderr.read() if following.stderr else ""
        finally:
            following.kill()


@pytest.mark.parametrize(
    ("image", "fails"),
    [
        ("registry.example.org/ml/does-not-exist:1", True),
        ("pytorch:does-not-exist", True),
        ("docker.io/library/denied:2", True),
        ("docker.io/library/denied@sha256:" + "a" * 64, True),
        ("pytorch@sha256:" + "d" * 64, False),
        ("localhost:5000/pytorch:24.05", False),
        ("nvcr.io/nvidia/pytorch:24.05-py3", False),
    ],
)
def test_pulls_fail_for_the_marker_and_the_deny_list(image: str, fails: bool) -> None:
    cluster = SimulatedCluster(NodeTemplate(count=1), failing_images=["docker.io/library/denied"])
    assert cluster.faults.pull_fails(image) is fails
    cluster.server.server_close()


def test_an_image_that_does_not_exist_waits_in_err_image_pull_then_back_off(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    _, api, _ = sim
    api.create_namespaced_pod("default", pod("missing", image="example.org/team/does-not-exist:1"))
    wait_for_waiting_reason(api, "missing", "ErrImagePull")
    wait_for_waiting_reason(api, "missing", "ImagePullBackOff")
    assert phase(api, "missing") == "Pending"
    reasons = [
        e.reason for e in api.list_namespaced_event("default").items if e.involved_object.name == "missing"
    ]
    assert {"Failed", "BackOff"} <= set(reasons)
    with pytest.raises(client.ApiException) as refused:
        api.read_namespaced_pod_log("missing", "default")
    assert refused.value.status == 400
    assert "is waiting to start: ImagePullBackOff" in refused.value.body


def test_nodes_report_distinct_internal_ips_an_external_ip_when_asked_and_take_annotations(
    tmp_path: Path,
) -> None:
    templates = [
        NodeTemplate(count=2, gpus=1),
        NodeTemplate(count=1, gpus=1, prefix="edge", external_address="127.0.0.1"),
    ]
    with SimulatedCluster(templates) as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")

        def kubectl(*args: str) -> str:
            return subprocess.run(
                ["kubectl", "--kubeconfig", str(kubeconfig), *args],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout

        listed = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
        addresses = {
            n["metadata"]["name"]: {a["type"]: a["address"] for a in n["status"]["addresses"]} for n in listed
        }
        assert addresses == {
            "gpu-node-0": {"Hostname": "gpu-node-0", "InternalIP": "10.0.0.1"},
            "gpu-node-1": {"Hostname": "gpu-node-1", "InternalIP": "10.0.0.2"},
            "edge-0": {"Hostname": "edge-0", "InternalIP": "10.0.0.3", "ExternalIP": "127.0.0.1"},
        }
        wide = kubectl("get", "nodes", "-o", "wide")
        edge = next(line for line in wide.splitlines() if line.startswith("edge-0"))
        assert edge.split()[5:7] == ["10.0.0.3", "127.0.0.1"], "kubectl's INTERNAL-IP and EXTERNAL-IP columns"

        kubectl("annotate", "node", "gpu-node-0", "remotegpu.io/public-address=gpu0.lab.example.org")
        cluster.annotate_node("gpu-node-1", "remotegpu.io/public-address", "gpu1.lab.example.org")
        cluster.annotate_node("gpu-node-1", "remotegpu.io/public-address", None)
        api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        annotations = {n.metadata.name: n.metadata.annotations or {} for n in api.list_node().items}
        assert annotations["gpu-node-0"]["remotegpu.io/public-address"] == "gpu0.lab.example.org"
        assert "remotegpu.io/public-address" not in annotations["gpu-node-1"]


def test_a_listing_asked_for_metadata_only_answers_partial_object_metadata(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    """As the API server does for `Accept: …;as=PartialObjectMetadataList`: names and labels without
    the objects' spec and status (what garbage collection lists)."""
    _, api, _ = sim
    api.create_namespaced_pod("default", pod("meta-a", labels={"team": "x"}))
    api.create_namespaced_pod("default", pod("meta-b", labels={"team": "y"}))
    raw: Any = api.list_namespaced_pod(
        "default",
        label_selector="team=x",
        _preload_content=False,
        _headers={"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"},
    )
    answer = json.loads(raw.data)
    assert (answer["kind"], answer["apiVersion"]) == ("PartialObjectMetadataList", "meta.k8s.io/v1")
    assert [item["metadata"]["name"] for item in answer["items"]] == ["meta-a"]
    only = answer["items"][0]
    assert only["kind"] == "PartialObjectMetadata"
    assert set(only) == {"kind", "apiVersion", "metadata"}
    assert only["metadata"]["labels"] == {"team": "x"}
    assert only["metadata"]["namespace"] == "default"
    full = api.list_namespaced_pod("default", label_selector="team=x")
    assert full.items[0].spec.containers[0].name == "main"


def test_a_shared_listing_is_not_changed_by_later_writes(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    """Listings the server only serialises share the stored objects instead of copying each one; that
    holds because a write stores a new object and never changes a stored one in place."""
    cluster, api, _ = sim
    api.create_namespaced_pod("default", pod("shared", labels={"stage": "one"}))
    pods, _ = cluster.store.list(PODS, "default", lambda _o: True, shared=True)
    before = json.dumps(pods, sort_keys=True)
    api.patch_namespaced_pod("shared", "default", {"metadata": {"labels": {"stage": "two"}}})
    api.delete_namespaced_pod("shared", "default")
    assert json.dumps(pods, sort_keys=True) == before
    assert pods[0]["metadata"]["labels"] == {"stage": "one"}
