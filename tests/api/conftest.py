"""The API served over real HTTP (uvicorn on a free port) against the test database, and signed-in
clients: a platform admin and users registered through the API itself."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from remotegpu.api.app import create_app
from remotegpu.core.accounts import register_user
from remotegpu.core.settings import Settings
from remotegpu.core.states import UserRole
from remotegpu.ops.api_server import running_api

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def api_url(engine: Engine) -> Iterator[str]:
    """Base URL of one API process for the whole run (rows are cleaned between tests)."""
    settings = Settings(jwt_secret="test-secret-" + uuid.uuid4().hex, login_attempts_per_minute=1000)
    with running_api(create_app(settings, engine)) as url:
        yield url


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
