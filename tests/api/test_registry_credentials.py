"""Registry credentials through the API and the CLI: set, merged, listed by name only, removed."""

from __future__ import annotations

from collections.abc import Callable

from remotegpu.tests.api.conftest import Caller
from remotegpu.tests.api.test_cli_commands import InProcess, invoke, signed_in

__all__ = ["invoke", "signed_in"]


def _login(registry: str, password: str) -> dict[str, object]:
    return {"auths": {registry: {"username": "robot", "password": password}}}


def test_registries_are_added_listed_by_name_and_removed_one_by_one(
    admin: Caller, new_user: Callable[[str], Caller], signed_in: Callable[[Caller], InProcess]
) -> None:
    assert (
        admin.put("/registry-credentials", json=_login("harbor.example.org", "first-pw")).status_code == 204
    )
    merged = admin.put("/registry-credentials?merge=true", json=_login("ghcr.io", "second-pw"))
    assert merged.status_code == 204
    listed = admin.get("/registry-credentials")
    assert listed.json() == {"registries": ["ghcr.io", "harbor.example.org"]}
    assert "first-pw" not in listed.text
    assert "second-pw" not in listed.text

    run = signed_in(admin)
    logout = run("registry", "logout", "ghcr.io")
    assert logout.exit_code == 0, logout.output
    assert "ghcr.io" not in run("registry", "list").stdout
    assert admin.get("/registry-credentials").json() == {"registries": ["harbor.example.org"]}

    assert admin.delete("/registry-credentials/ghcr.io").status_code == 204, "gone already is fine"
    assert admin.delete("/registry-credentials/harbor.example.org").status_code == 204
    assert admin.get("/registry-credentials").json() == {"registries": []}

    alice = new_user("alice")
    assert alice.delete("/registry-credentials/harbor.example.org").status_code == 403
    bad = admin.put("/registry-credentials", json={"auths": {}})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "$.auths"
