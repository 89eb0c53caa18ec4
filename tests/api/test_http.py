"""The HTTP surface itself: problem documents, limits, health, readiness, metrics, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from remotegpu.api.app import create_app
from remotegpu.core.platform.pagination import encode_cursor
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.api_server import running_api
from remotegpu.tests.api.conftest import Caller, spec


def test_unknown_route_and_method_are_problem_documents(anonymous: httpx.Client) -> None:
    missing = anonymous.get("/no/such/thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["status"] == 404
    wrong_method = anonymous.patch("/auth/login")
    assert wrong_method.status_code == 405


def test_malformed_json_is_400_and_wrong_types_are_422(anonymous: httpx.Client) -> None:
    malformed = anonymous.post(
        "/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["title"]
    typed = anonymous.post("/auth/login", json={"email": 7, "password": "x"})
    assert typed.status_code == 422
    assert typed.json()["errors"][0]["field"] == "$.email"


def test_bad_path_and_query_parameters_are_422(admin: Caller) -> None:
    assert admin.get("/environments/not-a-uuid").status_code in (404, 422)
    limited = admin.get("/environments", params={"limit": 100000})
    assert limited.status_code == 422
    assert "limit" in limited.text


def test_request_bodies_over_the_limit_are_413(engine: Engine) -> None:
    settings = Settings(jwt_secret="k" * 40, max_request_bytes=1024)
    with running_api(create_app(settings, engine)) as url:
        response = httpx.post(f"{url}/api/v1/auth/register", json={"email": "x" * 5000})
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


def test_login_is_rate_limited_per_client(engine: Engine) -> None:
    settings = Settings(jwt_secret="k" * 40, login_attempts_per_minute=3)
    with running_api(create_app(settings, engine)) as url:
        codes = [
            httpx.post(f"{url}/api/v1/auth/login", json={"email": "a@b.org", "password": "x"}).status_code
            for _ in range(5)
        ]
        other_routes = httpx.get(f"{url}/healthz").status_code
    assert codes == [401, 401, 401, 429, 429]
    assert other_routes == 200


@pytest.fixture
def root(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


def test_health_readiness_and_metrics(root: httpx.Client) -> None:
    assert root.get("/healthz").json() == {"status": "ok"}
    assert root.get("/readyz").json() == {"status": "ready"}
    root.get("/api/v1/users/me")
    metrics = root.get("/metrics")
    assert metrics.status_code == 200
    assert "remotegpu_requests_total" in metrics.text


def test_openapi_document_and_spec_schema_are_served(root: httpx.Client) -> None:
    document = root.get("/api/v1/openapi/openapi.json").json()
    assert document["info"]["title"] == "RemoteGPU API"
    assert "/api/v1/environments/apply" in document["paths"]
    schema = root.get("/api/v1/schemas/environment.json").json()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "EnvironmentSpec" in str(schema)


def test_values_postgres_cannot_take_are_422_not_500(admin: Caller) -> None:
    """Found by schemathesis: a NUL character in a query string, and a well-formed cursor whose key does
    not parse as the sort key, used to reach Postgres and come back as 500."""
    nul = admin.get("/environments", params={"name": "a\x00b"})
    assert nul.status_code == 422
    assert "NUL" in nul.json()["detail"]
    cursor = encode_cursor("not a time", "not a uuid")
    assert admin.get("/billing/records", params={"cursor": cursor}).status_code == 422


def test_hostile_numbers_and_strings_are_422_naming_the_field(admin: Caller) -> None:
    """Found by a hostile review: NaN and inf CPU answered 500; values past a column's range (1e18 cores,
    a 2**63 GPU limit, a 5,000-character model name) and CPU below a millicore reached Postgres or were
    stored. Each is now refused by the struct or parser, naming the field and the bound."""
    research = admin.post("/workspaces", json={"name": "research"}).json()["id"]

    def refused(response: httpx.Response) -> tuple[str, str]:
        assert response.status_code == 422, response.text
        error = response.json()["errors"][0]
        return error["field"], error["message"]

    def applied(**resources: object) -> httpx.Response:
        document = spec("train", "research", resources={"cpu": 1} | resources)
        return admin.http.post("/environments/apply", json=document, params={"dry_run": True})

    for cpu in ("NaN", "inf"):
        assert refused(applied(cpu=cpu))[0] == "$.resources.cpu"
        assert refused(admin.put(f"/quotas/workspaces/{research}", json={"cpu": cpu}))[0] == "$.cpu"
    for cpu in ("1e18", "1e300"):
        assert refused(applied(cpu=cpu)) == ("$.resources.cpu", f"must be at most 4096 cores, not {cpu}")
    assert refused(applied(cpu="0.0001")) == (
        "$.resources.cpu",
        "must be at least 1m (0.001 of a core) or 0, not 0.0001",
    )
    assert refused(applied(memory="999999999999Pi"))[0] == "$.resources.memory"
    assert refused(applied(gpus={"count": 1, "model": ""}))[0] == "$.resources.gpus.model"
    quota = f"/quotas/workspaces/{research}"
    assert refused(admin.put(quota, json={"cpu": "1e300"}))[0] == "$.cpu"
    assert refused(admin.put(quota, json={"gpus": 2**63 - 1})) == (
        "$.gpus",
        "must be between 0 and 2147483647",
    )
    assert refused(admin.put(quota, json={"gpus_by_model": {"x" * 5000: 1}}))[0] == "$.gpus_by_model"
    assert refused(admin.put(quota, json={"gpus_by_model": {"": 1}}))[0] == "$.gpus_by_model"


def test_a_body_nested_too_deeply_is_400_not_500(admin: Caller) -> None:
    """Found by a hostile review: 100,000 nested lists (well under the size limit) overflowed the JSON
    decoder's recursion and answered 500."""
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/environments/apply", "/workspaces"):
        answer = admin.post(path, content=deep, headers={"content-type": "application/json"})
        assert answer.status_code == 400, answer.text
        assert answer.json()["detail"] == "the body is not JSON this API can read: it nests too deeply"


def test_a_nul_character_in_any_string_is_422_naming_the_field(admin: Caller) -> None:
    """Found by a hostile review: NUL in `image` came back in Postgres's words without a field, and NUL
    in `env` or a GPU model was stored. One check covers every string of every body and query."""
    admin.post("/workspaces", json={"name": "research"})
    cases: dict[str, dict[str, Any]] = {
        "$.image": {"image": "pytorch\x00"},
        "$.env.TOKEN": {"env": {"TOKEN": "a\x00b"}},
        "$.env": {"env": {"A\x00": "b"}},
        "$.command[1]": {"command": ["python", "-c\x00"]},
        "$.resources.gpus.model": {"resources": {"gpus": {"count": 1, "model": "H100\x00"}}},
    }
    for field, change in cases.items():
        answer = admin.post("/environments/apply", json=spec("train", "research", **change))
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"] == [
            {"field": field, "message": "must not contain the NUL character (\\u0000)"}
        ]
    query = admin.get("/environments", params={"name": "a\x00b"})
    assert query.status_code == 422
    assert query.json()["errors"][0]["field"] == "name"
    assert admin.get("/environments").json()["items"] == []


def test_errors_are_in_our_words_with_fields_in_one_form(admin: Caller, anonymous: httpx.Client) -> None:
    """Found by a hostile review: raw patterns, `ParamType.QUERY`, `not a string` for query text, enum
    values not listed, `$.env[...]` for a known key, and conflicts as `name` / `name: …` beside 422s'
    `$.name`. Body fields are JSON paths, parameters their names; messages never repeat the field."""

    def first_error(response: httpx.Response) -> dict[str, str]:
        assert response.status_code in (409, 422), response.text
        return dict(response.json()["errors"][0])

    account = {"email": "bad", "username": "bob", "password": "long enough password"}
    assert first_error(anonymous.post("/auth/register", json=account)) == {
        "field": "$.email",
        "message": "must be an e-mail address",
        "source": "body",
    }
    account |= {"email": "bob@example.org", "username": "-bob"}
    assert first_error(anonymous.post("/auth/register", json=account))["message"] == (
        "must be 2 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )
    assert first_error(admin.get("/environments", params={"mine": "maybe"})) == {
        "field": "mine",
        "message": "must be true or false",
        "source": "query",
    }
    assert (
        first_error(admin.get("/environments", params={"limit": "abc"}))["message"]
        == "must be a whole number"
    )
    assert (
        first_error(admin.get("/environments", params={"limit": 0}))["message"] == "must be between 1 and 200"
    )
    phase = first_error(admin.get("/environments", params={"phase": "bogus"}))["message"]
    assert phase.startswith("must be one of 'pending', 'admitted', ")
    assert phase.endswith(", not 'bogus'")
    admin.post("/workspaces", json={"name": "research"})
    env_value = admin.post("/environments/apply", json=spec("train", "research", env={"OK": "x", "BAD": 5}))
    assert first_error(env_value)["field"] == "$.env.BAD"
    taken = first_error(admin.post("/workspaces", json={"name": "research"}))
    assert taken == {
        "field": "$.name",
        "message": "workspace 'research' already exists; choose another name (if it is yours, make it the"
        " default with `remotegpu workspaces use research`)",
    }
