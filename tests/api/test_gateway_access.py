"""Gateway endpoints through the API and the CLI: `GET /environments/{id}/access` and `remotegpu access`
list the gateway connection next to the direct endpoints, to those who may operate the environment only;
a workspace may pick a gateway only where the deployment lets it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.gateways.credentials import store_gateway_login
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.builtin import EncryptedSecretStore, SecretKeys
from remotegpu.ops.cli.app import app
from remotegpu.ops.fakes.guacamole import FakeGuacamole
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.allocation_world import make_host
from remotegpu.tests.api.conftest import SECRETS_KEY, Caller, spec
from remotegpu.tests.reconciler.gateway_world import ADMIN


@pytest.fixture
def guacamole() -> Iterator[FakeGuacamole]:
    with FakeGuacamole(admin_username=ADMIN.username, admin_password=ADMIN.password) as fake:
        yield fake
        assert fake.unexpected == []


@pytest.fixture
def gateway_reconciler(
    engine: Engine,
    database_url: URL,
    api_cluster: InMemoryCluster,
    sessions: sessionmaker[Session],
    guacamole: FakeGuacamole,
) -> Iterator[Reconciler]:
    """A reconciler on two hosts of the API's cluster whose deployment publishes SSH through Guacamole."""
    with engine.begin() as connection:
        api_cluster.nodes.update(
            {f"node-{i}": make_host(connection, gpus=8, name=f"node-{i}") for i in range(2)}
        )
    store_gateway_login(EncryptedSecretStore(engine, SecretKeys(SECRETS_KEY)), "guacamole", ADMIN)
    settings = Settings(secrets_key=SECRETS_KEY, gateway="guacamole", guacamole_url=guacamole.url)
    made = Reconciler(database_url, api_cluster, settings, identity="api-gateway-test", listen=False)
    yield made
    made.close()
    for held in (
        api_cluster.nodes,
        api_cluster.pods,
        api_cluster.volumes,
        api_cluster.creates,
        api_cluster.secrets,
    ):
        held.clear()


def test_the_gateway_endpoint_is_listed_to_those_who_may_operate_the_environment(
    new_user: Callable[[str], Caller],
    gateway_reconciler: Reconciler,
    guacamole: FakeGuacamole,
    api_url: str,
    tmp_path: Path,
) -> None:
    owner, member, colleague = new_user("gina"), new_user("milo"), new_user("ada")
    workspace = owner.post("/workspaces", json={"name": "vision"}).json()["id"]
    owner.post(f"/workspaces/{workspace}/members", json={"user": member.email, "role": "member"})
    owner.post(f"/workspaces/{workspace}/members", json={"user": colleague.email, "role": "admin"})
    applied = owner.post("/environments/apply", json=spec("box", "vision"))
    assert applied.status_code == 200, applied.text
    environment = applied.json()["environment"]["id"]
    gateway_reconciler.run_until_idle()

    listed = owner.get(f"/environments/{environment}/access").json()
    assert [detail["kind"] for detail in listed] == ["ssh", "guacamole"]
    [connection] = guacamole.connections.values()
    assert listed[1]["url"].startswith(f"{guacamole.url}/#/client/")
    assert guacamole.readers_of(connection.identifier) == {"gina"}
    assert listed[1]["container_port"] == listed[0]["container_port"]
    seen_by_member = member.get(f"/environments/{environment}/access").json()
    assert [detail["kind"] for detail in seen_by_member] == ["ssh"], "a member who may not operate it"
    seen_by_admin = colleague.get(f"/environments/{environment}/access").json()
    assert [detail["kind"] for detail in seen_by_admin] == ["ssh"], "the gateway does not let admins in"
    assert seen_by_admin[0]["command"] is not None, "though they may operate it"

    api_token = owner.post("/auth/tokens", json={"name": "cli"}).json()["token"]
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "400"}
    env |= {"REMOTEGPU_SERVER_URL": api_url, "REMOTEGPU_TOKEN": api_token}
    printed = CliRunner().invoke(app, ["access", "box", "-o", "json"], env=env)
    assert printed.exit_code == 0, printed.output
    assert listed[1]["url"] in printed.output

    owner.post(f"/environments/{environment}/stop")
    gateway_reconciler.run_until_idle()
    assert guacamole.connections == {}
    assert owner.get(f"/environments/{environment}/access").json() == []


def test_a_workspace_cannot_pick_a_gateway_where_the_deployment_decides(
    new_user: Callable[[str], Caller],
) -> None:
    owner = new_user("gail")
    workspace = owner.post("/workspaces", json={"name": "nlp"}).json()["id"]
    refused = owner.put(f"/workspaces/{workspace}/settings", json={"gateway": "guacamole"})
    assert refused.status_code == 422
    assert "$.gateway" in refused.text
    assert "workspace_gateways" in refused.text
    unknown = owner.put(f"/workspaces/{workspace}/settings", json={"gateway": "telnet"})
    assert unknown.status_code == 422
    assert "gateway" in unknown.text
    kept = owner.put(f"/workspaces/{workspace}/settings", json={"gateway": None})
    assert kept.status_code == 200
    assert kept.json()["gateway"] is None
