"""The fake Jumpserver answers as Jumpserver v3's REST API does: bearer-token login and its refusals, the
organisation header, hosts, accounts, users and asset permissions with their validation errors, limit/offset
pagination, and the faults tests inject."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from remotegpu.ops.fakes.jumpserver import FakeJumpserver

HOSTS = "/api/v1/assets/hosts/"
ACCOUNTS = "/api/v1/accounts/accounts/"
USERS = "/api/v1/users/users/"
PERMISSIONS = "/api/v1/perms/asset-permissions/"


def private_key() -> str:
    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )


@pytest.fixture
def fake() -> Iterator[FakeJumpserver]:
    with FakeJumpserver() as server:
        yield server
        assert server.unexpected == [], "a call the fake Jumpserver does not implement"


@pytest.fixture
def http(fake: FakeJumpserver) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url) as client:
        login = client.post(
            "/api/v1/authentication/auth/", json={"username": "admin", "password": fake.admin_password}
        )
        client.headers["Authorization"] = f"Bearer {login.json()['token']}"
        yield client


def host(http: httpx.Client, name: str, port: int = 2222, **extra: object) -> httpx.Response:
    body = {"name": name, "address": "10.0.0.7", "platform": 1, "protocols": [{"name": "ssh", "port": port}]}
    return http.post(HOSTS, json=body | extra)


def test_login_answers_a_bearer_token_and_refuses_a_wrong_password_then_locks(fake: FakeJumpserver) -> None:
    with httpx.Client(base_url=fake.url) as client:
        login = client.post(
            "/api/v1/authentication/auth/", json={"username": "admin", "password": fake.admin_password}
        )
        assert login.status_code == 201
        answer = login.json()
        assert answer["keyword"] == "Bearer"
        assert len(answer["token"]) == 36
        assert answer["user"]["username"] == "admin"
        assert answer["date_expired"].count("/") == 2  # Jumpserver's `%Y/%m/%d %H:%M:%S %z`
        again = client.post(
            "/api/v1/authentication/tokens/", json={"username": "admin", "password": fake.admin_password}
        )
        assert again.json()["token"] == answer["token"], (
            "a live token is handed out again, as Jumpserver does"
        )

        wrong = client.post("/api/v1/authentication/auth/", json={"username": "admin", "password": "guess"})
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "password_failed"
        assert "You can also try 6 times" in wrong.json()["msg"]
        for _ in range(6):
            client.post("/api/v1/authentication/auth/", json={"username": "admin", "password": "guess"})
        locked = client.post(
            "/api/v1/authentication/auth/", json={"username": "admin", "password": fake.admin_password}
        )
        assert (locked.status_code, locked.json()["error"]) == (400, "block_login")
    assert (fake.logins, fake.failed_logins) == (2, 8)


def test_calls_without_a_live_admin_token_are_refused(fake: FakeJumpserver, http: httpx.Client) -> None:
    anonymous = httpx.get(f"{fake.url}{HOSTS}")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert anonymous.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }
    bogus = httpx.get(f"{fake.url}{HOSTS}", headers={"Authorization": "Bearer nope"})
    assert bogus.json() == {"detail": "Invalid token or cache refreshed.", "code": "authentication_failed"}
    assert httpx.get(f"{fake.url}{HOSTS}", headers={"Authorization": "Bearer"}).status_code == 401

    assert http.get(HOSTS).status_code == 200
    fake.expire_tokens()
    assert http.get(HOSTS).status_code == 401

    fake.add_user("carol", password="carols-password")
    login = httpx.post(
        f"{fake.url}/api/v1/authentication/auth/", json={"username": "carol", "password": "carols-password"}
    )
    refused = httpx.get(f"{fake.url}{HOSTS}", headers={"Authorization": f"Bearer {login.json()['token']}"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied"


def test_hosts_are_created_filtered_updated_and_deleted(fake: FakeJumpserver, http: httpx.Client) -> None:
    created = host(http, "remotegpu-a")
    assert created.status_code == 201
    answer = created.json()
    assert answer["platform"] == {"id": 1, "name": "Linux"}
    assert answer["protocols"] == [{"name": "ssh", "port": 2222}]
    assert answer["nodes"][0]["name"] == "Default"
    assert answer["org_id"] == "00000000-0000-0000-0000-000000000002"
    assert host(http, "remotegpu-a").json() == {"name": ["This field must be unique."]}
    defaults = http.post(HOSTS, json={"name": "plain", "address": "10.0.0.8", "platform": 1}).json()
    assert defaults["protocols"] == [{"name": "ssh", "port": 22}, {"name": "sftp", "port": 22}]

    assert [h["name"] for h in http.get(HOSTS, params={"name": "remotegpu-a"}).json()] == ["remotegpu-a"]
    assert http.get(HOSTS, params={"name": "remotegpu-"}).json() == [], "`name` is an exact filter"
    assert [h["name"] for h in http.get(HOSTS, params={"search": "REMOTEGPU-"}).json()] == ["remotegpu-a"]

    moved = http.patch(
        f"{HOSTS}{answer['id']}/", json={"address": "10.0.0.9", "protocols": [{"name": "ssh", "port": 2300}]}
    )
    assert (moved.json()["address"], moved.json()["protocols"]) == (
        "10.0.0.9",
        [{"name": "ssh", "port": 2300}],
    )
    assert fake.hosts()[0].port() == 2300

    assert http.delete(f"{HOSTS}{answer['id']}/").status_code == 204
    gone = http.get(f"{HOSTS}{answer['id']}/")
    assert (gone.status_code, gone.json()) == (
        404,
        {"detail": "Host object does not exist.", "code": "object_does_not_exist"},
    )
    assert http.delete(f"{HOSTS}{answer['id']}/").status_code == 404


def test_host_validation_answers_drf_field_errors(http: httpx.Client) -> None:
    assert http.post(HOSTS, json={}).json()["name"] == ["This field is required."]
    no_ssh = host(http, "x", protocols=[{"name": "sftp", "port": 22}])
    assert no_ssh.json() == {"protocols": ["Protocol is required: ssh"]}
    assert host(http, "x", port=70000).json() == {"protocols": ["ssh: port out of range (0-65535)"]}
    assert host(http, "x", platform=99).json() == {"platform": ['Invalid pk "99" - object does not exist.']}
    assert http.post(HOSTS, json={"name": "x", "address": "a"}).json() == {"platform": "Platform not exist"}
    assert http.get("/api/v1/assets/platforms/", params={"name": "Linux"}).json()[0]["id"] == 1


def test_organisations_keep_their_own_objects(fake: FakeJumpserver, http: httpx.Client) -> None:
    lab = fake.add_org("Lab")
    assert host(http, "same").status_code == 201
    in_lab = http.post(
        HOSTS, headers={"X-JMS-ORG": lab}, json={"name": "same", "address": "10.1.0.1", "platform": 1}
    )
    assert in_lab.status_code == 201, "a name is unique per organisation only"
    assert in_lab.json()["org_name"] == "Lab"
    assert [h.name for h in fake.hosts(lab)] == ["same"]
    assert len(http.get(HOSTS, params={"oid": lab}).json()) == 1
    unknown = http.get(HOSTS, headers={"X-JMS-ORG": "00000000-0000-0000-0000-00000000ffff"}).json()
    assert [h["org_name"] for h in unknown] == ["Default"], "an unknown organisation is the default one"


def test_accounts_hold_a_write_only_ssh_key(fake: FakeJumpserver, http: httpx.Client) -> None:
    asset = host(http, "remotegpu-b").json()["id"]
    key = private_key()
    body = {"asset": asset, "name": "remotegpu", "username": "root", "secret_type": "ssh_key", "secret": key}
    created = http.post(ACCOUNTS, json=body)
    assert created.status_code == 201
    answer = created.json()
    assert "secret" not in answer
    assert answer["secret_type"] == {"value": "ssh_key", "label": "SSH key"}
    assert answer["asset"]["id"] == asset
    assert fake.accounts()[0].secret == key
    assert key not in repr(fake.accounts()[0])

    assert http.post(ACCOUNTS, json=body).json() == {
        "non_field_errors": ["The fields username, asset, secret_type must make a unique set."]
    }
    bad = http.post(ACCOUNTS, json=body | {"name": "other", "username": "x", "secret": "not a key"})
    assert (bad.status_code, bad.json()) == (400, ["private key invalid or passphrase error"])
    assert http.post(ACCOUNTS, json={"username": "x"}).json() == {"asset": "This field is required."}
    assert len(http.get(ACCOUNTS, params={"asset": asset, "name": "nothing-like-it"}).json()) == 1, (
        "no `name` filter"
    )

    account = f"{ACCOUNTS}{answer['id']}/"
    assert http.patch(account, json={"username": "someone-else", "comment": "c"}).json()["username"] == "root"
    assert http.patch(account, json={"secret": key}).json()["version"] == 1, (
        "the same secret is no new version"
    )
    assert http.patch(account, json={"secret": private_key()}).json()["version"] == 2

    http.delete(f"{HOSTS}{asset}/")
    assert fake.accounts() == [], "accounts go with their asset"


def test_users_are_listed_per_organisation_and_unique_everywhere(
    fake: FakeJumpserver, http: httpx.Client
) -> None:
    lab = fake.add_org("Lab")
    fake.add_user("dora", orgs=(lab,))
    assert http.get(USERS, params={"username": "dora"}).json() == [], (
        "not a member of the default organisation"
    )
    refused = http.post(USERS, json={"username": "dora", "name": "Dora", "email": "dora@lab.example"})
    assert refused.json() == {"username": ["User with this Username already exists."]}
    created = http.post(USERS, json={"username": "eve", "name": "Eve", "email": "eve@example.com"})
    assert created.status_code == 201
    assert [u["id"] for u in http.get(USERS, params={"username": "eve"}).json()] == [created.json()["id"]]
    assert http.post(USERS, json={"username": "f", "name": "F", "email": "nope"}).json() == {
        "email": ["Enter a valid email address."]
    }


def test_asset_permissions_grant_users_an_asset(fake: FakeJumpserver, http: httpx.Client) -> None:
    asset = host(http, "remotegpu-c").json()["id"]
    alice, bob = fake.add_user("alice"), fake.add_user("bob")
    body = {
        "name": "remotegpu-c",
        "users": [alice.id, bob.id],
        "assets": [asset],
        "accounts": ["root"],
        "actions": ["connect"],
        "protocols": ["ssh"],
    }
    created = http.post(PERMISSIONS, json=body)
    assert created.status_code == 201
    detail = created.json()
    assert {u["id"] for u in detail["users"]} == {alice.id, bob.id}
    assert detail["actions"] == [{"value": "connect", "label": "Connect (All protocols)"}]
    assert detail["is_valid"] is True
    listed = http.get(PERMISSIONS, params={"name": "remotegpu-c"}).json()
    assert "users" not in listed[0]
    assert listed[0]["users_amount"] == 2
    assert http.post(PERMISSIONS, json=body).json() == {"name": ["This field must be unique."]}
    assert http.post(PERMISSIONS, json=body | {"name": "n", "actions": ["fly"]}).json() == {
        "actions": ["Invalid choice: fly"]
    }
    assert http.post(PERMISSIONS, json=body | {"name": "n", "users": ["ghost"]}).json() == {
        "users": ['Invalid pk "ghost" - object does not exist.']
    }
    default = http.post(PERMISSIONS, json={"name": "everything"}).json()
    assert default["protocols"] == ["all"]
    assert len(default["actions"]) == 7

    narrowed = http.patch(f"{PERMISSIONS}{detail['id']}/", json={"users": [bob.id]}).json()
    assert [u["id"] for u in narrowed["users"]] == [bob.id]
    http.delete(f"{HOSTS}{asset}/")
    assert http.get(f"{PERMISSIONS}{detail['id']}/").json()["assets"] == []
    assert http.delete(f"{PERMISSIONS}{detail['id']}/").status_code == 204


def test_lists_page_with_limit_and_offset(http: httpx.Client) -> None:
    for number in range(5):
        host(http, f"h{number}")
    assert len(http.get(HOSTS).json()) == 5, "without `limit` a list is not paginated"
    assert isinstance(http.get(HOSTS, params={"limit": 0}).json(), list)
    first = http.get(HOSTS, params={"limit": 2, "search": "h"}).json()
    assert first["count"] == 5
    assert [h["name"] for h in first["results"]] == ["h0", "h1"]
    assert first["previous"] is None
    assert "offset=2" in first["next"]
    assert "search=h" in first["next"]
    assert first["next"].startswith("http://127.0.0.1:")
    last = http.get(HOSTS, params={"limit": 2, "offset": 4}).json()
    assert [h["name"] for h in last["results"]] == ["h4"]
    assert last["next"] is None
    assert "offset=2" in last["previous"]


def test_faults_unknown_routes_and_the_dev_pages(fake: FakeJumpserver, http: httpx.Client) -> None:
    fake.fail_next(2)
    assert [http.get(HOSTS).status_code for _ in range(3)] == [503, 503, 200]
    fake.fail_next(1, status=None)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(HOSTS)

    assert http.get("/api/v1/assets/widgets/").status_code == 404
    assert http.put(f"{USERS}x/", json={}).status_code == 405
    assert fake.unexpected == ["GET /api/v1/assets/widgets/", "PUT /api/v1/users/users/x/"]
    fake.unexpected.clear()

    asset = host(http, "remotegpu-d").json()["id"]
    page = httpx.get(fake.url)
    assert "remotegpu-d" in page.text
    assert f"login_to={asset}" in page.text
    assert "remotegpu-d" in httpx.get(f"{fake.url}/luna/", params={"login_to": asset}).text
