"""A reconciler against the real test database and an in-memory cluster, driven synchronously."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.queue_places import PLACE_JOIN
from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.environments.desired import set_desired_state, submit_environment
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.store import SecretStore
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.allocation_world import make_host, make_user, make_workspace
from remotegpu.tests.secrets_world import builtin_store
from remotegpu.tests.specs import environment_spec

SPEC: dict[str, Any] = {
    "image": "harbor.example.org/ml/pytorch:24.05-cuda12",
    "command": ["sleep", "infinity"],
    "resources": {"gpus": {"count": 2, "model": "H100"}, "cpu": 8, "memory": "64Gi"},
    "access": ["ssh", "jupyter"],
    "volumes": [{"name": "data", "size": "100Gi", "mount": "/workspace"}],
}


@dataclass
class World:
    """Tenant, hosts, cluster and a reconciler, all on the test database."""

    engine: Engine
    url: URL
    cluster: InMemoryCluster
    reconciler: Reconciler
    workspace: uuid.UUID
    user: uuid.UUID
    hosts: dict[str, uuid.UUID]
    secrets: SecretStore

    def submit(self, name: str, spec: dict[str, Any] | None = None) -> uuid.UUID:
        with self.engine.begin() as connection:
            return submit_environment(
                connection,
                workspace_id=self.workspace,
                user_id=self.user,
                spec=environment_spec(name, SPEC if spec is None else spec),
            )

    def desire(self, environment_id: uuid.UUID, state: DesiredState) -> None:
        with self.engine.begin() as connection:
            set_desired_state(connection, environment_id, state)

    def row(self, environment_id: uuid.UUID) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT e.phase, e.reason, e.last_error, e.retry_count, e.next_attempt_at,"
                    " e.observed_generation, e.generation, e.host_id, e.deleted_at,"
                    " qp.position AS queue_position, qp.reason AS queue_reason"
                    f" FROM environments e {PLACE_JOIN} WHERE e.id = :id"
                ),
                {"id": environment_id},
            ).one()

    def phase(self, environment_id: uuid.UUID) -> str:
        return str(self.row(environment_id).phase)

    def active_gpu_claims(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM gpu_claims WHERE released_at IS NULL")
                ).scalar_one()
            )


def build_world(
    engine: Engine,
    url: URL,
    *,
    hosts: int = 1,
    settings: Settings | None = None,
    kill_point: Callable[[str], None] | None = None,
    secrets: SecretStore | None = None,
) -> World:
    cluster = InMemoryCluster()
    with engine.begin() as connection:
        user = make_user(connection)
        workspace = make_workspace(connection, user)
        made = {f"node-{i}": make_host(connection, gpus=8, name=f"node-{i}") for i in range(hosts)}
    cluster.nodes.update(made)
    secrets = secrets if secrets is not None else builtin_store(engine)
    reconciler = Reconciler(
        url,
        cluster,
        settings or Settings(),
        identity="test-reconciler",
        kill_point=kill_point,
        listen=False,
        secrets=secrets,
    )
    return World(engine, url, cluster, reconciler, workspace, user, made, secrets)
