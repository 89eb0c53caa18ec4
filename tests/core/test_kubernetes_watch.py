"""The pod watch: it reconnects quietly (a dropped watch is normal, one debug line, no urllib3 warnings),
resumes where it ended, skips the echo of a read, and vouches for unchanged pods (no read on a resync)."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from remotegpu.core.cluster.driver import PodObservation, PodState, workload_name
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.cluster.kubernetes.read_versions import ReadVersions
from remotegpu.core.cluster.kubernetes.watched_pods import WatchedPods
from remotegpu.core.cluster.manifests import ENVIRONMENT_LABEL, MANAGED_LABEL, MANAGER
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.ops.simcluster.store import BY_PATH
from remotegpu.tests.polling import poll_until


def test_a_watch_that_cannot_connect_logs_one_debug_line_per_attempt_and_no_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: every watch request fails at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "down", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "down", "context": {"cluster": "down", "user": "u"}}],
                "current-context": "down",
            }
        )
    )
    driver = KubernetesCluster.from_kubeconfig(str(kubeconfig))
    stop = threading.Event()
    caplog.set_level(logging.DEBUG)
    watching = threading.Thread(target=driver.watch_workloads, args=(lambda _id: None, stop))
    watching.start()
    try:
        poll_until(
            lambda: "Pod watch dropped" in caplog.text, 20, "a dropped watch to be logged", interval_s=0.05
        )
    finally:
        stop.set()
        watching.join(timeout=10)
    dropped = [r for r in caplog.records if r.getMessage().startswith("Pod watch dropped")]
    assert dropped
    assert all(r.levelno == logging.DEBUG for r in dropped)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "Retrying" not in caplog.text


def test_a_new_watch_resumes_where_the_last_one_ended(tmp_path: Path) -> None:
    """Watches end every 5 s; a fresh one would replay every pod (every environment due again, each
    time). The next one resumes from the last resourceVersion: an unchanged pod is reported once."""
    pods = BY_PATH[("", "v1", "pods")]

    def pod(environment: uuid.UUID) -> dict[str, object]:
        return {
            "metadata": {
                "name": f"env-{environment}",
                "labels": {MANAGED_LABEL: MANAGER, ENVIRONMENT_LABEL: str(environment)},
            },
            "spec": {"containers": [{"name": "main", "image": "probe:1"}]},
        }

    first, second = uuid.uuid4(), uuid.uuid4()
    seen: list[uuid.UUID] = []
    stop = threading.Event()
    with SimulatedCluster(NodeTemplate(count=1, gpus=1), start_delay=dt.timedelta(hours=1)) as sim:
        driver = KubernetesCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        sim.store.create(pods, "default", pod(first))
        watching = threading.Thread(target=driver.watch_workloads, args=(seen.append, stop))
        watching.start()
        try:
            poll_until(lambda: first in seen, 10, "the existing pod to be reported", interval_s=0.05)
            time.sleep(1)  # real time: the simulated kubelet's own changes to the pod are reported too
            before = seen.count(first)
            time.sleep(5.5)  # real time: the watch's server-side timeout (5 s) ends it and a new one starts
            sim.store.create(pods, "default", pod(second))
            poll_until(lambda: second in seen, 10, "a pod created after the restart", interval_s=0.05)
        finally:
            stop.set()
            watching.join(timeout=10)
    assert seen.count(first) == before, "the new watch replayed a pod that had not changed"


def _create_settled_pod(sim: SimulatedCluster, environment: uuid.UUID) -> None:
    """Our pod of `environment`, on a cluster without nodes: once the simulated scheduler has marked it
    unschedulable it stays as it is (no change but the test's own)."""
    pods = BY_PATH[("", "v1", "pods")]
    manifest = {
        "metadata": {
            "name": workload_name(environment),
            "labels": {MANAGED_LABEL: MANAGER, ENVIRONMENT_LABEL: str(environment)},
        },
        "spec": {"containers": [{"name": "main", "image": "probe:1"}]},
    }
    sim.store.create(pods, "default", manifest)
    poll_until(
        lambda: sim.store.get(pods, "default", workload_name(environment)).get("status", {}),
        10,
        "the pod's scheduling status",
        until=lambda status: bool(status.get("conditions")),
        interval_s=0.02,
    )


def test_an_event_for_the_pod_version_a_step_already_read_makes_nothing_due(tmp_path: Path) -> None:
    """A step reads its pod; the watch reports that same version a moment later. Only a version the
    step did not read is a change."""
    pods = BY_PATH[("", "v1", "pods")]
    environment = uuid.uuid4()
    seen: list[uuid.UUID] = []
    stop = threading.Event()
    with SimulatedCluster(NodeTemplate(count=0, gpus=1), start_delay=dt.timedelta(hours=1)) as sim:
        driver = KubernetesCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        _create_settled_pod(sim, environment)
        driver.observe_workload(environment)  # a step reads the pod as it now is
        # a fresh watch replays the pod at the version just read: its echo, not a change
        watching = threading.Thread(target=driver.watch_workloads, args=(seen.append, stop))
        watching.start()
        try:
            time.sleep(1)  # real time: the replay arrives, or would
            assert seen == []
            sim.store.patch(pods, "default", workload_name(environment), {"metadata": {"labels": {"x": "1"}}})
            poll_until(lambda: seen, 10, "the changed pod to be reported", interval_s=0.05)
        finally:
            stop.set()
            watching.join(timeout=10)
    assert seen == [environment]


def test_read_versions_are_used_up_by_their_echo_and_bounded() -> None:
    versions = ReadVersions(limit=2)
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    versions.remember(first, "10")
    assert not versions.was_read(first, "11"), "another version is a change"
    assert versions.was_read(first, "10")
    assert not versions.was_read(first, "10"), "used up: a repeat after a watch restart is reported"
    versions.remember(first, "12")
    versions.remember(second, "13")
    versions.remember(third, "14")
    assert len(versions) == 2
    assert not versions.was_read(first, "12"), "the oldest was forgotten: at worst a redundant step"
    assert versions.was_read(third, "14")
    versions.remember(first, None)
    assert not versions.was_read(first, None)


def _counting_reads(driver: KubernetesCluster, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every pod read the driver sends to the API server."""
    reads: list[str] = []
    read: Any = driver._core.read_namespaced_pod

    def counting(name: str, namespace: str, **options: Any) -> Any:
        reads.append(name)
        return read(name, namespace, **options)

    monkeypatch.setattr(driver._core, "read_namespaced_pod", counting)
    return reads


def test_while_the_watch_runs_an_unchanged_pod_is_not_read_again_and_a_changed_or_deleted_one_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resync of a settled environment reads no pod while the watch vouches for it; a change the watch
    reports (a patch, a delete behind our back) is read at the next look."""
    pods = BY_PATH[("", "v1", "pods")]
    environment = uuid.uuid4()
    seen: list[uuid.UUID] = []
    stop = threading.Event()
    with SimulatedCluster(NodeTemplate(count=0, gpus=1), start_delay=dt.timedelta(hours=1)) as sim:
        driver = KubernetesCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        reads = _counting_reads(driver, monkeypatch)
        _create_settled_pod(sim, environment)
        driver.observe_workload(environment)
        driver.observe_workload(environment)
        assert len(reads) == 2, "no watch: every look reads the pod"
        watching = threading.Thread(target=driver.watch_workloads, args=(seen.append, stop))
        watching.start()
        try:
            poll_until(lambda: driver._watched.ticket().term > 0, 10, "the watch to start", interval_s=0.02)
            first = driver.observe_workload(environment)
            time.sleep(0.5)  # real time: the replay of the pod at the version read arrives
            assert [driver.observe_workload(environment) for _ in range(3)] == [first] * 3
            assert len(reads) == 3, "read once, then vouched for by the watch"

            sim.store.patch(pods, "default", workload_name(environment), {"metadata": {"labels": {"x": "1"}}})
            poll_until(lambda: seen, 10, "the changed pod to be reported", interval_s=0.05)
            driver.observe_workload(environment)
            assert len(reads) == 4, "a change the watch reported is read"

            sim.store.delete(pods, "default", workload_name(environment))
            poll_until(lambda: len(seen) > 1, 10, "the deleted pod to be reported", interval_s=0.05)
            assert driver.observe_workload(environment).state is PodState.MISSING
        finally:
            stop.set()
            watching.join(timeout=10)
        driver.observe_workload(environment)
        assert len(reads) == 6, "the watch stopped: nothing is vouched for"


def _observation(node: str) -> PodObservation:
    return PodObservation(PodState.RUNNING, node=node)


def test_watched_pods_keep_a_read_only_while_the_watch_can_vouch_for_it() -> None:
    now = [0.0]
    watched = WatchedPods(limit=2, max_age_s=60, clock=lambda: now[0])
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    watched.keep(first, "1", _observation("a"), watched.ticket())
    assert watched.get(first) is None, "no watch yet"

    watched.watch_started_afresh()
    watched.keep(first, "1", _observation("a"), watched.ticket())
    assert watched.get(first) == _observation("a")
    watched.changed(first, "1")
    assert watched.get(first) == _observation("a"), "the echo of the version read"
    watched.changed(first, "2")
    assert watched.get(first) is None, "another version"
    watched.keep(first, "2", _observation("b"), watched.ticket())
    watched.changed(first, "2", deleted=True)
    assert watched.get(first) is None, "deleted"

    ticket = watched.ticket()
    watched.changed(second, "7")  # reported while the read was in flight: newer than what it returned
    watched.keep(second, "6", _observation("a"), ticket)
    assert watched.get(second) is None
    ticket = watched.ticket()
    watched.changed(second, "7")  # the very version the read returned
    watched.keep(second, "7", _observation("a"), ticket)
    assert watched.get(second) == _observation("a")

    ticket = watched.ticket()
    watched.forget(second)  # the driver wrote the pod: neither what was kept nor a read in flight holds
    watched.keep(second, "7", _observation("a"), ticket)
    assert watched.get(second) is None

    watched.keep(third, "3", _observation("a"), watched.ticket())
    now[0] = 61.0
    assert watched.get(third) is None, "too old: read again"

    ticket = watched.ticket()
    watched.watch_broken()
    watched.watch_started_afresh()
    watched.keep(third, "3", _observation("a"), ticket)
    assert watched.get(third) is None, "a read from before the break"
    watched.keep(third, "3", _observation("a"), watched.ticket())
    watched.watch_broken()
    assert watched.get(third) is None, "nothing survives a break"


def test_watched_pods_answer_nothing_while_the_watch_is_silent_or_after_a_failed_stream() -> None:
    now = [0.0]
    watched = WatchedPods(max_age_s=60, silence_s=15, clock=lambda: now[0])
    environment = uuid.uuid4()
    watched.watch_started_afresh()
    watched.keep(environment, "1", _observation("a"), watched.ticket())
    now[0] = 16.0  # no event, no stream ended: the connection may be gone without a word
    assert watched.get(environment) is None
    watched.keep(environment, "1", _observation("a"), watched.ticket())
    watched.watch_alive()  # a stream ended as the server ends them
    assert watched.get(environment) is None, "nothing was kept while silent"
    watched.keep(environment, "1", _observation("a"), watched.ticket())
    assert watched.get(environment) == _observation("a")
    ticket = watched.ticket()
    watched.watch_interrupted()  # a stream failed: what it missed is not caught up yet
    assert watched.get(environment) is None
    watched.keep(environment, "1", _observation("a"), ticket)
    assert watched.get(environment) is None, "a read from before the failure"
    watched.keep(environment, "1", _observation("a"), watched.ticket())
    assert watched.get(environment) == _observation("a"), "the watch goes on"


def test_watched_pods_are_bounded() -> None:
    watched = WatchedPods(limit=2)
    watched.watch_started_afresh()
    kept = [uuid.uuid4() for _ in range(3)]
    for index, environment in enumerate(kept):
        watched.keep(environment, str(index), _observation("a"), watched.ticket())
    assert len(watched) == 2
    assert watched.get(kept[0]) is None
    ticket = watched.ticket()
    for _ in range(3):  # more events than the record holds: a read older than them cannot be checked
        watched.changed(uuid.uuid4(), "9")
    watched.keep(kept[0], "0", _observation("a"), ticket)
    assert watched.get(kept[0]) is None
