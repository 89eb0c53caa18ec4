"""Who sees an environment's Jupyter token and SSH command: its owner and the workspace's admins and owners
do; other members see the endpoints only. `remotegpu access NAME --open` opens the URL with the token."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.ops.cli.app import app
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.api.conftest import Caller, spec


@pytest.fixture
def team(new_user: Callable[[str], Caller]) -> dict[str, Caller]:
    """A workspace whose owner is alice, with bob and dave as members and carol as admin."""
    people = {name: new_user(name) for name in ("alice", "bob", "carol", "dave")}
    workspace = people["alice"].post("/workspaces", json={"name": "research"}).json()["id"]
    for name, role in (("bob", "member"), ("carol", "admin"), ("dave", "member")):
        added = people["alice"].post(
            f"/workspaces/{workspace}/members", json={"user": f"{name}@example.org", "role": role}
        )
        assert added.status_code in (200, 201), added.text
    return people


def _running_notebook(owner: Caller, reconciler: Reconciler, cluster: InMemoryCluster) -> tuple[str, str]:
    """Bob's running environment with SSH and Jupyter: its id and its token."""
    applied = owner.post("/environments/apply", json=spec("nb", "research", access=["ssh", "jupyter"]))
    assert applied.status_code == 200, applied.text
    environment_id = applied.json()["environment"]["id"]
    reconciler.run_until_idle()
    assert owner.get(f"/environments/{environment_id}").json()["phase"] == "running"
    return environment_id, cluster.secrets[f"env-{environment_id}-jupyter"]["JUPYTER_TOKEN"]


def _by_kind(caller: Caller, environment_id: str) -> dict[str, Any]:
    answer = caller.get(f"/environments/{environment_id}/access")
    assert answer.status_code == 200, answer.text
    return {detail["kind"]: detail for detail in answer.json()}


def test_the_owner_and_admins_see_the_token_and_the_command_other_members_neither(
    team: dict[str, Caller], reconciler: Reconciler, api_cluster: InMemoryCluster
) -> None:
    environment_id, token = _running_notebook(team["bob"], reconciler, api_cluster)
    host = team["bob"].get(f"/environments/{environment_id}").json()["host"]

    for entitled in ("bob", "carol", "alice"):
        access = _by_kind(team[entitled], environment_id)
        port = access["jupyter"]["port"]
        assert access["jupyter"]["url"] == f"http://{host}:{port}/?token={token}", entitled
        assert access["ssh"]["command"] == f"ssh -p {access['ssh']['port']} root@{host}", entitled

    answer = team["dave"].get(f"/environments/{environment_id}/access")
    assert token not in answer.text
    access = {detail["kind"]: detail for detail in answer.json()}
    assert access["jupyter"]["url"] == f"http://{host}:{access['jupyter']['port']}/"
    assert access["ssh"]["command"] is None
    assert access["ssh"]["port"] == _by_kind(team["bob"], environment_id)["ssh"]["port"], "the endpoint stays"


def test_access_open_opens_the_jupyter_url_with_its_token(
    team: dict[str, Caller],
    reconciler: Reconciler,
    api_cluster: InMemoryCluster,
    api_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, token = _running_notebook(team["bob"], reconciler, api_cluster)
    opened: list[str] = []

    def browser(url: str, *args: object, **kwargs: object) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr("webbrowser.open", browser)
    api_token = team["bob"].post("/auth/tokens", json={"name": "cli"}).json()["token"]
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "400"}
    env |= {"REMOTEGPU_SERVER_URL": api_url, "REMOTEGPU_TOKEN": api_token}
    result = CliRunner().invoke(app, ["access", "nb", "--open"], env=env)
    assert result.exit_code == 0, result.output
    (url,) = opened
    assert url.endswith(f"/?token={token}")
    assert url in result.output.replace("\n", ""), "the URL is printed too"
