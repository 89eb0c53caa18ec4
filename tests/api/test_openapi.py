"""The OpenAPI document lists every error an operation answers, each a problem document, and no error
it cannot answer: checked against the operations' shapes, against the authorization matrix (who gets
401, 403 and 404 on every route), and against real answers. Schemathesis checks the rest while fuzzing
(`test_schemathesis.py`: status codes, media types and bodies of whatever it provokes)."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import msgspec
import pytest
from sqlalchemy import create_engine

from remotegpu.api.app import create_app
from remotegpu.api.openapi import answers
from remotegpu.core.platform.settings import Settings
from remotegpu.tests.api.conftest import JWT_SECRET, Caller
from remotegpu.tests.api.test_authorization import ROLES, ROUTES, _template, expected

_DOCUMENT: dict[str, Any] = msgspec.to_builtins(
    create_app(
        Settings(jwt_secret=JWT_SECRET), create_engine("postgresql+psycopg://")
    ).openapi_schema.to_schema()
)
_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in _DOCUMENT["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "responses" in operation
    ]


def _errors(operation: dict[str, Any]) -> set[int]:
    return {int(code) for code in operation["responses"] if code[0] in "45"}


def _operation(method: str, api_path: str) -> dict[str, Any]:
    operation: dict[str, Any] = _DOCUMENT["paths"][f"/api/v1{api_path}"][method.lower()]
    return operation


def test_every_error_answer_is_a_problem_document() -> None:
    assert _DOCUMENT["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
        "instance",
    ]
    for method, path, operation in _operations():
        for code, answer in operation["responses"].items():
            if code[0] in "45":
                assert answer["content"] == {"application/problem+json": {"schema": _PROBLEM}}, (
                    f"{method} {path} {code}"
                )


def test_each_operation_documents_what_its_shape_implies_and_validation_is_422_not_400() -> None:
    for method, path, operation in _operations():
        where = {parameter["in"] for parameter in operation.get("parameters", [])}
        body = "requestBody" in operation
        public = operation.get("security") == []
        implied = {
            401: not public,
            404: "path" in where,
            422: body or bool(where - {"path"}),
            400: body,
            413: body,
        }
        errors = _errors(operation)
        for status, applies in implied.items():
            if applies:
                assert status in errors, f"{method} {path} does not document {status}"
        assert 400 not in errors or body, f"{method} {path}: 400 is only for a body that is not JSON"


def test_every_refusal_of_the_authorization_matrix_is_documented() -> None:
    refused_403: set[tuple[str, str]] = set()
    for route in ROUTES:
        operation = _operation(route.method, _template(route.path))
        public = operation.get("security") == []
        assert public == (route.access == "public"), f"{route.method} {route.path}: security {public=}"
        for role in ROLES:
            outcome = expected(route, role)
            if outcome != "ok":
                assert int(outcome) in _errors(operation), f"{route.method} {route.path} as {role}"
            if outcome == "403":
                refused_403.add((route.method, _template(route.path)))
    # The converse for 403 (the status most easily claimed in error): every documented 403 is a refusal
    # of the matrix (the billing lists refuse only a `?workspace=` whose bills the caller may not read:
    # the matrix calls them with one as well as without).
    documented_403 = {
        (method, path.removeprefix("/api/v1"))
        for method, path, operation in _operations()
        if 403 in _errors(operation)
    }
    assert documented_403 - refused_403 == set()


def test_an_unknown_status_cannot_be_declared() -> None:
    with pytest.raises(ValueError, match="418"):
        answers(418)


def test_the_statuses_implied_by_shape_are_answered_as_documented(
    anonymous: httpx.Client, admin: Caller
) -> None:
    schema = {**_DOCUMENT["components"]["schemas"]["Problem"]}
    answered = {
        401: anonymous.get("/workspaces"),
        404: admin.get("/workspaces/00000000-0000-4000-8000-000000000000"),
        422: admin.get("/workspaces", params={"limit": "many"}),
        400: admin.post("/workspaces", content=b"{", headers={"content-type": "application/json"}),
        413: admin.post(
            "/workspaces", content=b" " * 1_048_577, headers={"content-type": "application/json"}
        ),
    }
    for status, response in answered.items():
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        jsonschema_rs.validate(schema, response.json())
    assert answered[401].headers["www-authenticate"] == "Bearer"
    assert answered[422].json()["errors"][0]["field"] == "limit"
