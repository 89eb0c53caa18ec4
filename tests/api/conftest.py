"""The API served over real HTTP (uvicorn on a free port) against the test database, and signed-in
clients: a platform admin and users registered through the API itself."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from remotegpu.api.app import create_app
from remotegpu.core.accounts.users import register_user
from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.environments.states import UserRole
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.api_server import running_api
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.allocation_world import make_host

PASSWORD = "correct horse battery"


JWT_SECRET = "remotegpu-api-tests-signing-key-of-48-characters"  # a test key; conftest may be imported twice
SECRETS_KEY = "cmVtb3RlZ3B1LWFwaS10ZXN0cy1zZWNyZXRzLWtleSE="
"""The built-in secrets store's key, shared by the API (which reads Jupyter tokens) and the reconciler."""


@pytest.fixture(scope="session")
def api_cluster() -> InMemoryCluster:
    """The cluster the API reads logs from (tests that run a reconciler drive this one too)."""
    return InMemoryCluster()


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local dataset backend's folder of the test API."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="session")
def api_url(engine: Engine, api_cluster: InMemoryCluster, dataset_dir: Path) -> Iterator[str]:
    """Base URL of one API process for the whole run (rows are cleaned between tests)."""
    settings = Settings(
        jwt_secret=JWT_SECRET,
        login_attempts_per_minute=1000,
        login_failures_per_account_per_hour=1000,
        secrets_key=SECRETS_KEY,
        dataset_dir=dataset_dir,
        dataset_chunk_bytes=1 << 20,
    )
    with running_api(create_app(settings, engine, logs=api_cluster)) as url:
        yield url


@pytest.fixture
def reconciler(
    engine: Engine, database_url: URL, api_cluster: InMemoryCluster, sessions: sessionmaker[Session]
) -> Iterator[Reconciler]:
    """A reconciler (driven by the test) on two 8-GPU hosts of the API's cluster."""
    with engine.begin() as connection:
        api_cluster.nodes.update(
            {f"node-{i}": make_host(connection, gpus=8, name=f"node-{i}") for i in range(2)}
        )
    made = Reconciler(
        database_url, api_cluster, Settings(secrets_key=SECRETS_KEY), identity="api-test", listen=False
    )
    yield made
    made.close()
    api_cluster.nodes.clear()
    api_cluster.pods.clear()
    api_cluster.volumes.clear()
    api_cluster.creates.clear()
    api_cluster.secrets.clear()
    api_cluster.without_jupyter.clear()
    api_cluster.sync_jobs.clear()
    api_cluster.failing_syncs.clear()


@dataclass
class Caller:
    """A signed-in HTTP client and who it is."""

    http: httpx.Client
    user_id: uuid.UUID
    email: str
    username: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)


@pytest.fixture
def anonymous(api_url: str, sessions: sessionmaker[Session]) -> Iterator[httpx.Client]:
    """A client with no credentials (rows are cleaned after the test)."""
    with httpx.Client(base_url=f"{api_url}/api/v1", timeout=30) as client:
        yield client


@pytest.fixture
def new_user(api_url: str, anonymous: httpx.Client) -> Iterator[Callable[[str], Caller]]:
    """Register a user through the API, sign in, and return a client acting as them."""
    clients: list[httpx.Client] = []

    def make(username: str) -> Caller:
        email = f"{username}@example.org"
        created = anonymous.post(
            "/auth/register", json={"email": email, "username": username, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        token = anonymous.post("/auth/login", json={"email": email, "password": PASSWORD}).json()[
            "access_token"
        ]
        client = httpx.Client(
            base_url=f"{api_url}/api/v1", timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        clients.append(client)
        return Caller(client, uuid.UUID(created.json()["id"]), email, username)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def admin(api_url: str, engine: Engine, anonymous: httpx.Client) -> Iterator[Caller]:
    """A platform administrator (created directly, as `remotegpu users create --admin` does)."""
    with engine.begin() as connection:
        user = register_user(
            connection, email="root@example.org", username="root", password=PASSWORD, role=UserRole.ADMIN
        )
    token = anonymous.post("/auth/login", json={"email": "root@example.org", "password": PASSWORD}).json()[
        "access_token"
    ]
    with httpx.Client(
        base_url=f"{api_url}/api/v1", timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield Caller(client, user.user_id, user.email, user.username)


def spec(name: str, workspace: str, **overrides: Any) -> dict[str, Any]:
    """A small valid environment spec."""
    document: dict[str, Any] = {
        "kind": "environment",
        "name": name,
        "workspace": workspace,
        "image": "nvcr.io/nvidia/pytorch:24.05-py3",
        "resources": {"gpus": {"count": 1, "model": "H100"}, "cpu": 4, "memory": "16Gi"},
        "access": ["ssh"],
    }
    document.update(overrides)
    return document
