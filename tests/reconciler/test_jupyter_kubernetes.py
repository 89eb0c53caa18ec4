"""Jupyter access end to end over HTTP: reconciler → Kubernetes driver → simulated cluster.

The pod reads its token from the Secret the reconciler wrote from the secrets store, and an image without
`jupyter` (the simulated kubelet fails the readiness probe of images whose reference says `nojupyter`)
gives the environment the `JupyterUnavailable` condition. The token appears nowhere else.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.cluster.driver import WorkloadSpec
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.environments.desired import set_desired_state, submit_environment
from remotegpu.core.environments.jupyter import jupyter_token_path
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.inventory.sync import sync_inventory
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.builtin import EncryptedSecretStore
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.allocation_world import make_user, make_workspace
from remotegpu.tests.polling import poll_until
from remotegpu.tests.reconciler.world import SPEC
from remotegpu.tests.secrets_world import builtin_store
from remotegpu.tests.specs import environment_spec


@dataclass
class Stack:
    engine: Engine
    api: client.CoreV1Api
    reconciler: Reconciler
    secrets: EncryptedSecretStore
    workspace: uuid.UUID
    user: uuid.UUID

    def submit(self, name: str, spec: dict[str, Any]) -> uuid.UUID:
        with self.engine.begin() as connection:
            return submit_environment(
                connection, workspace_id=self.workspace, user_id=self.user, spec=environment_spec(name, spec)
            )

    def converge(self, check: Callable[[], bool], what: str) -> None:
        """Run the reconciler until `check` holds; the simulated kubelet works in real time, so poll."""

        def reconciled() -> bool:
            self.reconciler.run_until_idle()
            return check()

        poll_until(reconciled, 20, what, interval_s=0.05)

    def column(self, env: uuid.UUID, name: str) -> Any:
        with self.engine.connect() as connection:
            query = text(f"SELECT {name} FROM environments WHERE id = :e")
            return connection.execute(query, {"e": env}).scalar_one()


def _read(read: Callable[..., Any], name: str) -> Any:
    """An object of the default namespace as the API server's JSON."""
    return json.loads(read(name, "default", _preload_content=False).data)


@pytest.fixture
def stack(engine: Engine, database_url: URL, sessions: object, tmp_path: Path) -> Iterator[Stack]:
    template = NodeTemplate(count=1, gpus=8, model="H100")
    with SimulatedCluster(template, start_delay=dt.timedelta(milliseconds=50)) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        driver = KubernetesCluster.from_kubeconfig(str(kubeconfig))
        with engine.begin() as connection:
            sync_inventory(connection, driver.list_nodes())
            user = make_user(connection)
            workspace = make_workspace(connection, user)
        api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        secrets = builtin_store(engine)
        # The simulated kubelet probes at once: no grace needed before a failing probe counts.
        settings = Settings(jupyter_probe_grace_seconds=0)
        reconciler = Reconciler(
            database_url, driver, settings, identity="jupyter-e2e", listen=False, secrets=secrets
        )
        try:
            yield Stack(engine, api, reconciler, secrets, workspace, user)
        finally:
            reconciler.close()


def test_the_pod_reads_the_token_the_store_keeps_through_its_secret_and_nowhere_else(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = stack.submit("notebook", SPEC)
    stack.converge(lambda: stack.column(env, "phase") == "running", "the environment to run")
    token = stack.secrets.get(jupyter_token_path(stack.workspace, env))
    assert isinstance(token, str)

    pod = _read(stack.api.read_namespaced_pod, f"env-{env}")
    variables = {variable["name"]: variable for variable in pod["spec"]["containers"][0]["env"]}
    reference = variables["JUPYTER_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": f"env-{env}-jupyter", "key": "JUPYTER_TOKEN"}
    assert variables["REMOTEGPU_JUPYTER_PORT"]["value"] == "8888"
    secret = _read(stack.api.read_namespaced_secret, f"env-{env}-jupyter")
    assert base64.b64decode(secret["data"]["JUPYTER_TOKEN"]).decode() == token
    assert pod["status"]["containerStatuses"][0]["ready"]

    serialised = json.dumps(pod)
    listing: Any = stack.api.list_namespaced_event("default", _preload_content=False)
    cluster_events = listing.data.decode()
    with stack.engine.connect() as connection:
        our_events = json.dumps(
            [
                list(map(str, row))
                for row in connection.execute(text("SELECT reason, message, data FROM events"))
            ]
        )
    for where, text_ in {"pod": serialised, "cluster events": cluster_events, "events": our_events}.items():
        assert token not in text_, f"the token is in the {where}"
    assert token not in caplog.text

    with stack.engine.begin() as connection:
        set_desired_state(connection, env, DesiredState.DELETED)
    stack.converge(lambda: stack.column(env, "deleted_at") is not None, "the environment to be deleted")
    with pytest.raises(client.ApiException) as gone:
        stack.api.read_namespaced_secret(f"env-{env}-jupyter", "default")
    assert gone.value.status == 404


def test_an_image_without_jupyter_gives_the_condition_with_the_fix(stack: Stack) -> None:
    env = stack.submit("plain", SPEC | {"image": "harbor.example.org/ml/cuda-nojupyter:12"})

    def unavailable() -> bool:
        types = [condition["type"] for condition in stack.column(env, "conditions")]
        return stack.column(env, "phase") == "running" and types == ["JupyterUnavailable"]

    stack.converge(unavailable, "the environment to run with JupyterUnavailable")
    (condition,) = stack.column(env, "conditions")
    assert "use an image with Jupyter (e.g. jupyter/base-notebook" in condition["message"]
    assert "or drop `jupyter` from access" in condition["message"]
    reasons = {event.reason for event in stack.api.list_namespaced_event("default").items}
    assert "Unhealthy" in reasons, "the kubelet reports the failing readiness probe"


def test_writing_an_environment_secret_is_idempotent_and_replaces_other_data(stack: Stack) -> None:
    workload = WorkloadSpec(uuid.uuid4(), stack.workspace, 1, "gpu-node-0", "img")
    driver = stack.reconciler.ctx.cluster
    ids = (workload.environment_id, workload.workspace_id)
    assert driver.ensure_environment_secret(*ids, "jupyter", {"JUPYTER_TOKEN": "first"})
    assert not driver.ensure_environment_secret(*ids, "jupyter", {"JUPYTER_TOKEN": "first"})
    assert driver.ensure_environment_secret(*ids, "jupyter", {"JUPYTER_TOKEN": "second"})
    secret = _read(stack.api.read_namespaced_secret, f"env-{workload.environment_id}-jupyter")
    assert base64.b64decode(secret["data"]["JUPYTER_TOKEN"]) == b"second"
    assert driver.delete_workload(workload.environment_id, keep_volumes=False)
