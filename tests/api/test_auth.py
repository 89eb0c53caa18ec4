"""Registration, sign-in, refresh, API tokens and disabled users, over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import Engine, text

from remotegpu.api.app import create_app
from remotegpu.core.platform.notify import CREDENTIALS_CHANNEL
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.api_server import running_api
from remotegpu.tests.api.conftest import JWT_SECRET, PASSWORD, Caller
from remotegpu.tests.polling import poll_until


def test_register_login_and_me(anonymous: httpx.Client, new_user: Callable[[str], Caller]) -> None:
    alice = new_user("alice")
    me = alice.get("/users/me")
    assert me.status_code == 200
    assert me.json() == {
        "id": str(alice.user_id),
        "email": "alice@example.org",
        "username": "alice",
        "role": "user",
        "disabled": False,
        "display_name": None,
    }
    assert "password" not in me.text


def test_duplicate_email_is_a_conflict_naming_the_field(
    anonymous: httpx.Client, new_user: Callable[[str], Caller]
) -> None:
    new_user("alice")
    again = anonymous.post(
        "/auth/register", json={"email": "ALICE@example.org", "username": "alice2", "password": PASSWORD}
    )
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["errors"][0]["field"] == "$.email"


def test_short_password_and_bad_email_are_422_naming_the_field(anonymous: httpx.Client) -> None:
    short = anonymous.post(
        "/auth/register", json={"email": "a@example.org", "username": "ab", "password": "short"}
    )
    assert short.status_code == 422
    assert short.json()["errors"][0]["field"] == "$.password"
    bad = anonymous.post(
        "/auth/register", json={"email": "not-an-email", "username": "ab", "password": PASSWORD}
    )
    assert bad.status_code == 422
    assert "email" in bad.json()["detail"]


def test_wrong_password_is_401_and_reveals_nothing(
    anonymous: httpx.Client, new_user: Callable[[str], Caller]
) -> None:
    new_user("alice")
    wrong = anonymous.post("/auth/login", json={"email": "alice@example.org", "password": "nope nope nope"})
    unknown = anonymous.post("/auth/login", json={"email": "bob@example.org", "password": "nope nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_requests_without_or_with_a_bad_token_are_401(anonymous: httpx.Client) -> None:
    assert anonymous.get("/users/me").status_code == 401
    forged = anonymous.get("/users/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code == 401
    assert forged.headers["www-authenticate"] == "Bearer"


def test_refresh_gives_a_working_access_token(
    anonymous: httpx.Client, new_user: Callable[[str], Caller]
) -> None:
    new_user("alice")
    pair = anonymous.post("/auth/login", json={"email": "alice@example.org", "password": PASSWORD}).json()
    renewed = anonymous.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 200
    me = anonymous.get("/users/me", headers={"Authorization": f"Bearer {renewed.json()['access_token']}"})
    assert me.json()["username"] == "alice"
    # An access token is not a refresh token, and the other way round.
    assert anonymous.post("/auth/refresh", json={"refresh_token": pair["access_token"]}).status_code == 401
    assert (
        anonymous.get("/users/me", headers={"Authorization": f"Bearer {pair['refresh_token']}"}).status_code
        == 401
    )


def test_api_token_works_until_revoked_and_is_shown_once(
    anonymous: httpx.Client, new_user: Callable[[str], Caller]
) -> None:
    alice = new_user("alice")
    created = alice.post("/auth/tokens", json={"name": "laptop"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("rgpu_")
    listed = alice.get("/auth/tokens").json()
    assert [t["name"] for t in listed] == ["laptop"]
    assert token not in alice.get("/auth/tokens").text
    headers = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/users/me", headers=headers).json()["username"] == "alice"
    assert alice.delete(f"/auth/tokens/{created.json()['id']}").status_code == 204
    assert anonymous.get("/users/me", headers=headers).status_code == 401


def test_disabled_user_is_refused_at_once(
    admin: Caller, anonymous: httpx.Client, new_user: Callable[[str], Caller]
) -> None:
    alice = new_user("alice")
    assert alice.get("/users/me").status_code == 200
    disabled = admin.post(f"/users/{alice.user_id}/disable")
    assert disabled.json()["disabled"] is True
    assert alice.get("/users/me").status_code == 401
    login = anonymous.post("/auth/login", json={"email": "alice@example.org", "password": PASSWORD})
    assert login.status_code == 401
    admin.post(f"/users/{alice.user_id}/enable")
    assert alice.get("/users/me").status_code == 200


def test_only_admins_list_users(admin: Caller, new_user: Callable[[str], Caller]) -> None:
    alice = new_user("alice")
    assert alice.get("/users").status_code == 403
    listed = admin.get("/users", params={"limit": 1})
    assert listed.status_code == 200
    first = listed.json()
    assert len(first["items"]) == 1
    assert first["next_cursor"]
    second = admin.get("/users", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert {first["items"][0]["username"], second["items"][0]["username"]} == {"root", "alice"}
    assert admin.get("/users", params={"cursor": "garbage!"}).status_code == 422


def test_cached_read_credentials_are_forgotten_when_a_user_is_disabled_or_a_token_revoked(
    admin: Caller, anonymous: httpx.Client, new_user: Callable[[str], Caller]
) -> None:
    """Reads may answer "who is calling" from a per-process cache; a change must empty it at once."""
    alice = new_user("alice")
    token = alice.post("/auth/tokens", json={"name": "cli"}).json()
    headers = {"Authorization": f"Bearer {token['token']}"}
    for _ in range(3):  # the first read fills the cache, the next ones use it
        assert anonymous.get("/environments", headers=headers).status_code == 200
        assert alice.get("/environments").status_code == 200
    admin.post(f"/users/{alice.user_id}/disable")
    assert anonymous.get("/environments", headers=headers).status_code == 401
    assert alice.get("/environments").status_code == 401
    admin.post(f"/users/{alice.user_id}/enable")
    assert anonymous.get("/environments", headers=headers).status_code == 200
    assert alice.delete(f"/auth/tokens/{token['id']}").status_code == 204
    assert anonymous.get("/environments", headers=headers).status_code == 401


def test_another_api_process_forgets_on_the_notification(
    engine: Engine, admin: Caller, new_user: Callable[[str], Caller]
) -> None:
    """A second API (its own cache and listener) learns of a disable through NOTIFY, not by asking."""
    alice = new_user("alice")
    token = alice.post("/auth/tokens", json={"name": "cli"}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    settings = Settings(jwt_secret=JWT_SECRET)
    with running_api(create_app(settings, engine)) as other:

        def status() -> int:
            return httpx.get(f"{other}/api/v1/environments", headers=headers).status_code

        poll_until(status, 10, "the other API to serve alice", until=lambda code: code == 200)
        admin.post(f"/users/{alice.user_id}/disable")
        # Until the notification arrives it serves her from its cache (200); then 401, nothing else.
        poll_until(status, 5, "the other API to refuse a disabled user", until=lambda code: code != 200)
        assert status() == 401


def test_reads_are_served_from_the_cache_until_a_notification_empties_it(
    engine: Engine, anonymous: httpx.Client, new_user: Callable[[str], Caller]
) -> None:
    """Proof that the cache is live (a change made behind the API's back is not seen) and that the
    listener empties it (the notification alone makes the change visible)."""
    alice = new_user("alice")
    token = alice.post("/auth/tokens", json={"name": "cli"}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}

    def status() -> int:
        return anonymous.get("/environments", headers=headers).status_code

    poll_until(status, 10, "alice's token to be served", until=lambda code: code == 200)
    with engine.begin() as connection:
        connection.execute(text("UPDATE users SET disabled = true WHERE id = :id"), {"id": alice.user_id})
    assert anonymous.get("/environments", headers=headers).status_code == 200, "served from the cache"
    assert anonymous.get("/users/me", headers=headers).status_code == 401, (
        "other routes always ask the database"
    )
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CREDENTIALS_CHANNEL})
    poll_until(status, 5, "the notification to empty the cache", until=lambda code: code == 401)
