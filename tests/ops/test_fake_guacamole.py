"""The fake Guacamole answers as guacamole-client 1.5's REST API and JDBC extension do: tokens from a form
login, the `Guacamole-Token` header, directories as maps by identifier, JSON Patch on permissions, and the
product's `APIError` bodies (403 PERMISSION_DENIED / INVALID_CREDENTIALS, 404 NOT_FOUND, 400 BAD_REQUEST)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from remotegpu.ops.fakes.guacamole import FakeGuacamole

DS = "/api/session/data/postgresql"


@pytest.fixture
def guac() -> Iterator[FakeGuacamole]:
    with FakeGuacamole() as fake:
        yield fake
        assert fake.unexpected == [], "the test made calls the fake Guacamole does not implement"


def log_in(fake: FakeGuacamole, username: str = "guacadmin", password: str = "guacadmin") -> httpx.Response:
    return httpx.post(f"{fake.url}/api/tokens", data={"username": username, "password": password})


@pytest.fixture
def admin(guac: FakeGuacamole) -> Iterator[httpx.Client]:
    token = log_in(guac).json()["authToken"]
    with httpx.Client(base_url=guac.url, headers={"Guacamole-Token": token}) as client:
        yield client


def ssh(name: str, **parameters: str) -> dict[str, Any]:
    return {
        "name": name,
        "parentIdentifier": "ROOT",
        "protocol": "ssh",
        "parameters": {"hostname": "10.0.0.5", "port": "2201", **parameters},
        "attributes": {"max-connections": "2", "not-in-the-schema": "x"},
    }


def assert_api_error(answer: httpx.Response, status: int, kind: str, message: str) -> None:
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["type"] == kind
    assert body["message"] == message
    assert body["translatableMessage"] == {"key": "APP.TEXT_UNTRANSLATED", "variables": {"MESSAGE": message}}
    assert set(body) == {"message", "translatableMessage", "statusCode", "expected", "type"}


def test_login_answers_a_token_and_refuses_bad_credentials(guac: FakeGuacamole) -> None:
    answer = log_in(guac)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"authToken", "username", "dataSource", "availableDataSources"}
    assert body["username"] == "guacadmin"
    assert body["dataSource"] == "postgresql"
    assert body["availableDataSources"] == ["postgresql"]
    assert len(body["authToken"]) == 64

    refused = log_in(guac, password="wrong")
    assert_api_error(refused, 403, "INVALID_CREDENTIALS", "Permission Denied.")
    assert refused.json()["expected"] == [
        {"name": "username", "type": "USERNAME"},
        {"name": "password", "type": "PASSWORD"},
    ]
    # The form parameters are the only ones read: a JSON body carries no credentials at all.
    as_json = httpx.post(f"{guac.url}/api/tokens", json={"username": "guacadmin", "password": "guacadmin"})
    assert_api_error(as_json, 403, "INVALID_CREDENTIALS", "Permission Denied.")
    basic = httpx.post(f"{guac.url}/api/tokens", auth=("guacadmin", "guacadmin"))
    assert basic.status_code == 200
    assert guac.logins == 2


def test_session_routes_need_a_live_token(guac: FakeGuacamole) -> None:
    token = log_in(guac).json()["authToken"]
    for headers in ({}, {"Guacamole-Token": "0" * 64}):
        refused = httpx.get(f"{guac.url}{DS}/connections", headers=headers)
        assert_api_error(refused, 403, "PERMISSION_DENIED", "Permission Denied.")
    assert httpx.get(f"{guac.url}{DS}/connections", params={"token": token}).status_code == 200
    assert httpx.get(f"{guac.url}{DS}/connections", headers={"Guacamole-Token": token}).json() == {}

    assert httpx.delete(f"{guac.url}/api/tokens/{token}").status_code == 204
    gone = httpx.get(f"{guac.url}{DS}/connections", headers={"Guacamole-Token": token})
    assert_api_error(gone, 403, "PERMISSION_DENIED", "Permission Denied.")
    assert_api_error(httpx.delete(f"{guac.url}/api/tokens/{token}"), 404, "NOT_FOUND", "No such token.")

    other = log_in(guac).json()["authToken"]
    assert httpx.delete(f"{guac.url}/api/session", headers={"Guacamole-Token": other}).status_code == 204
    assert guac.live_tokens == 0


def test_sessions_end_after_inactivity_or_when_expired(guac: FakeGuacamole) -> None:
    moment = [dt.datetime(2030, 1, 1, tzinfo=dt.UTC)]
    guac.now = lambda: moment[0]
    token = log_in(guac).json()["authToken"]
    listing = f"{guac.url}{DS}/connections"
    moment[0] += dt.timedelta(minutes=59)
    assert httpx.get(listing, headers={"Guacamole-Token": token}).status_code == 200  # refreshes the session
    moment[0] += dt.timedelta(minutes=59)
    assert httpx.get(listing, headers={"Guacamole-Token": token}).status_code == 200
    moment[0] += dt.timedelta(minutes=60)
    assert httpx.get(listing, headers={"Guacamole-Token": token}).status_code == 403

    token = log_in(guac).json()["authToken"]
    guac.expire_tokens()
    assert httpx.get(listing, headers={"Guacamole-Token": token}).status_code == 403


def test_an_unknown_data_source_is_not_found(admin: httpx.Client) -> None:
    answer = admin.get("/api/session/data/mysql/connections")
    assert_api_error(answer, 404, "NOT_FOUND", 'Session not associated with authentication provider "mysql".')


def test_connections_are_created_listed_updated_and_deleted(admin: httpx.Client, guac: FakeGuacamole) -> None:
    created = admin.post(
        f"{DS}/connections", json=ssh("one", username="root", **{"private-key": "KEY", "x": ""})
    )
    assert created.status_code == 200
    identifier = created.json()["identifier"]
    assert created.json()["attributes"] == {"max-connections": "2"}, (
        "attributes outside the schema are dropped"
    )

    listed = admin.get(f"{DS}/connections").json()
    assert list(listed) == [identifier]
    assert listed[identifier]["name"] == "one"
    assert listed[identifier]["parentIdentifier"] == "ROOT"
    assert listed[identifier]["protocol"] == "ssh"
    assert listed[identifier]["attributes"]["max-connections"] == "2"
    assert listed[identifier]["attributes"]["weight"] is None
    assert "parameters" not in listed[identifier]
    assert admin.get(f"{DS}/connections/{identifier}").json() == listed[identifier]
    assert admin.get(f"{DS}/connections/{identifier}/parameters").json() == {
        "hostname": "10.0.0.5",
        "port": "2201",
        "username": "root",
        "private-key": "KEY",
    }, "empty parameters are not stored"

    updated = admin.put(f"{DS}/connections/{identifier}", json=ssh("one", port="2202"))
    assert updated.status_code == 204
    assert guac.connections[identifier].parameters == {"hostname": "10.0.0.5", "port": "2202"}

    assert admin.delete(f"{DS}/connections/{identifier}").status_code == 204
    assert_api_error(
        admin.get(f"{DS}/connections/{identifier}"), 404, "NOT_FOUND", f'Not found: "{identifier}"'
    )
    assert_api_error(
        admin.delete(f"{DS}/connections/{identifier}"), 404, "NOT_FOUND", f'Not found: "{identifier}"'
    )
    assert admin.get(f"{DS}/connections").json() == {}


def test_connections_the_product_refuses(admin: httpx.Client, guac: FakeGuacamole) -> None:
    first = admin.post(f"{DS}/connections", json=ssh("one")).json()["identifier"]
    second = admin.post(f"{DS}/connections", json=ssh("two")).json()["identifier"]
    duplicate = admin.post(f"{DS}/connections", json=ssh("one"))
    assert_api_error(duplicate, 400, "BAD_REQUEST", 'The connection "one" already exists.')
    renamed = admin.put(f"{DS}/connections/{second}", json=ssh("one"))
    assert_api_error(renamed, 400, "BAD_REQUEST", 'The connection "one" already exists.')
    assert admin.put(f"{DS}/connections/{first}", json=ssh("one")).status_code == 204, "its own name is fine"
    blank = admin.post(f"{DS}/connections", json=ssh("  "))
    assert_api_error(blank, 400, "BAD_REQUEST", "Connection names must not be blank.")
    without_attributes = {k: v for k, v in ssh("three").items() if k != "attributes"}
    assert_api_error(
        admin.post(f"{DS}/connections", json=without_attributes),
        500,
        "INTERNAL_ERROR",
        "Unexpected internal error",
    )
    as_form = admin.post(f"{DS}/connections", data={"name": "three"})
    assert as_form.status_code == 415
    assert sorted(c.name for c in guac.connections.values()) == ["one", "two"]


def test_users_and_their_permissions(admin: httpx.Client, guac: FakeGuacamole) -> None:
    connection = admin.post(f"{DS}/connections", json=ssh("one")).json()["identifier"]
    created = admin.post(
        f"{DS}/users", json={"username": "alice", "attributes": {"guac-full-name": "Alice A"}}
    )
    assert created.status_code == 200
    assert log_in(guac, "alice", "").status_code == 403, "created without a password: no password login"
    assert admin.get(f"{DS}/users/alice").json()["attributes"]["guac-full-name"] == "Alice A"
    assert "password" not in admin.get(f"{DS}/users/alice").json()
    assert sorted(admin.get(f"{DS}/users").json()) == ["alice", "guacadmin"]
    again = admin.post(f"{DS}/users", json={"username": "alice", "attributes": {}})
    assert_api_error(again, 400, "BAD_REQUEST", 'User "alice" already exists.')
    assert_api_error(admin.get(f"{DS}/users/nobody"), 404, "NOT_FOUND", 'Not found: "nobody"')

    grant = [{"op": "add", "path": f"/connectionPermissions/{connection}", "value": "READ"}]
    assert admin.patch(f"{DS}/users/alice/permissions", json=grant).status_code == 204
    assert admin.patch(f"{DS}/users/alice/permissions", json=grant).status_code == 204, "adding twice is fine"
    permissions = admin.get(f"{DS}/users/alice/permissions").json()
    assert permissions["connectionPermissions"] == {connection: ["READ"]}
    assert permissions["systemPermissions"] == []
    assert guac.permissions_of("alice") == {connection: {"READ"}}

    add_and_remove = [
        *grant,
        {"op": "remove", "path": f"/connectionPermissions/{connection}", "value": "READ"},
    ]
    assert admin.patch(f"{DS}/users/alice/permissions", json=add_and_remove).status_code == 204
    assert guac.permissions_of("alice") == {}, "a patch applies its additions, then its removals"

    missing_user = admin.patch(f"{DS}/users/nobody/permissions", json=grant)
    assert_api_error(missing_user, 404, "NOT_FOUND", 'Not found: "nobody"')
    replace = [{"op": "replace", "path": f"/connectionPermissions/{connection}", "value": "READ"}]
    assert_api_error(
        admin.patch(f"{DS}/users/alice/permissions", json=replace),
        400,
        "BAD_REQUEST",
        'Unsupported patch operation: "replace"',
    )
    bad_path = [{"op": "add", "path": "/nonsense", "value": "READ"}]
    assert_api_error(
        admin.patch(f"{DS}/users/alice/permissions", json=bad_path),
        400,
        "BAD_REQUEST",
        'Unsupported patch path: "/nonsense"',
    )
    no_such_connection = [{"op": "add", "path": "/connectionPermissions/999", "value": "READ"}]
    assert admin.patch(f"{DS}/users/alice/permissions", json=no_such_connection).status_code == 500

    assert admin.patch(f"{DS}/users/alice/permissions", json=grant).status_code == 204
    assert admin.delete(f"{DS}/connections/{connection}").status_code == 204
    assert guac.permissions_of("alice") == {}, "a connection's permissions go with it"


def test_a_user_reads_only_what_it_was_granted(admin: httpx.Client, guac: FakeGuacamole) -> None:
    visible = admin.post(f"{DS}/connections", json=ssh("visible")).json()["identifier"]
    admin.post(f"{DS}/connections", json=ssh("hidden"))
    guac.add_user("bob", "bobs-password")
    grant = [{"op": "add", "path": f"/connectionPermissions/{visible}", "value": "READ"}]
    admin.patch(f"{DS}/users/bob/permissions", json=grant)

    token = log_in(guac, "bob", "bobs-password").json()["authToken"]
    with httpx.Client(base_url=guac.url, headers={"Guacamole-Token": token}) as bob:
        assert list(bob.get(f"{DS}/connections").json()) == [visible]
        denied = bob.get(f"{DS}/connections/{visible}/parameters")
        assert_api_error(denied, 403, "PERMISSION_DENIED", "Permission to read connection parameters denied.")
        assert_api_error(
            bob.post(f"{DS}/connections", json=ssh("mine")), 403, "PERMISSION_DENIED", "Permission denied."
        )
        assert list(bob.get(f"{DS}/users").json()) == ["bob"]


def test_faults_answer_503_drop_or_lose_the_answer(admin: httpx.Client, guac: FakeGuacamole) -> None:
    guac.fail_next(2)
    assert admin.get(f"{DS}/connections").status_code == 503
    assert admin.get(f"{DS}/connections").status_code == 503
    assert admin.get(f"{DS}/connections").status_code == 200

    guac.fail_next(1, status=None)
    with pytest.raises(httpx.RemoteProtocolError):
        admin.get(f"{DS}/connections")

    guac.fail_next(1, handled=True, matching=f"POST {DS}/connections")
    assert admin.get(f"{DS}/connections").status_code == 200, "other requests do not count"
    assert admin.post(f"{DS}/connections", json=ssh("one")).status_code == 503
    assert guac.connection_named("one") is not None, "the request took effect before its answer was lost"


def test_unknown_routes_are_404_and_recorded(admin: httpx.Client, guac: FakeGuacamole) -> None:
    assert admin.get(f"{DS}/connectionGroups").status_code == 404
    assert admin.get("/api/languages").status_code == 404
    assert guac.unexpected == [f"GET {DS}/connectionGroups", "GET /api/languages"]
    guac.unexpected.clear()


def test_the_page_lists_connections_under_the_base_path() -> None:
    with FakeGuacamole(base_path="/guacamole") as guac:
        assert guac.url.endswith("/guacamole")
        token = log_in(guac).json()["authToken"]
        httpx.post(f"{guac.url}{DS}/connections", json=ssh("<visible>"), headers={"Guacamole-Token": token})
        page = httpx.get(f"{guac.url}/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "&lt;visible&gt;" in page.text
        assert "10.0.0.5:2201" in page.text
        assert httpx.get(guac.url.removesuffix("/guacamole") + "/api/tokens").status_code == 404
        assert guac.unexpected == ["GET /api/tokens"]
