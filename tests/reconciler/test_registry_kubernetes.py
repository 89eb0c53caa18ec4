"""End to end with a real registry (docker-registry 2.8), the Kubernetes driver and the simulated
cluster: the pod runs `repo@digest` and pulls with its registry's own pull Secret (a project's login for
that project's images, the platform-wide credentials for other registries), and no registry password
leaves through a log line, an answer or a row."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.accounts.users import Principal
from remotegpu.core.catalog.sync import sync_catalog
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.environments.desired import submit_environment
from remotegpu.core.environments.states import UserRole
from remotegpu.core.inventory.sync import sync_inventory
from remotegpu.core.platform.settings import Settings
from remotegpu.core.registry.configured import RegistryDocument, put_registry
from remotegpu.core.registry.credentials import RegistryLogin, set_login
from remotegpu.core.secrets.registry_credentials import (
    REGISTRY_CREDENTIALS,
    CachedRegistryCredentials,
    docker_config_for,
)
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.allocation_world import make_user, make_workspace
from remotegpu.tests.polling import poll_until
from remotegpu.tests.registry_world import ImagePusher, RunningRegistry, pusher, registry, unique_repository
from remotegpu.tests.secret_scan import SecretScan, secret_scan
from remotegpu.tests.secrets_world import builtin_store
from remotegpu.tests.specs import environment_spec

__all__ = ["pusher", "registry", "secret_scan"]


@pytest.fixture
def sim() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(
        NodeTemplate(count=1, gpus=8, model="H100"), start_delay=dt.timedelta(0)
    ) as cluster:
        yield cluster


def test_pods_run_the_pinned_digest_with_their_registry_s_pull_secret(
    engine: Engine,
    database_url: URL,
    sessions: object,
    tmp_path: Path,
    sim: SimulatedCluster,
    registry: RunningRegistry,
    pusher: ImagePusher,
    secret_scan: SecretScan,
) -> None:
    scan = secret_scan
    scan.secret("the registry password", registry.password)
    project_password = scan.secret("the project robot's secret", f"robot-secret-{uuid.uuid4().hex}")
    platform_password = scan.secret("the platform-wide password", f"platform-pw-{uuid.uuid4().hex}")
    store = builtin_store(engine)
    store.put(
        REGISTRY_CREDENTIALS, json.dumps(docker_config_for("harbor.example.org", "robot", platform_password))
    )
    with engine.begin() as connection:
        admin = make_user(connection)
        connection.execute(text("UPDATE users SET role = 'admin' WHERE id = :id"), {"id": admin})
        workspace = make_workspace(connection, admin, name="research")
        principal = Principal(admin, "root", "root@example.org", UserRole.ADMIN)
        config = put_registry(
            connection,
            principal,
            "lab",
            RegistryDocument("oci", registry.url, ["ml"], {"team": "research"}, host=registry.host),
        )
        set_login(connection, principal, store, config, RegistryLogin(registry.username, registry.password))
        set_login(
            connection,
            principal,
            store,
            config,
            RegistryLogin("robot$team", project_password),
            project="team",
        )
    public, private = unique_repository("ml"), unique_repository("team")
    image = pusher.image(public, "v1")
    team_image = pusher.image(private, "v1")

    driver = KubernetesCluster.from_kubeconfig(
        str(sim.write_kubeconfig(tmp_path / "kubeconfig")),
        registry_credentials=CachedRegistryCredentials(store, ttl_seconds=0),
    )
    with engine.begin() as connection:
        sync_inventory(connection, driver.list_nodes())
    reconciler = Reconciler(
        database_url, driver, Settings(), identity="registry-e2e", listen=False, secrets=store
    )
    try:
        assert reconciler.ctx.registries is not None
        (report,) = sync_catalog(engine, reconciler.ctx.registries)
        assert report.images == 2
        envs = {}
        with engine.begin() as connection:
            for name, reference in (
                ("public", f"{registry.host}/{public}:v1"),
                ("team", f"{registry.host}/{private}:v1"),
                ("elsewhere", "harbor.example.org/ml/pytorch:24.05"),
            ):
                spec = environment_spec(name, {"image": reference, "command": ["sleep", "infinity"]})
                envs[name] = submit_environment(connection, workspace_id=workspace, user_id=admin, spec=spec)

        def phases() -> set[str]:
            reconciler.run_until_idle()
            with engine.connect() as connection:
                return set(connection.execute(text("SELECT phase::text FROM environments")).scalars())

        poll_until(phases, 20, "every environment running", until=lambda found: found == {"running"})
    finally:
        reconciler.close()

    api = client.CoreV1Api(driver._core.api_client)

    def pod(environment: uuid.UUID) -> Any:
        return api.read_namespaced_pod(f"env-{environment}", "default")

    def pulled_with(name: str) -> dict[str, str]:
        secret: Any = api.read_namespaced_secret(name, "default")
        assert secret.type == "kubernetes.io/dockerconfigjson"
        auths = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))["auths"]
        return {key: base64.b64decode(value["auth"]).decode() for key, value in auths.items()}

    public_pod, team_pod, other_pod = pod(envs["public"]), pod(envs["team"]), pod(envs["elsewhere"])
    assert public_pod.spec.containers[0].image == f"{registry.host}/{public}@{image.digest}"
    assert team_pod.spec.containers[0].image == f"{registry.host}/{private}@{team_image.digest}"
    assert other_pod.spec.containers[0].image == "harbor.example.org/ml/pytorch:24.05", (
        "not configured: by tag"
    )
    (own,) = public_pod.spec.image_pull_secrets
    assert own.name == "remotegpu-pull-lab"
    assert pulled_with(own.name) == {registry.host: f"{registry.username}:{registry.password}"}
    (project,) = team_pod.spec.image_pull_secrets
    assert project.name.startswith("remotegpu-pull-lab-")
    assert pulled_with(project.name) == {f"{registry.host}/team": f"robot$team:{project_password}"}
    assert [s.name for s in other_pod.spec.image_pull_secrets] == ["remotegpu-pull"]

    scan.database(engine)
    assert scan.leaks() == []
