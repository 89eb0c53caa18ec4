"""The simulated DCGM exporter: NVIDIA dcgm-exporter's series and label names for every GPU, pod labels
on the GPUs a running pod holds, utilisation set per pod, in a text format Prometheus's own parser
reads; the API server's injected faults do not reach it."""

from __future__ import annotations

from pathlib import Path

import httpx
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from remotegpu.ops.simcluster.cluster import SimulatedCluster
from remotegpu.ops.simcluster.dcgm import UTILISATION_ANNOTATION
from remotegpu.ops.simcluster.kubelets import ALLOCATED_GPUS
from remotegpu.tests.ops.simcluster.test_simulated_cluster import pod, sim, wait_for_phase

__all__ = ["sim"]  # the fixture, shared with the cluster's own tests

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(cluster: SimulatedCluster) -> Samples:
    answer = httpx.get(cluster.dcgm_url)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    found: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        assert family.type == "gauge"
        found[family.name] = [(sample.labels, sample.value) for sample in family.samples]
    return found


def test_every_gpu_is_exported_and_a_pods_gpus_carry_its_labels_and_utilisation(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    cluster, api, _ = sim
    api.create_namespaced_pod("default", pod("train", gpus=2))
    wait_for_phase(api, "train", "Running")
    held = set(api.read_namespaced_pod("train", "default").metadata.annotations[ALLOCATED_GPUS].split(","))

    found = scrape(cluster)
    assert sorted(found) == ["DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE"]
    utilisation = found["DCGM_FI_DEV_GPU_UTIL"]
    assert len(utilisation) == 8, "2 nodes of 4 GPUs, idle ones too"
    for labels, value in utilisation:
        assert {
            "gpu",
            "UUID",
            "pci_bus_id",
            "device",
            "modelName",
            "Hostname",
            "DCGM_FI_DRIVER_VERSION",
        } <= set(labels)
        assert labels["device"] == f"nvidia{labels['gpu']}"
        if labels["UUID"] in held:
            assert (labels["pod"], labels["namespace"], labels["container"]) == ("train", "default", "main")
        else:
            assert "pod" not in labels
        assert value == 0, "a sleeping container uses no GPU"

    cluster.set_gpu_utilisation("train", 87)
    found = scrape(cluster)
    busy = {labels["UUID"]: value for labels, value in found["DCGM_FI_DEV_GPU_UTIL"] if value}
    assert busy == dict.fromkeys(held, 87)
    memory = {labels["UUID"]: value for labels, value in found["DCGM_FI_DEV_FB_USED"] if value}
    assert memory == dict.fromkeys(held, int(81920 * 0.9 * 0.87))
    power = {labels["UUID"]: value for labels, value in found["DCGM_FI_DEV_POWER_USAGE"]}
    assert {power[uuid] for uuid in held} == {70 + 630 * 0.87}
    assert min(power.values()) == 70, "an idle GPU draws its idle power"

    api.patch_namespaced_pod(
        "train", "default", {"metadata": {"annotations": {UTILISATION_ANNOTATION: "250"}}}
    )
    assert {v for labels, v in scrape(cluster)["DCGM_FI_DEV_GPU_UTIL"] if "pod" in labels} == {100}, "clamped"
    cluster.set_gpu_utilisation("train", None)
    cluster.set_default_gpu_utilisation(30)
    assert {v for labels, v in scrape(cluster)["DCGM_FI_DEV_GPU_UTIL"] if "pod" in labels} == {30}


def test_the_api_servers_faults_do_not_reach_the_exporter(
    sim: tuple[SimulatedCluster, client.CoreV1Api, Path],
) -> None:
    cluster, _, _ = sim
    cluster.fail_requests(count=3)
    assert len(scrape(cluster)["DCGM_FI_DEV_GPU_UTIL"]) == 8
    assert httpx.get(f"{cluster.url}/api/v1/nodes").status_code == 503
