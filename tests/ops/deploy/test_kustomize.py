"""The Kubernetes deployment renders, validates against the official schemas, holds the properties the
README promises, and applies into the simulated cluster with plain `kubectl apply -k`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from remotegpu.core.platform.settings import load_settings
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.tests.ops.deploy.rendering import DEPLOY, OVERLAYS, find, render

VERSION = "1.31"


def _pod_templates(objects: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in {"Deployment", "DaemonSet", "Job"}
    ]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_of_the_overlay_is_valid_against_the_official_schema(overlay: str) -> None:
    objects = render(overlay)
    assert len(objects) > 20
    for manifest in objects:
        kubernetes_validate.validate(manifest, VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_non_root_on_a_read_only_root_with_requests_and_limits(overlay: str) -> None:
    templates = _pod_templates(render(overlay))
    assert {name for name, _ in templates} == {
        "remotegpu-api",
        "remotegpu-reconciler",
        "remotegpu-agent",
        "remotegpu-migrations",
    }
    for name, spec in templates:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), where
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), where
            assert "nvidia.com/gpu" not in container["resources"]["limits"], where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_is_ready_when_its_database_answers_and_reconcilers_are_a_leader_and_a_standby(
    overlay: str,
) -> None:
    objects = render(overlay)
    api = find(objects, "Deployment", "remotegpu-api")["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    reconciler = find(objects, "Deployment", "remotegpu-reconciler")
    assert reconciler["spec"]["replicas"] == 2
    container = reconciler["spec"]["template"]["spec"]["containers"][0]
    settings = find(objects, "ConfigMap", "remotegpu-settings")["data"]
    assert settings["REMOTEGPU_RECONCILER_METRICS_HOST"] == "0.0.0.0"
    assert container["ports"] == [
        {
            "name": "metrics",
            "containerPort": int(settings["REMOTEGPU_RECONCILER_METRICS_PORT"]),
            "protocol": "TCP",
        }
    ]
    assert container["envFrom"] == [
        {"configMapRef": {"name": find(objects, "ConfigMap", "remotegpu-settings")["metadata"]["name"]}}
    ]
    budgets = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert budgets == {
        "remotegpu-api": {
            "minAvailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "remotegpu-api"}},
        },
        "remotegpu-reconciler": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "remotegpu-reconciler"}},
        },
    }
    assert find(objects, "NetworkPolicy", "remotegpu-default-deny")["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_run_first_and_secrets_come_from_secret_references(overlay: str) -> None:
    objects = render(overlay)
    job = find(objects, "Job", "remotegpu-migrations")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["db", "upgrade"]
    database = {"secretKeyRef": {"name": "remotegpu-database", "key": "url"}}
    assert _env(job)["DATABASE_URL"] == database
    for name in ("remotegpu-api", "remotegpu-reconciler"):
        spec = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert [c["args"][:2] for c in spec["initContainers"]] == [["db", "wait"]], name
        env = _env(spec["containers"][0])
        assert env["DATABASE_URL"] == database
        assert env["REMOTEGPU_SECRETS_KEY"] == {
            "secretKeyRef": {"name": "remotegpu-keys", "key": "secrets-key"}
        }
    api_env = _env(find(objects, "Deployment", "remotegpu-api")["spec"]["template"]["spec"]["containers"][0])
    assert api_env["REMOTEGPU_JWT_SECRET"] == {
        "secretKeyRef": {"name": "remotegpu-keys", "key": "jwt-secret"}
    }
    assert not [o for o in objects if o["kind"] == "Secret"], "no secret value is ever committed"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_settings_config_map_holds_only_settings_remotegpu_knows(overlay: str) -> None:
    data = find(render(overlay), "ConfigMap", "remotegpu-settings")["data"]
    settings = load_settings({**data, "DATABASE_URL": "postgresql://remotegpu@db/remotegpu"})
    assert settings.kubernetes_namespace == "remotegpu-workloads"
    assert settings.api_host == settings.reconciler_metrics_host == "0.0.0.0"
    assert settings.reconciler_metrics_port == 9465
    assert settings.gpu_binding == "device-plugin"


def test_overlays_differ_in_size_and_image_only_where_meant() -> None:
    dev, production = render("dev"), render("production")
    assert find(dev, "Deployment", "remotegpu-api")["spec"]["replicas"] == 1
    assert find(production, "Deployment", "remotegpu-api")["spec"]["replicas"] == 3
    images = {c["image"] for _, spec in _pod_templates(production) for c in spec["containers"]}
    assert images == {"ghcr.io/remotegpu/remotegpu:0.1.0"}
    assert {c["image"] for _, spec in _pod_templates(dev) for c in spec["containers"]} == {
        "ghcr.io/remotegpu/remotegpu:dev"
    }


def test_kubectl_apply_of_the_dev_overlay_into_the_simulated_cluster_succeeds(tmp_path: Path) -> None:
    with SimulatedCluster(NodeTemplate(count=1, gpus=2), start_delay=dt.timedelta(seconds=0.1)) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")

        def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["kubectl", "--kubeconfig", str(kubeconfig), *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        applied = kubectl("apply", "-k", str(DEPLOY / "overlays" / "dev"))
        assert applied.returncode == 0, applied.stderr
        assert applied.stderr == ""
        assert "deployment.apps/remotegpu-reconciler created" in applied.stdout
        assert len(applied.stdout.splitlines()) == len(render("dev"))
        again = kubectl("apply", "-k", str(DEPLOY / "overlays" / "dev"))
        assert again.returncode == 0, again.stderr
        assert "created" not in again.stdout
        listed = kubectl("get", "deployments,daemonsets,jobs,pdb", "-n", "remotegpu")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.split()
        assert "deployment.apps/remotegpu-reconciler" in lines
        assert "0/2" in lines, "a stored Deployment is printed, and nothing runs it"
        stored = json.loads(kubectl("get", "clusterroles", "-o", "json").stdout)["items"]
        assert {item["metadata"]["name"] for item in stored} == {"remotegpu-agent", "remotegpu-reconciler"}
