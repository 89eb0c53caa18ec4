"""The reconcile benchmark runs end to end on a small load and reports clean figures."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config
from rich.console import Console
from sqlalchemy import Engine, text

from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.cluster.manifests import ENVIRONMENT_LABEL, MANAGED_LABEL, MANAGER
from remotegpu.ops.bench.reconcile import ReconcileBenchConfig, cluster_object_violations, run
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.tests.allocation_world import make_environment, make_user, make_workspace
from remotegpu.tests.ops.bench.same_run import CALIBRATION, assert_same_run_figures

EXPECTED = {
    "envs",
    "envs_per_s",
    "submit_to_running_p50_ms",
    "submit_to_running_p99_ms",
    "idle_submit_to_running_p50_ms",
    "failover_s",
    "violations",
    "peak_rss_mib",
    "cpu_ms_per_env",
    "db_rows_per_env",
    "db_bytes_per_env",
    "jobs_us_per_env",
    "job_metering_ms",
    "job_host_heartbeats_ms",
    "steady_resyncs_asked_per_s",
    "steady_resyncs_per_s",
    "steady_cpu_ms_per_resync",
}
SAME_RUN = ("ceiling_envs_per_s", "ratio_envs", *CALIBRATION)


def test_small_run_reports_every_figure_and_no_violation() -> None:
    output = io.StringIO()
    figures = run(
        console=Console(file=output, width=120),
        config=ReconcileBenchConfig(envs=20, idle_samples=2, steady_seconds=3, resync_seconds=1),
    )
    assert set(figures) >= EXPECTED
    assert_same_run_figures(figures, SAME_RUN, output.getvalue())
    assert figures["violations"] == 0
    assert figures["envs"] == 20
    assert figures["failover_s"] > 0
    assert figures["submit_to_running_p99_ms"] >= figures["submit_to_running_p50_ms"] > 0
    assert "envs_per_s" in output.getvalue()
    # 20 running, resynced every second or a little more (a step, the next lease): over three seconds the
    # steady phase sees two or three rounds of them, and not many times more
    assert figures["steady_resyncs_asked_per_s"] == 20
    assert 5 < figures["steady_resyncs_per_s"] < 60
    assert figures["steady_cpu_ms_per_resync"] > 0


def test_small_run_on_the_simulated_cluster_reports_both_ceilings() -> None:
    output = io.StringIO()
    figures = run(
        console=Console(file=output, width=120),
        config=ReconcileBenchConfig(
            envs=8,
            idle_samples=1,
            cluster="sim",
            nodes=3,
            pod_create_samples=20,
            steady_seconds=3,
            resync_seconds=1,
        ),
    )
    expected = (*SAME_RUN, "ceiling_statements_envs_per_s", "ratio_statements_envs", "sim_pod_create_p50_ms")
    assert_same_run_figures(figures, expected, output.getvalue())
    assert figures["violations"] == 0
    assert 0 < figures["sim_cpu_share"] < 16, "the simulated cluster's CPU is measured over the flood"
    assert figures["steady_resyncs_per_s"] > 0
    assert figures["steady_sim_cpu_ms_per_resync"] >= 0


def test_the_cluster_check_finds_what_the_cluster_holds_against_the_database(
    engine: Engine, sessions: object, tmp_path: Path
) -> None:
    with engine.begin() as connection:
        user = make_user(connection)
        running = make_environment(connection, make_workspace(connection, user), user).environment_id
        connection.execute(text("UPDATE environments SET phase = 'running' WHERE id = :e"), {"e": running})
    stray = uuid.uuid4()
    with SimulatedCluster(NodeTemplate(count=1, gpus=8, model="H100")) as sim:
        kubeconfig = str(sim.write_kubeconfig(tmp_path / "kubeconfig"))
        api = client.CoreV1Api(config.new_client_from_config(kubeconfig))  # type: ignore[no-untyped-call]
        for environment in (running, stray):
            labels = {MANAGED_LABEL: MANAGER, ENVIRONMENT_LABEL: str(environment)}
            body: Any = {
                "metadata": {"name": f"env-{environment}", "labels": labels},
                "spec": {"containers": [{"name": "main", "image": "probe:1"}]},
            }
            api.create_namespaced_pod("default", body)
        problems = cluster_object_violations(engine, KubernetesCluster.from_kubeconfig(kubeconfig))
    assert sorted(problems) == [
        f"a pod for environment {stray}, which is not running",
        f"no service for running environment {running}",
    ]
