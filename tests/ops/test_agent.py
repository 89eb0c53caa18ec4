"""The host agent reads GPUs through NVML (here the contract fake, injected where the agent imports
`pynvml`), publishes them as its node's annotations in the simulated cluster, and inventory sync takes a
GPU that turns unhealthy or disappears out of the pool."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from remotegpu.core.accounts.users import Principal
from remotegpu.core.capacity.audit import audit
from remotegpu.core.cluster.kubernetes.client import api_client_from_kubeconfig
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.environments.states import GpuHealth, UserRole
from remotegpu.core.inventory.control import set_health
from remotegpu.core.inventory.gpu_report import readings_from_annotations
from remotegpu.core.inventory.sync import sync_inventory
from remotegpu.ops.agent.nvml_reader import NvmlReader
from remotegpu.ops.agent.publisher import NodeAnnotations
from remotegpu.ops.agent.runner import run_agent
from remotegpu.ops.cli.app import app
from remotegpu.ops.fakes import nvml as fake_nvml
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.ops.simcluster.kubelets import NODES
from remotegpu.tests.allocation_world import make_user
from remotegpu.tests.ops.processes import command_env, started
from remotegpu.tests.polling import poll_until

H100 = "NVIDIA H100 80GB HBM3"


class FakeGpus:
    """The fake NVML's state file: the GPUs of a pretend node."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.gpus: list[dict[str, Any]] = [
            {"uuid": f"GPU-0000000{i}-aaaa-bbbb-cccc-00000000000{i}", "name": H100, "memory_mib": 81559}
            for i in range(3)
        ]
        self.write()

    def write(self) -> None:
        """Replace the file at once: the agent's thread reads it at any moment."""
        staged = self.path.with_suffix(".new")
        staged.write_text(json.dumps({"gpus": self.gpus, "driver_version": "550.54.15"}))
        staged.replace(self.path)

    def change(self, index: int, **fields: Any) -> None:
        self.gpus[index].update(fields)
        self.write()


@pytest.fixture
def gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeGpus:
    """A fake NVML in place of pynvml, with three H100s."""
    state = FakeGpus(tmp_path / "nvml.json")
    monkeypatch.setenv(fake_nvml.STATE_VARIABLE, str(state.path))
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml)
    return state


def test_once_prints_what_nvml_reports_and_the_annotations(gpus: FakeGpus) -> None:
    gpus.change(1, ecc_uncorrected=2)
    gpus.change(2, clocks_event_reasons=fake_nvml.nvmlClocksEventReasonSwPowerCap)
    result = CliRunner().invoke(app, ["agent", "--once"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = [line.split(None, 4) for line in result.output.splitlines()[1:4]]
    assert [row[:2] for row in rows] == [[str(i), gpus.gpus[i]["uuid"]] for i in range(3)]
    assert "81559 MiB  healthy" in result.output.splitlines()[1]
    assert "unhealthy  2 uncorrected ECC errors" in result.output.splitlines()[2]
    assert "healthy    software power cap" in result.output.splitlines()[3]
    assert "remotegpu.io/gpu-uuids: " + ",".join(g["uuid"] for g in gpus.gpus) in result.output


def test_once_without_a_driver_is_one_readable_line(gpus: FakeGpus) -> None:
    gpus.path.write_text(json.dumps({"gpus": [], "driver_loaded": False}))
    result = CliRunner().invoke(app, ["agent", "--once"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: NVML is not available (Driver Not Loaded): run the agent on a GPU node with the NVIDIA"
        " driver (in a pod: with the nvidia runtime class)"
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[SimulatedCluster, Path]]:
    with SimulatedCluster(NodeTemplate(count=1, gpus=1), start_delay=dt.timedelta(seconds=0.05)) as sim:
        yield sim, sim.write_kubeconfig(tmp_path / "kubeconfig")


def _gpu_rows(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as connection:
        return [
            (row.device_uuid, row.health, row.health_reason)
            for row in connection.execute(
                text("SELECT device_uuid, health, health_reason FROM gpus ORDER BY index")
            )
        ]


def _pool(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        row = connection.execute(text("SELECT total, free FROM gpu_pools")).one()
        return int(row.total), int(row.free)


def test_the_agent_publishes_the_gpus_and_an_unhealthy_or_missing_gpu_leaves_the_pool(
    gpus: FakeGpus, cluster: tuple[SimulatedCluster, Path], engine: Engine, sessions: object
) -> None:
    sim, kubeconfig = cluster
    driver = KubernetesCluster.from_kubeconfig(str(kubeconfig))
    publisher = NodeAnnotations(api_client_from_kubeconfig(str(kubeconfig)), "gpu-node-0")
    stop, published = threading.Event(), threading.Event()

    def on_round(_readings: object, written: bool) -> None:
        if written:
            published.set()

    agent = threading.Thread(
        target=run_agent,
        args=(NvmlReader(fake_nvml), publisher, stop),
        kwargs={"interval_s": 0.1, "on_round": on_round},
    )
    agent.start()

    def synced() -> list[tuple[str, str, str | None]]:
        with engine.begin() as connection:
            sync_inventory(connection, driver.list_nodes())
        return _gpu_rows(engine)

    def report() -> list[Any]:
        node = sim.store.get(NODES, None, "gpu-node-0")
        return readings_from_annotations(node["metadata"]["annotations"]) or []

    try:
        poll_until(published.is_set, 10, "the agent's first report")
        assert [(r.uuid, r.model, r.memory_mib, r.healthy) for r in report()] == [
            (g["uuid"], H100, 81559, True) for g in gpus.gpus
        ]
        assert synced() == [(g["uuid"], "healthy", None) for g in gpus.gpus]
        with engine.connect() as connection:
            assert connection.execute(text("SELECT model, memory_bytes FROM gpus LIMIT 1")).one() == (
                "H100",  # the simulated node's product label names the model, as GPU feature discovery does
                81559 << 20,
            )
        assert _pool(engine) == (3, 3)

        gpus.change(1, xids=[13])  # an application's fault: the GPU stays in the pool
        gpus.change(1, xids=[13, 79])  # fallen off the bus
        poll_until(lambda: not report()[1].healthy, 10, "GPU 1 reported unhealthy")
        assert report()[1].problems == ("XID 79",)
        assert synced()[1] == (gpus.gpus[1]["uuid"], "unhealthy", "NVML: XID 79")
        assert _pool(engine) == (2, 2)

        gpus.change(2, clocks_event_reasons=fake_nvml.nvmlClocksEventReasonHwThermalSlowdown)
        poll_until(lambda: not report()[2].healthy, 10, "GPU 2 reported unhealthy")
        assert synced()[2] == (gpus.gpus[2]["uuid"], "unhealthy", "NVML: hardware thermal slowdown")
        gpus.change(2, clocks_event_reasons=0)
        poll_until(lambda: report()[2].healthy, 10, "GPU 2 reported healthy again")
        assert synced()[2] == (gpus.gpus[2]["uuid"], "healthy", None)

        gone = gpus.gpus.pop(0)
        gpus.write()
        poll_until(lambda: len(report()) == 2, 10, "GPU 0 missing from the report")
        assert synced()[0] == (gone["uuid"], "lost", "no longer reported by its node")
        assert _pool(engine) == (1, 1)
    finally:
        stop.set()
        agent.join(timeout=10)
    assert not agent.is_alive()
    with engine.connect() as connection:
        assert audit(connection) == []


def test_an_admin_s_unhealthy_mark_outlives_a_healthy_report(
    gpus: FakeGpus, cluster: tuple[SimulatedCluster, Path], engine: Engine, sessions: object
) -> None:
    _, kubeconfig = cluster
    driver = KubernetesCluster.from_kubeconfig(str(kubeconfig))
    publisher = NodeAnnotations(api_client_from_kubeconfig(str(kubeconfig)), "gpu-node-0")
    reader = NvmlReader(fake_nvml)
    reader.open()
    try:
        publisher.publish(reader.read())
    finally:
        reader.close()
    with engine.begin() as connection:
        sync_inventory(connection, driver.list_nodes())
        admin = Principal(make_user(connection, "root"), "root", "root@example.org", UserRole.ADMIN)
        gpu = connection.execute(text("SELECT id FROM gpus ORDER BY index LIMIT 1")).scalar_one()
        set_health(connection, admin, gpu, GpuHealth.UNHEALTHY, "fan noise")
    with engine.begin() as connection:
        sync_inventory(connection, driver.list_nodes())
    assert _gpu_rows(engine)[0] == (gpus.gpus[0]["uuid"], "unhealthy", "fan noise")


def test_the_simulated_cluster_s_nodes_carry_the_agent_s_report(
    cluster: tuple[SimulatedCluster, Path], engine: Engine, sessions: object
) -> None:
    sim, kubeconfig = cluster
    driver = KubernetesCluster.from_kubeconfig(str(kubeconfig))
    (node,) = driver.list_nodes()
    assert node.gpu_reported
    sim.report_gpu("gpu-node-0", 0, problem="XID 48")
    with engine.begin() as connection:
        sync_inventory(connection, driver.list_nodes())
    assert [row[1:] for row in _gpu_rows(engine)] == [("unhealthy", "NVML: XID 48")]


def test_sigterm_stops_the_agent_cleanly(
    gpus: FakeGpus, cluster: tuple[SimulatedCluster, Path], tmp_path: Path
) -> None:
    _, kubeconfig = cluster
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "pynvml.py").write_text("from remotegpu.ops.fakes.nvml import *  # noqa: F403\n")
    env = command_env(
        PYTHONPATH=os.pathsep.join([str(shim), os.environ.get("PYTHONPATH", "")]),
        REMOTEGPU_FAKE_NVML=str(gpus.path),
        NODE_NAME="gpu-node-0",
    )
    with started(["agent", "--kubeconfig", str(kubeconfig), "--interval", "0.2"], env) as (process, output):
        assert output.wait_for("Published 3 GPUs.", timeout_s=30), output.text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert output.wait_for("Stopped.", timeout_s=5), output.text()
