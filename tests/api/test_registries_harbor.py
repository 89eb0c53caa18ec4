"""A Harbor registry (the contract fake of its API v2.0) through the API and the CLI: its projects fill
the catalog with labels and push times, a pull robot is made for one project and stored as its login
(never shown), and a Harbor that refuses or does not answer is a clear 4xx/503, never a 500."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from remotegpu.core.registry.configured import get_registry
from remotegpu.core.registry.credentials import project_login_path, read_login
from remotegpu.core.secrets.builtin import EncryptedSecretStore, SecretKeys
from remotegpu.ops.fakes.harbor import FakeHarbor, seed_demo
from remotegpu.tests.api.conftest import SECRETS_KEY, Caller
from remotegpu.tests.api.test_cli_commands import InProcess, invoke, signed_in

__all__ = ["invoke", "signed_in"]


@pytest.fixture
def harbor() -> Iterator[FakeHarbor]:
    with FakeHarbor() as fake:
        seed_demo(fake)
        yield fake


def test_harbor_projects_fill_the_catalog_and_a_project_gets_its_own_pull_robot(
    admin: Caller, engine: object, harbor: FakeHarbor, signed_in: Callable[[Caller], InProcess]
) -> None:
    assert admin.post("/workspaces", json={"name": "research"}).status_code == 201
    cli = signed_in(admin)
    body = {
        "kind": "harbor",
        "url": harbor.url,
        "public": ["library"],
        "workspaces": {"research": "research"},
    }
    assert admin.put("/registries/hub", json=body).status_code == 200
    login = cli("registry", "login", "hub", "-u", "admin", "--password-stdin", stdin=harbor.admin_password)
    assert login.exit_code == 0, login.output

    report = admin.post("/images/sync").json()["registries"]
    assert report == [{"registry": "hub", "images": 5, "gone": 0, "error": None}]
    images = {i["name"]: i for i in admin.get("/images").json()["items"]}
    finetune = images["research/llm/finetune:v1"]
    assert (finetune["visibility"], finetune["source"], finetune["registry"]) == ("private", "harbor", "hub")
    assert finetune["labels"] == ["approved", "gpu"]
    assert finetune["pushed_at"] is not None
    assert images["library/pytorch:24.05-cuda12"]["visibility"] == "public"

    made = cli("registry", "robot", "hub", "--project", "research")
    assert made.exit_code == 0, made.output
    shown = admin.get("/registries/hub").json()
    assert shown["project_logins"] == ["research"]
    robot = harbor.robot("robot$research+remotegpu-pull")
    assert robot is not None
    assert robot.secret not in made.stdout
    assert robot.secret not in str(shown)
    with engine.connect() as connection:  # type: ignore[attr-defined]
        config = get_registry(connection, "hub")
    store = EncryptedSecretStore(engine, SecretKeys(SECRETS_KEY))  # type: ignore[arg-type]
    stored = read_login(store, project_login_path(config.projects[-1].id))
    assert stored is not None
    assert (stored.username, stored.password) == (robot.name, robot.secret)

    first_secret = robot.secret
    again = admin.post("/registries/hub/robots", json={"project": "research"})
    assert again.status_code == 201, "a second call gives the robot a new secret"
    refreshed = harbor.robot("robot$research+remotegpu-pull")
    assert refreshed is not None
    stored = read_login(store, project_login_path(config.projects[-1].id))
    assert stored is not None
    assert stored.password == refreshed.secret != first_secret


def test_robots_are_refused_clearly(admin: Caller, harbor: FakeHarbor) -> None:
    assert (
        admin.put(
            "/registries/plain", json={"kind": "oci", "url": harbor.url, "public": ["library"]}
        ).status_code
        == 200
    )
    oci = admin.post("/registries/plain/robots", json={"project": "library"})
    assert oci.status_code == 422
    assert "robots are Harbor's" in oci.text
    body = {"kind": "harbor", "url": harbor.url, "public": ["library"]}
    same_host = admin.put("/registries/hub", json=body)
    assert same_host.status_code == 409
    assert same_host.json()["errors"][0]["field"] == "$.host"
    assert admin.put("/registries/hub", json={**body, "host": "harbor.lab.example.org"}).status_code == 200
    unmapped = admin.post("/registries/hub/robots", json={"project": "research"})
    assert unmapped.status_code == 404
    anonymous = admin.post("/registries/hub/robots", json={"project": "library"})
    assert anonymous.status_code == 409, "no login that may create robots"
    assert "remotegpu registry login hub" in anonymous.json()["detail"]
    login = {"username": "admin", "password": harbor.admin_password}
    assert admin.put("/registries/hub/login", json=login).status_code == 204
    harbor.fail_next(4, 503)  # the call and its three retries
    down = admin.post("/registries/hub/robots", json={"project": "library"})
    assert down.status_code == 503
    assert harbor.admin_password not in down.text
