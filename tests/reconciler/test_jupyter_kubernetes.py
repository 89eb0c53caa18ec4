"""Jupyter access end to end over HTTP: reconciler → Kubernetes driver → simulated cluster.

The pod reads its token from the Secret the reconciler wrote from the secrets store, and an image without
`jupyter` (the simulated kubelet fails the readiness probe of images whose reference says `nojupyter`)
gives the environment the `JupyterUnavailable` condition. The token appears nowhere else.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.cluster.driver import WorkloadSpec
from remotegpu.core.environments.desired import set_desired_state
from remotegpu.core.environments.jupyter import jupyter_token_path
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform.settings import Settings
from remotegpu.tests.reconciler.test_kubernetes_e2e import Stack, running_stack
from remotegpu.tests.reconciler.world import SPEC


def _read(read: Callable[..., Any], name: str) -> Any:
    """An object of the default namespace as the API server's JSON."""
    return json.loads(read(name, "default", _preload_content=False).data)


@pytest.fixture
def stack(engine: Engine, database_url: URL, sessions: object, tmp_path: Path) -> Iterator[Stack]:
    # The simulated kubelet probes at once: no grace needed before a failing probe counts.
    settings = Settings(jupyter_probe_grace_seconds=0)
    with running_stack(
        engine, database_url, tmp_path, nodes=1, settings=settings, identity="jupyter-e2e"
    ) as made:
        yield made


def test_the_pod_reads_the_token_the_store_keeps_through_its_secret_and_nowhere_else(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = stack.submit("notebook", SPEC)
    stack.converge(lambda: stack.column(env, "phase") == "running", what="the environment to run")
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
    stack.converge(lambda: stack.column(env, "deleted_at") is not None, what="the environment to be deleted")
    with pytest.raises(client.ApiException) as gone:
        stack.api.read_namespaced_secret(f"env-{env}-jupyter", "default")
    assert gone.value.status == 404


def test_an_image_without_jupyter_gives_the_condition_with_the_fix(stack: Stack) -> None:
    env = stack.submit("plain", SPEC | {"image": "harbor.example.org/ml/cuda-nojupyter:12"})

    def unavailable() -> bool:
        types = [condition["type"] for condition in stack.column(env, "conditions")]
        return stack.column(env, "phase") == "running" and types == ["JupyterUnavailable"]

    stack.converge(unavailable, what="the environment to run with JupyterUnavailable")
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
