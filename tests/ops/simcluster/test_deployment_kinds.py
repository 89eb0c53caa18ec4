"""The simulated cluster stores, lists and refuses the kinds a deployment of RemoteGPU is made of
(apps/v1, batch/v1, policy/v1, rbac.authorization.k8s.io/v1, ServiceAccounts), as the API server does."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[SimulatedCluster, client.ApiClient, Path]]:
    with SimulatedCluster(NodeTemplate(count=1, gpus=1), start_delay=dt.timedelta(seconds=0.1)) as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        yield cluster, config.new_client_from_config(str(kubeconfig)), kubeconfig


def _deployment(name: str, selector: dict[str, str], labels: dict[str, str]) -> Any:
    """A Deployment as a plain manifest (the client sends dicts as they are)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            },
        },
    }


def test_discovery_names_every_group_and_its_kinds(
    sim: tuple[SimulatedCluster, client.ApiClient, Path],
) -> None:
    _, api_client, _ = sim
    groups = {
        g.name: g.preferred_version.version for g in client.ApisApi(api_client).get_api_versions().groups
    }
    assert groups == {
        "apps": "v1",
        "batch": "v1",
        "networking.k8s.io": "v1",
        "policy": "v1",
        "rbac.authorization.k8s.io": "v1",
    }
    rbac = client.RbacAuthorizationV1Api(api_client).get_api_resources()
    assert {(r.name, r.namespaced) for r in rbac.resources} == {
        ("roles", True),
        ("rolebindings", True),
        ("clusterroles", False),
        ("clusterrolebindings", False),
    }


def test_a_deployment_is_stored_listed_and_not_run(
    sim: tuple[SimulatedCluster, client.ApiClient, Path],
) -> None:
    cluster, api_client, _ = sim
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment("default", _deployment("web", {"app": "web"}, {"app": "web"}))
    listed = apps.list_namespaced_deployment("default", label_selector="")
    assert [d.metadata.name for d in listed.items] == ["web"]
    assert apps.read_namespaced_deployment("web", "default").spec.replicas == 2
    assert client.CoreV1Api(api_client).list_namespaced_pod("default").items == [], "nothing runs it"
    with pytest.raises(client.ApiException) as exists:
        apps.create_namespaced_deployment("default", _deployment("web", {"app": "web"}, {"app": "web"}))
    assert exists.value.status == 409
    assert ("create", "apps", "deployments", "default") in cluster.requests_seen()


def test_a_selector_that_misses_its_template_is_refused_naming_the_field(
    sim: tuple[SimulatedCluster, client.ApiClient, Path],
) -> None:
    _, api_client, _ = sim
    with pytest.raises(client.ApiException) as refused:
        client.AppsV1Api(api_client).create_namespaced_deployment(
            "default", _deployment("web", {"app": "web"}, {"app": "other"})
        )
    assert refused.value.status == 422
    assert "spec.template.metadata.labels" in refused.value.body
    assert "`selector` does not match template `labels`" in refused.value.body


def test_kubectl_prints_jobs_budgets_and_roles_and_shows_validation_errors(
    sim: tuple[SimulatedCluster, client.ApiClient, Path], tmp_path: Path
) -> None:
    _, _, kubeconfig = sim
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(
        """
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Always
      containers: [{name: main, image: busybox}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [""], resources: [nodes], verbs: [get]}]
"""
    )

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    applied = kubectl("apply", "-f", str(manifest))
    assert applied.returncode == 1
    assert applied.stderr.strip() == (
        'The Job "migrate" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always":'
        " supported values: Never, OnFailure"
    )
    assert "poddisruptionbudget.policy/web created" in applied.stdout
    assert "clusterrole.rbac.authorization.k8s.io/reader created" in applied.stdout
    printed = kubectl("get", "pdb,clusterroles")
    assert printed.stdout.split("\n")[0].split() == [
        "NAME",
        "MIN",
        "AVAILABLE",
        "MAX",
        "UNAVAILABLE",
        "ALLOWED",
        "DISRUPTIONS",
        "AGE",
    ]
    assert "clusterrole.rbac.authorization.k8s.io/reader" in printed.stdout
