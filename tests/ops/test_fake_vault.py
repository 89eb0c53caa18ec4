"""The fake Vault answers as Vault's HTTP API documents: KV v2 reads, writes, versions, soft deletes and
metadata; tokens; sealing; and its error shapes (`{"errors": [...]}` with 400, 403, 404, 503)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest

from remotegpu.core.platform import clock
from remotegpu.ops.fakes.vault import FakeVault
from remotegpu.tests.secrets_world import running_fake_vault


@pytest.fixture
def vault() -> Iterator[FakeVault]:
    yield from running_fake_vault()


@pytest.fixture
def http(vault: FakeVault) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{vault.url}/v1", headers={"X-Vault-Token": vault.root_token}) as client:
        yield client


def test_kv_versions_soft_delete_undelete_and_metadata(http: httpx.Client) -> None:
    for value in ("one", "two"):
        written = http.post("/secret/data/app/db", json={"data": {"password": value}})
        assert written.status_code == 200
    assert written.json()["data"]["version"] == 2
    assert http.get("/secret/data/app/db").json()["data"]["data"] == {"password": "two"}
    assert http.get("/secret/data/app/db", params={"version": 1}).json()["data"]["data"] == {
        "password": "one"
    }

    assert http.delete("/secret/data/app/db").status_code == 204
    deleted = http.get("/secret/data/app/db")
    assert deleted.status_code == 404
    assert deleted.json()["data"]["data"] is None
    assert deleted.json()["data"]["metadata"]["deletion_time"] != ""
    assert http.post("/secret/undelete/app/db", json={"versions": [2]}).status_code == 204
    assert http.get("/secret/data/app/db").json()["data"]["data"] == {"password": "two"}

    metadata = http.get("/secret/metadata/app/db").json()["data"]
    assert metadata["current_version"] == 2
    assert sorted(metadata["versions"]) == ["1", "2"]
    assert http.post("/secret/destroy/app/db", json={"versions": [1]}).status_code == 204
    assert http.get("/secret/data/app/db", params={"version": 1}).json()["data"]["metadata"]["destroyed"]

    assert http.request("LIST", "/secret/metadata/app").json()["data"]["keys"] == ["db"]
    assert http.get("/secret/metadata", params={"list": "true"}).json()["data"]["keys"] == ["app/"]
    assert http.delete("/secret/metadata/app/db").status_code == 204
    assert http.get("/secret/metadata/app/db").json() == {"errors": []}


def test_check_and_set_and_the_version_limit(http: httpx.Client) -> None:
    assert http.post("/secret/data/k", json={"data": {"v": 0}, "options": {"cas": 0}}).status_code == 200
    refused = http.post("/secret/data/k", json={"data": {"v": 1}, "options": {"cas": 0}})
    assert refused.status_code == 400
    assert refused.json() == {"errors": ["check-and-set parameter did not match the current version"]}
    for number in range(12):
        http.post("/secret/data/k", json={"data": {"v": number}})
    assert http.get("/secret/metadata/k").json()["data"]["oldest_version"] == 4
    assert http.post("/secret/data/k", json={"nodata": True}).json() == {"errors": ["no data provided"]}


def test_errors_are_answered_as_vault_answers_them(vault: FakeVault, http: httpx.Client) -> None:
    assert http.get("/secret/data/missing").json() == {"errors": []}
    assert http.get("/secret/data/missing").status_code == 404
    anonymous = httpx.get(f"{vault.url}/v1/secret/data/missing")
    assert (anonymous.status_code, anonymous.json()) == (403, {"errors": ["permission denied"]})
    assert http.post("/auth/token/renew-self").json() == {"errors": ["lease is not renewable"]}
    login = http.post("/auth/approle/login", json={"role_id": "nobody", "secret_id": "x"})
    assert (login.status_code, login.json()) == (400, {"errors": ["invalid role or secret ID"]})
    assert http.get("/other/data/x").status_code == 404
    assert vault.unexpected == ["GET /v1/other/data/x"]
    vault.unexpected.clear()


def test_sealing_answers_503_until_unsealed(vault: FakeVault, http: httpx.Client) -> None:
    assert http.get("/sys/health").json()["sealed"] is False
    assert http.put("/sys/seal").status_code == 204
    assert http.get("/sys/health").status_code == 503
    sealed = http.get("/secret/data/x")
    assert (sealed.status_code, sealed.json()) == (503, {"errors": ["Vault is sealed"]})
    assert http.put("/sys/unseal", json={"key": "wrong"}).status_code == 400
    assert http.put("/sys/unseal", json={"key": vault.unseal_key}).json()["sealed"] is False
    assert http.get("/sys/health").status_code == 200


def test_approle_login_gives_a_renewable_token_lookup_self_describes(vault: FakeVault) -> None:
    role_id, secret_id = vault.add_approle("remotegpu")
    with (
        clock.frozen_at(dt.datetime(2025, 1, 1, tzinfo=dt.UTC)),
        httpx.Client(base_url=f"{vault.url}/v1") as http,
    ):
        auth = http.post("/auth/approle/login", json={"role_id": role_id, "secret_id": secret_id}).json()[
            "auth"
        ]
        assert auth["renewable"] is True
        assert auth["lease_duration"] == 3600
        headers = {"X-Vault-Token": auth["client_token"]}
        looked_up = http.get("/auth/token/lookup-self", headers=headers).json()["data"]
        assert looked_up["ttl"] == 3600
        assert looked_up["policies"] == ["default", "remotegpu"]
        renewed = http.post("/auth/token/renew-self", headers=headers, json={"increment": "30m"}).json()
        assert renewed["auth"]["lease_duration"] == 1800
