"""The driver's node listing against the simulated cluster: a node read once is reused while its
resourceVersion stands, and every change to a node is seen on the next listing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.inventory.sync import ObservedNode
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[SimulatedCluster, KubernetesCluster]]:
    with SimulatedCluster(NodeTemplate(count=3, gpus=2), start_delay=dt.timedelta(seconds=0.1)) as cluster:
        driver = KubernetesCluster.from_kubeconfig(str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        yield cluster, driver


def _by_name(nodes: list[ObservedNode]) -> dict[str, ObservedNode]:
    return {node.name: node for node in nodes}


def test_every_change_to_a_node_shows_in_the_next_listing(
    sim: tuple[SimulatedCluster, KubernetesCluster],
) -> None:
    cluster, driver = sim
    first = _by_name(driver.list_nodes())
    assert sorted(first) == ["gpu-node-0", "gpu-node-1", "gpu-node-2"]
    assert all(node.ready and not node.unhealthy_gpus for node in first.values())

    cluster.report_gpu("gpu-node-1", 0, problem="XID 79")
    cluster.set_node_ready("gpu-node-2", False)
    second = _by_name(driver.list_nodes())
    assert second["gpu-node-0"] == first["gpu-node-0"]
    assert [uuid for uuid, _ in second["gpu-node-1"].unhealthy_gpus] == [first["gpu-node-1"].gpu_uuids[0]]
    assert not second["gpu-node-2"].ready

    cluster.report_gpu("gpu-node-1", 0, problem=None)
    cluster.delete_node("gpu-node-0")
    third = _by_name(driver.list_nodes())
    assert sorted(third) == ["gpu-node-1", "gpu-node-2"]
    assert third["gpu-node-1"].unhealthy_gpus == ()
