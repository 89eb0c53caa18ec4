"""Schemathesis against the app's own OpenAPI document: generated requests to every operation, sent as
a regular user and as a platform admin, never get a 5xx, and every answer is one the document lists for
that operation, with the media type and body schema it documents (error answers: a problem document).
(Authorisation and happy paths are asserted elsewhere; this hunts crashes on inputs nobody thought of
and answers nobody documented.)

Examples are derandomized so CI is repeatable; raise RGPU_FUZZ_EXAMPLES locally to search longer.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from typing import Any

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine, create_engine, text

from remotegpu.api.app import create_app
from remotegpu.core.accounts.credentials import hash_password, issue_token
from remotegpu.core.platform.settings import Settings
from remotegpu.tests.api.conftest import JWT_SECRET

# The document as the API serves it (msgspec turns struct defaults into plain JSON).
_DOCUMENT = msgspec.to_builtins(
    create_app(
        Settings(jwt_secret=JWT_SECRET), create_engine("postgresql+psycopg://")
    ).openapi_schema.to_schema()
)
schema = schemathesis.openapi.from_dict(_DOCUMENT)
_EXAMPLES = int(os.environ.get("RGPU_FUZZ_EXAMPLES", "15"))
_HASH = hash_password("fuzzing password")
_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def callers(engine: Engine, sessions: object) -> dict[str, dict[str, str]]:
    """Bearer headers of a user (owner of a workspace with an environment) and a platform admin."""
    headers = {}
    with engine.begin() as connection:
        for role in ("user", "admin"):
            user_id = connection.execute(
                text(
                    "INSERT INTO users (email, username, password_hash, role) VALUES (:e, :n, :h, :r) RETURNING id"
                ),
                {"e": f"fuzz-{role}@example.org", "n": f"fuzz-{role}", "h": _HASH, "r": role},
            ).scalar_one()
            token = issue_token(JWT_SECRET, uuid.UUID(str(user_id)), "access", dt.timedelta(minutes=30)).token
            headers[role] = {"Authorization": f"Bearer {token}"}
    return headers


@schema.parametrize()
@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_every_answer_is_documented_and_none_is_a_5xx(
    case: schemathesis.Case[Any], api_url: str, callers: dict[str, dict[str, str]]
) -> None:
    for role, headers in callers.items():
        response = case.call(base_url=api_url, headers=headers, timeout=30)
        try:
            case.validate_response(response, checks=_CHECKS, headers=headers)
        except BaseException as failure:  # schemathesis's FailureGroup is not an Exception
            failure.add_note(f"called as the {role}")
            raise
