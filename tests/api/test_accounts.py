"""Self-service accounts: a password change ends every other token, the password policy says why it
refuses, a profile is editable, and a platform admin's one-time reset works once, before it expires."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine, text

from remotegpu.tests.api.conftest import PASSWORD, Caller

NEW = "purple elephants dance quietly"


def bearer(client: httpx.Client, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(anonymous: httpx.Client, email: str, password: str) -> httpx.Response:
    return anonymous.post("/auth/login", json={"email": email, "password": password})


def test_a_password_change_ends_every_other_token_but_keeps_the_caller_signed_in(
    new_user: Callable[[str], Caller], anonymous: httpx.Client
) -> None:
    alice = new_user("alice")
    pair = sign_in(anonymous, alice.email, PASSWORD).json()
    api_token = alice.post("/auth/tokens", json={"name": "laptop"}).json()["token"]
    cli_token = alice.post("/auth/tokens", json={"name": "cli"}).json()["token"]

    changed = anonymous.put(
        "/users/me/password",
        json={"old_password": PASSWORD, "new_password": NEW},
        headers=bearer(anonymous, cli_token),
    )
    assert changed.status_code == 200, changed.text
    fresh = changed.json()

    assert alice.get("/users/me").status_code == 401, "the session's old access token"
    assert anonymous.get("/users/me", headers=bearer(anonymous, pair["access_token"])).status_code == 401
    assert anonymous.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    assert anonymous.get("/users/me", headers=bearer(anonymous, api_token)).status_code == 401, (
        "other API token"
    )
    assert anonymous.get("/users/me", headers=bearer(anonymous, cli_token)).status_code == 200, "the one used"
    assert anonymous.get("/users/me", headers=bearer(anonymous, fresh["access_token"])).status_code == 200
    assert anonymous.post("/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 200
    assert sign_in(anonymous, alice.email, PASSWORD).status_code == 401
    assert sign_in(anonymous, alice.email, NEW).status_code == 200


@pytest.mark.parametrize(
    ("old", "new", "field", "why"),
    [
        ("not my password", NEW, "$.old_password", "is not your current password"),
        (PASSWORD, PASSWORD, "$.new_password", "is your current password"),
        (PASSWORD, "short", "$.new_password", "at least 10 characters"),
        (PASSWORD, "Password123", "$.new_password", "most common passwords"),
        (PASSWORD, "zzzzzzzzzzzz", "$.new_password", "most common passwords"),
        (PASSWORD, "bobthebuilder99", "$.new_password", "contains your username"),
    ],
)
def test_a_refused_change_names_the_field_and_why_and_changes_nothing(
    new_user: Callable[[str], Caller], anonymous: httpx.Client, old: str, new: str, field: str, why: str
) -> None:
    bob = new_user("bobthebuilder")
    refused = bob.put("/users/me/password", json={"old_password": old, "new_password": new})
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert why in refused.text
    assert field in str(problem)
    assert bob.get("/users/me").status_code == 200, "nothing revoked"
    assert sign_in(anonymous, bob.email, PASSWORD).status_code == 200


def test_registration_applies_the_same_policy(anonymous: httpx.Client) -> None:
    refused = anonymous.post(
        "/auth/register", json={"email": "c@example.org", "username": "carol", "password": "qwertyuiop"}
    )
    assert refused.status_code == 422
    assert "most common passwords" in refused.text


def test_a_display_name_is_set_and_cleared(new_user: Callable[[str], Caller]) -> None:
    dora = new_user("dora")
    assert dora.patch("/users/me", json={"display_name": "  Dora M.  "}).json()["display_name"] == "Dora M."
    assert dora.get("/users/me").json()["display_name"] == "Dora M."
    assert dora.patch("/users/me", json={"display_name": None}).json()["display_name"] is None
    too_long = dora.patch("/users/me", json={"display_name": "x" * 129})
    assert too_long.status_code == 422
    assert "display_name" in too_long.text


def test_an_admin_reset_works_once_voids_older_ones_and_ends_every_token(
    admin: Caller, new_user: Callable[[str], Caller], anonymous: httpx.Client, engine: Engine
) -> None:
    erin = new_user("erin")
    erin_token = erin.post("/auth/tokens", json={"name": "cli"}).json()["token"]
    assert erin.post(f"/users/{erin.user_id}/password-reset").status_code == 403, "admins only"

    older = admin.post(f"/users/{erin.user_id}/password-reset").json()["reset_token"]
    issued = admin.post(f"/users/{erin.user_id}/password-reset")
    assert issued.status_code == 201
    token = issued.json()["reset_token"]
    assert token.startswith("rgpr_")
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash FROM password_resets")).scalars().all()
    assert token not in stored, "only a hash is kept"

    refused = anonymous.post("/auth/reset", json={"reset_token": older, "new_password": NEW})
    assert refused.status_code == 422, "a newer reset voids the older one"
    assert "reset_token" in refused.text
    weak = anonymous.post("/auth/reset", json={"reset_token": token, "new_password": "1234567890"})
    assert weak.status_code == 422, "the policy applies; the token is not spent"
    redeemed = anonymous.post("/auth/reset", json={"reset_token": token, "new_password": NEW})
    assert redeemed.status_code == 200, redeemed.text
    assert (
        anonymous.get("/users/me", headers=bearer(anonymous, redeemed.json()["access_token"])).status_code
        == 200
    )
    assert erin.get("/users/me").status_code == 401
    assert anonymous.get("/users/me", headers=bearer(anonymous, erin_token)).status_code == 401
    again = anonymous.post(
        "/auth/reset", json={"reset_token": token, "new_password": "another fine password"}
    )
    assert again.status_code == 422, "a reset works once"
    assert sign_in(anonymous, erin.email, NEW).status_code == 200


def test_an_expired_reset_is_refused(
    admin: Caller, new_user: Callable[[str], Caller], anonymous: httpx.Client, engine: Engine
) -> None:
    fay = new_user("fay")
    token = admin.post(f"/users/{fay.user_id}/password-reset").json()["reset_token"]
    with engine.begin() as connection:
        connection.execute(text("UPDATE password_resets SET expires_at = now() - interval '1 second'"))
    refused = anonymous.post("/auth/reset", json={"reset_token": token, "new_password": NEW})
    assert refused.status_code == 422
    assert "expired" in refused.text
    assert sign_in(anonymous, fay.email, PASSWORD).status_code == 200
