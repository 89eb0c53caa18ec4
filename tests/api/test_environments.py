"""Environments over HTTP with a real reconciler (in-memory cluster): apply, lifecycle, access, events."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Engine, text

from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.api.conftest import Caller, spec


@pytest.fixture
def alice(new_user: Callable[[str], Caller]) -> Caller:
    caller = new_user("alice")
    assert caller.post("/workspaces", json={"name": "research"}).status_code == 201
    return caller


def _apply(caller: Caller, document: dict[str, Any], **params: Any) -> Any:
    return caller.post("/environments/apply", json=document, params=params)


def test_apply_creates_runs_and_shows_access_then_stops(alice: Caller, reconciler: Reconciler) -> None:
    created = _apply(alice, spec("train", "research"))
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["outcome"] == "created"
    env = body["environment"]
    assert (env["phase"], env["desired_state"], env["generation"]) == ("pending", "running", 1)
    assert "workspace" not in env["spec"], "the workspace is stored as a column, not in the spec"

    reconciler.run_until_idle()
    shown = alice.get(f"/environments/{env['id']}").json()
    assert shown["phase"] == "running"
    assert len(shown["gpu_indexes"]) == 1
    access = alice.get(f"/environments/{env['id']}/access").json()
    assert [a["kind"] for a in access] == ["ssh"]
    assert access[0]["command"] == f"ssh -p {access[0]['port']} root@{shown['host']}"

    stopped = alice.post(f"/environments/{env['id']}/stop")
    assert stopped.status_code == 202
    assert stopped.json()["desired_state"] == "stopped"
    reconciler.run_until_idle()
    assert alice.get(f"/environments/{env['id']}").json()["phase"] == "stopped"
    assert alice.get(f"/environments/{env['id']}/access").json() == []
    reasons = [e["reason"] for e in alice.get(f"/environments/{env['id']}/events").json()["items"]]
    assert reasons[0] == "EnvironmentCreated"
    assert "DesiredStopped" in reasons


def test_a_claimed_port_keeps_the_purpose_its_spec_gave_it(
    alice: Caller, reconciler: Reconciler, api_cluster: InMemoryCluster
) -> None:
    own_server = {"container": 22, "purpose": "http", "name": "web"}
    custom = _apply(alice, spec("web", "research", access=["jupyter"], ports=[own_server])).json()
    with_ssh = _apply(alice, spec("shell", "research", access=["ssh"])).json()
    reconciler.run_until_idle()

    access = alice.get(f"/environments/{custom['environment']['id']}/access").json()
    assert [(a["kind"], a["container_port"], a["command"]) for a in access] == [
        ("http", 22, None),
        ("jupyter", 8888, None),
    ], "a custom port 22 is the user's own server, not SSH"
    pod = api_cluster.pods[f"env-{custom['environment']['id']}"]
    assert {(p.container_port, p.purpose.value, p.name) for p in pod.spec.ports} == {
        (22, "http", "web"),
        (8888, "jupyter", None),
    }
    (ssh,) = alice.get(f"/environments/{with_ssh['environment']['id']}/access").json()
    assert (ssh["kind"], ssh["container_port"]) == ("ssh", 22)
    assert ssh["command"].startswith("ssh -p ")


def test_apply_is_idempotent_and_a_change_bumps_the_generation(alice: Caller, reconciler: Reconciler) -> None:
    first = _apply(alice, spec("train", "research")).json()
    again = _apply(alice, spec("train", "research")).json()
    assert again["outcome"] == "unchanged"
    assert again["environment"]["generation"] == 1

    bigger = spec("train", "research", resources={"gpus": 2, "cpu": 4, "memory": "16Gi"})
    preview = _apply(alice, bigger, dry_run=True).json()
    assert preview["outcome"] == "updated"
    assert preview["stored_spec"]["resources"]["gpus"] == {"count": 1, "model": "H100"}
    assert preview["desired_spec"]["resources"]["gpus"] == {"count": 2}
    assert alice.get(f"/environments/{first['environment']['id']}").json()["generation"] == 1, (
        "dry run wrote nothing"
    )

    changed = _apply(alice, bigger).json()
    assert (changed["outcome"], changed["environment"]["generation"]) == ("updated", 2)
    reconciler.run_until_idle()
    shown = alice.get(f"/environments/{first['environment']['id']}").json()
    assert (shown["phase"], shown["observed_generation"], len(shown["gpu_indexes"])) == ("running", 2, 2)


def test_create_refuses_a_taken_name_and_put_refuses_a_rename(alice: Caller) -> None:
    env = alice.post("/environments", json=spec("train", "research")).json()["environment"]
    taken = alice.post("/environments", json=spec("train", "research"))
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["field"] == "$.name"
    renamed = alice.put(f"/environments/{env['id']}", json=spec("other", "research"))
    assert renamed.status_code == 409
    assert (
        alice.put(
            f"/environments/{env['id']}", json=spec("other", "research"), params={"dry_run": True}
        ).status_code
        == 409
    )
    replaced = alice.put(
        f"/environments/{env['id']}", json=spec("train", "research", command=["python", "train.py"])
    )
    assert replaced.status_code == 200
    assert replaced.json()["environment"]["spec"]["command"] == ["python", "train.py"]


def test_put_refuses_a_spec_of_another_workspace_as_apply_does(alice: Caller) -> None:
    assert alice.post("/workspaces", json={"name": "elsewhere"}).status_code == 201
    env = alice.post("/environments", json=spec("train", "research")).json()["environment"]
    moved = spec("train", "elsewhere", command=["python", "train.py"])
    for params in ({}, {"dry_run": True}):
        refused = alice.put(f"/environments/{env['id']}", json=moved, params=params)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert problem["errors"][0]["field"] == "$.workspace"
        assert "the environment is in 'research'" in problem["detail"]
    applied = _apply(alice, moved, workspace="research")
    assert applied.status_code == 422, "apply refuses the same mismatch"
    assert applied.json()["errors"][0]["field"] == "$.workspace"
    shown = alice.get(f"/environments/{env['id']}").json()
    assert (shown["workspace"], shown["generation"], shown["spec"].get("command")) == ("research", 1, None)
    unnamed = {key: value for key, value in moved.items() if key != "workspace"}
    assert alice.put(f"/environments/{env['id']}", json=unnamed).status_code == 200


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"resourcez": {}}, "$.resourcez"),
        ({"resources": {"gpus": {"count": -1}}}, "$.resources.gpus.count"),
        ({"resources": {"memory": "lots"}}, "$.resources.memory"),
        ({"volumes": [{"name": "data", "size": "1Gi", "mount": "relative"}]}, "$.volumes[0].mount"),
        ({"ports": [{"container": 70000}]}, "$.ports[0].container"),
        ({"policies": {"max_duration": "forever"}}, "$.policies.max_duration"),
        ({"policies": {"max_duration": "0s"}}, "$.policies.max_duration"),
        ({"policies": {"idle_stop_after": "30s"}}, "$.policies.idle_stop_after"),
        ({"access": ["ssh", "ssh"]}, "$.access"),
        ({"name": "Bad_Name"}, "$.name"),
    ],
)
def test_bad_specs_are_422_naming_the_field(alice: Caller, change: dict[str, Any], field: str) -> None:
    refused = _apply(alice, spec("train", "research") | change)
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["errors"][0]["field"] == field
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert alice.get("/environments").json()["items"] == [], "nothing was stored"


def test_missing_workspace_is_named(alice: Caller) -> None:
    document = spec("train", "research")
    del document["workspace"]
    refused = _apply(alice, document)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "$.workspace"
    assert _apply(alice, document, workspace="research").status_code == 200


def test_list_filters_and_paginates(alice: Caller) -> None:
    for name in ("a", "b", "c"):
        _apply(alice, spec(name, "research"))
    first = alice.get("/environments", params={"limit": 2}).json()
    assert [e["name"] for e in first["items"]] == ["c", "b"]
    rest = alice.get("/environments", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert ([e["name"] for e in rest["items"]], rest["next_cursor"]) == (["a"], None)
    assert [e["name"] for e in alice.get("/environments", params={"name": "b"}).json()["items"]] == ["b"]
    assert alice.get("/environments", params={"phase": "running"}).json()["items"] == []
    assert alice.get("/environments", params={"phase": "sleeping"}).status_code == 422


def test_waiting_environment_shows_its_queue_position(alice: Caller, reconciler: Reconciler) -> None:
    big = spec("big", "research", resources={"gpus": {"count": 8, "model": "H100"}})
    ids = [_apply(alice, big | {"name": f"big-{i}"}).json()["environment"]["id"] for i in range(3)]
    reconciler.run_until_idle()
    waiting = alice.get(f"/environments/{ids[2]}/queue").json()
    assert waiting["phase"] == "admitted"
    assert waiting["position"] == 1
    assert "8×H100" in waiting["reason"]


def test_queue_positions_move_up_in_lists_and_single_reads_when_the_head_is_placed_or_leaves(
    alice: Caller, reconciler: Reconciler
) -> None:
    big = spec("big", "research", resources={"gpus": {"count": 8, "model": "H100"}})
    ids = [_apply(alice, big | {"name": f"big-{i}"}).json()["environment"]["id"] for i in range(5)]
    reconciler.run_until_idle()  # two hosts of 8 GPUs: two run, three wait

    def places() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        listed = {e["id"]: e["queue_position"] for e in alice.get("/environments").json()["items"]}
        one = {i: alice.get(f"/environments/{i}").json()["queue_position"] for i in ids}
        queue = {i: alice.get(f"/environments/{i}/queue").json()["position"] for i in ids}
        return listed, one, queue

    expected = dict(zip(ids, [None, None, 1, 2, 3], strict=True))
    assert places() == (expected, expected, expected)

    alice.post(f"/environments/{ids[0]}/stop")
    reconciler.run_until_idle()  # the head takes the freed host; the rest move up
    expected = dict(zip(ids, [None, None, None, 1, 2], strict=True))
    assert places() == (expected, expected, expected)

    alice.post(f"/environments/{ids[3]}/stop")  # the new head leaves the queue: no place from then on
    assert alice.get(f"/environments/{ids[3]}/queue").json()["position"] is None
    reconciler.run_until_idle()
    expected = dict(zip(ids, [None, None, None, None, 1], strict=True))
    assert places() == (expected, expected, expected)
    assert alice.get(f"/environments/{ids[4]}").json()["queue_reason"] == "waiting for 8×H100"


def test_restart_bumps_the_generation_and_delete_removes(
    alice: Caller, reconciler: Reconciler, engine: Engine
) -> None:
    env = _apply(alice, spec("train", "research")).json()["environment"]["id"]
    reconciler.run_until_idle()
    restarted = alice.post(f"/environments/{env}/restart")
    assert restarted.json()["generation"] == 2
    reconciler.run_until_idle()
    assert alice.get(f"/environments/{env}").json()["observed_generation"] == 2
    assert alice.delete(f"/environments/{env}").status_code == 202
    assert alice.delete(f"/environments/{env}").status_code == 202, "deleting twice is fine"
    reconciler.run_until_idle()
    assert alice.get(f"/environments/{env}").status_code == 404
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT phase FROM environments WHERE id = :id"), {"id": env}).scalar()
            == "deleted"
        )


def test_private_catalog_name_of_another_workspace_is_not_usable(
    alice: Caller, new_user: Callable[[str], Caller]
) -> None:
    """The name resolves only in its own workspace; a full reference is used as written (as any reference
    the catalog does not hold: test_images_billing checks it reads exactly as an unknown one)."""
    bob = new_user("bob")
    bob.post("/workspaces", json={"name": "bobs"})
    image = bob.post(
        "/images",
        json={"name": "secret-sauce", "reference": "registry.example.org/bob/sauce:1", "workspace": "bobs"},
    )
    assert image.status_code == 201
    by_name = _apply(alice, spec("train", "research", image="secret-sauce"))
    assert by_name.status_code == 404
    assert "registry.example.org/bob/sauce" not in by_name.text
    mine = _apply(bob, spec("train", "bobs", image="secret-sauce")).json()
    assert mine["environment"]["spec"]["image"] == "registry.example.org/bob/sauce:1"


def test_logs_are_streamed_from_the_cluster(alice: Caller, reconciler: Reconciler) -> None:
    env = _apply(alice, spec("train", "research", command=["python", "train.py"])).json()["environment"]["id"]
    reconciler.run_until_idle()
    with alice.stream("GET", f"/environments/{env}/logs") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        lines = list(response.iter_lines())
    assert lines == ["container started from nvcr.io/nvidia/pytorch:24.05-py3", "command: python train.py"]
    assert alice.get(f"/environments/{env}/logs", params={"tail": 1}).text == "command: python train.py\n"


def _no_container(caller: Caller, env: str) -> str:
    """The problem detail of a log request refused before anything streamed."""
    with caller.stream("GET", f"/environments/{env}/logs", params={"follow": True}) as response:
        response.read()
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail: str = response.json()["detail"]
    assert detail.startswith("the environment has no running container"), detail
    return detail


def test_logs_of_an_environment_without_a_running_container_are_409_before_streaming(
    alice: Caller, reconciler: Reconciler, api_cluster: InMemoryCluster
) -> None:
    waiting = _apply(alice, spec("waiting", "research")).json()["environment"]["id"]
    assert "waits for GPUs" in _no_container(alice, waiting)

    env = _apply(alice, spec("train", "research")).json()["environment"]["id"]
    reconciler.run_until_idle()
    assert alice.get(f"/environments/{env}/logs").status_code == 200
    api_cluster.vanish(uuid.UUID(env))  # running in the database, but the cluster has no pod
    assert "no pod" in _no_container(alice, env)

    alice.post(f"/environments/{env}/stop")
    reconciler.run_until_idle()
    assert "start it first" in _no_container(alice, env)
    assert alice.get(f"/environments/{uuid.uuid4()}/logs").status_code == 404


def test_a_spec_may_name_its_workspace_by_id(alice: Caller) -> None:
    """Found by a hostile review: `"workspace": "<id>"` was refused as naming another workspace (`… but
    ?workspace= says None`), by POST, apply and PUT alike."""
    research = alice.get("/workspaces").json()["items"][0]["id"]
    created = alice.post("/environments", json=spec("train", research))
    assert created.status_code == 201, created.text
    env = created.json()["environment"]
    assert env["workspace"] == "research"
    assert _apply(alice, spec("train", research)).json()["outcome"] == "unchanged"
    assert _apply(alice, spec("train", "research"), workspace=research).json()["outcome"] == "unchanged"
    replaced = alice.put(f"/environments/{env['id']}", json=spec("train", research, command=["python"]))
    assert replaced.status_code == 200, replaced.text
    other = alice.post("/workspaces", json={"name": "elsewhere"}).json()["id"]
    refused = _apply(alice, spec("train", other), workspace="research")
    assert refused.status_code == 422
    assert (
        refused.json()["detail"] == f"$.workspace: the spec names '{other}' but ?workspace= names 'research'"
    )


def test_concurrent_applies_of_a_new_name_create_it_once(alice: Caller) -> None:
    """Six applies of one new file at once: one creates, the others find it (no 409 from the race)."""
    document = spec("race", "research")
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: alice.post("/environments/apply", json=document), range(6)))
    assert [answer.status_code for answer in answers] == [200] * 6, [a.text for a in answers]
    outcomes = sorted(answer.json()["outcome"] for answer in answers)
    assert outcomes == ["created"] + ["unchanged"] * 5
    assert len({answer.json()["environment"]["id"] for answer in answers}) == 1
