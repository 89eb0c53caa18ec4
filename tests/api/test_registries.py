"""Configured registries through the API and the CLI, against a real registry (docker-registry 2.8):
configure, give a login (never shown again), sync, see the images with their source and last sync,
have specs checked against the catalog (an unknown tag lists known ones, a gone image is refused for
new environments and kept for the one using it), and bad input named field by field."""

from __future__ import annotations

from collections.abc import Callable

from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.api.conftest import Caller, spec
from remotegpu.tests.api.test_cli_commands import InProcess, invoke, signed_in
from remotegpu.tests.registry_world import ImagePusher, RunningRegistry, pusher, registry, unique_repository

__all__ = ["invoke", "pusher", "registry", "signed_in"]


def test_a_configured_registry_fills_the_catalog_and_checks_specs(
    admin: Caller,
    signed_in: Callable[[Caller], InProcess],
    registry: RunningRegistry,
    pusher: ImagePusher,
) -> None:
    assert admin.post("/workspaces", json={"name": "research"}).status_code == 201
    public, private = unique_repository("ml"), unique_repository("team")
    image = pusher.image(public, "24.05")
    pusher.image(private, "v1")
    cli = signed_in(admin)

    added = cli(
        "registry", "add", "lab", "--url", registry.url, "--public", "ml", "--workspace", "team=research"
    )
    assert added.exit_code == 0, added.output
    login = cli(
        "registry", "login", "lab", "-u", registry.username, "--password-stdin", stdin=registry.password
    )
    assert login.exit_code == 0, login.output
    listed = admin.get("/registries/lab")
    assert listed.json()["has_login"] is True
    assert listed.json()["workspaces"] == {"team": "research"}
    assert registry.password not in listed.text

    synced = cli("images", "sync")
    assert synced.exit_code == 0, synced.output
    assert "lab: 2 images, 0 newly gone" in synced.stdout
    images = {i["reference"]: i for i in admin.get("/images").json()["items"]}
    entry = images[f"{registry.host}/{public}:24.05"]
    assert (entry["source"], entry["registry"], entry["digest"]) == ("oci", "lab", image.digest)
    assert entry["synced_at"] is not None
    assert images[f"{registry.host}/{private}:v1"]["visibility"] == "private"
    assert admin.get("/registries").json()["items"][0]["last_synced_at"] is not None
    shown = cli("get", "images")
    assert f"{registry.host}/{public}:24.05" in shown.stdout
    assert "lab" in shown.stdout

    unknown = admin.post(
        "/environments", json=spec("typo", "research", image=f"{registry.host}/{public}:24.5")
    )
    assert unknown.status_code == 422, unknown.text
    (error,) = unknown.json()["errors"]
    assert error["field"] == "$.image"
    assert "known tags" in error["message"]
    assert "24.05" in error["message"]

    running = spec("uses-it", "research", image=f"{registry.host}/{public}:24.05")
    assert admin.post("/environments", json=running).status_code == 201
    pusher.delete_manifest(public, image.digest)
    assert admin.post("/images/sync").json()["registries"][0]["gone"] == 1
    references = [i["reference"] for i in admin.get("/images").json()["items"]]
    assert f"{registry.host}/{public}:24.05" not in references, "gone: out of the list"
    gone = [i for i in admin.get("/images?include_gone=true").json()["items"] if i["gone_at"]]
    assert [i["reference"] for i in gone] == [f"{registry.host}/{public}:24.05"]
    refused = admin.post("/environments", json=spec("new-one", "research", image=running["image"]))
    assert refused.status_code == 422
    assert "removed from its registry lab" in refused.json()["errors"][0]["message"]
    unchanged = admin.post("/environments/apply", json=running)
    assert unchanged.status_code < 300, "the environment already on it keeps it"

    removed = cli("registry", "remove", "lab")
    assert removed.exit_code == 0, removed.output
    assert [i for i in admin.get("/images").json()["items"] if i["reference"].startswith(registry.host)] == []
    assert (
        admin.put("/registries/lab", json={"kind": "oci", "url": registry.url}).json()["has_login"] is False
    )


def test_registry_input_is_checked_field_by_field(
    admin: Caller, new_user: Callable[[str], Caller], signed_in: Callable[[Caller], InProcess]
) -> None:
    def problem(name: str, body: dict[str, object]) -> tuple[int, str]:
        answer = admin.put(f"/registries/{name}", json=body)
        return answer.status_code, answer.json()["errors"][0]["field"]

    assert problem("Lab_1", {"kind": "oci", "url": "https://r.example.org"}) == (422, "name")
    assert problem("lab", {"kind": "quay", "url": "https://r.example.org"}) == (422, "$.kind")
    assert problem("lab", {"kind": "oci", "url": "ftp://r.example.org"}) == (422, "$.url")
    assert problem("lab", {"kind": "oci", "url": "https://u:p@r.example.org"}) == (422, "$.url")
    assert problem("lab", {"kind": "oci", "url": "https://r.example.org", "public": ["Bad Path"]}) == (
        422,
        "$.public[0]",
    )
    assert problem(
        "lab", {"kind": "oci", "url": "https://r.example.org", "workspaces": {"t": "nowhere"}}
    ) == (
        422,
        "$.workspaces",
    )
    assert admin.get("/registries/absent").status_code == 404
    assert admin.put("/registries/absent/login", json={"username": "u", "password": "p"}).status_code == 404
    alice = new_user("alice")
    assert (
        alice.put("/registries/lab", json={"kind": "oci", "url": "https://r.example.org"}).status_code == 403
    )
    assert alice.post("/images/sync").status_code == 403

    cli = signed_in(admin)
    bad = cli("registry", "add", "lab", "--url", "https://r.example.org", "--workspace", "no-equals-sign")
    assert bad.exit_code != 0
    assert "PATH=WORKSPACE" in str(bad.exception)
    nothing = cli("images", "sync")
    assert nothing.exit_code == 0, nothing.output
    assert "No registry is configured" in nothing.stdout
    mistyped = cli("registry", "remove", "nosuch")
    assert mistyped.exit_code != 0
    assert "no such registry is configured" in str(mistyped.exception)


def test_describe_shows_the_pinned_digest_and_restart_pull_resolves_the_tag_again(
    admin: Caller,
    reconciler: Reconciler,
    api_cluster: InMemoryCluster,
    signed_in: Callable[[Caller], InProcess],
    registry: RunningRegistry,
    pusher: ImagePusher,
) -> None:
    assert admin.post("/workspaces", json={"name": "research"}).status_code == 201
    repository = unique_repository("ml")
    first = pusher.image(repository, "v1")
    cli = signed_in(admin)
    body = {"kind": "oci", "url": registry.url, "public": ["ml"]}
    assert admin.put("/registries/lab", json=body).status_code == 200
    login = {"username": registry.username, "password": registry.password}
    assert admin.put("/registries/lab/login", json=login).status_code == 204
    assert cli("images", "sync").exit_code == 0
    document = spec("pinned", "research", image=f"{registry.host}/{repository}:v1")
    created = admin.post("/environments", json=document)
    assert created.status_code == 201, created.text
    environment = created.json()["environment"]["id"]
    reconciler.run_until_idle()

    shown = admin.get(f"/environments/{environment}").json()
    assert shown["phase"] == "running"
    assert shown["pinned_image"]["digest"] == first.digest
    assert shown["spec"]["image"] == document["image"], "the spec keeps the tag"
    described = cli("describe", "env", "pinned", "-w", "research")
    assert f"{document['image']} @ {first.digest}" in described.stdout

    second = pusher.image(repository, "v1")
    assert admin.post("/environments/apply", json=document).json()["outcome"] == "unchanged"
    restarted = cli("restart", "pinned", "-w", "research", "--pull")
    assert restarted.exit_code == 0, restarted.output
    reconciler.run_until_idle()
    assert admin.get(f"/environments/{environment}").json()["pinned_image"]["digest"] == second.digest
    assert (
        api_cluster.pods[f"env-{environment}"].spec.image == f"{registry.host}/{repository}@{second.digest}"
    )
