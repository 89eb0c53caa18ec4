"""Operating the API: a request id on every answer and in problem documents, one log line per call (who,
which route, how it ended; never a token), JSON log lines with the bound fields, CORS only for listed
origins, and a drain on SIGTERM that finishes requests in flight and refuses new ones with 503."""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine, text

from remotegpu.api.app import create_app
from remotegpu.core.platform.log_context import bound_log_fields
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.api_server import running_api, running_api_server
from remotegpu.ops.log_format import JsonFormatter, log_handler
from remotegpu.tests.api.conftest import JWT_SECRET, Caller
from remotegpu.tests.polling import poll_until


def test_every_answer_carries_a_request_id_and_problems_quote_it(new_user: Callable[[str], Caller]) -> None:
    alice = new_user("alice")
    chosen = alice.get("/users/me", headers={"X-Request-ID": "support-4711"})
    assert chosen.headers["x-request-id"] == "support-4711", "the caller's own id is kept"
    made = alice.get("/users/me", headers={"X-Request-ID": "not acceptable\tat all " + "x" * 80})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"]), "an unusable one is replaced"
    refused = alice.get("/environments/00000000-0000-0000-0000-000000000000")
    assert refused.status_code == 404
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


def test_one_log_line_per_call_with_the_route_template_and_the_caller_never_a_token(
    new_user: Callable[[str], Caller], caplog: pytest.LogCaptureFixture
) -> None:
    bob = new_user("bob")
    caplog.set_level(logging.INFO, logger="remotegpu.api.requests")
    answer = bob.get("/environments/00000000-0000-0000-0000-000000000000?secret=1")
    lines = [
        r for r in caplog.records if r.name == "remotegpu.api.requests" and r.__dict__.get("status") == 404
    ]
    assert len(lines) == 1
    line = lines[0].__dict__
    assert line["method"] == "GET"
    assert line["route"] == "/api/v1/environments/{environment_id}"
    assert line["request_id"] == answer.headers["x-request-id"]
    assert line["user"] == str(bob.user_id)
    assert line["environment"] == "00000000-0000-0000-0000-000000000000"
    assert line["duration_ms"] >= 0
    token = bob.headers["authorization"].split()[1]
    rendered = json.dumps({k: str(v) for k, v in line.items()})
    assert token not in rendered
    assert "secret=1" not in rendered


def test_json_lines_carry_the_fields_bound_to_the_unit_of_work() -> None:
    record = logging.LogRecord("remotegpu.reconciler", logging.ERROR, __file__, 1, "Step failed", (), None)
    record.__dict__["node"] = "gpu-7"
    handler = log_handler("json", None)  # type: ignore[arg-type]  # json needs no console
    with bound_log_fields(environment="e-1", shard=0, epoch=42):
        for kept in handler.filters:
            assert kept.filter(record)  # type: ignore[union-attr]
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "error"
    assert entry["message"] == "Step failed"
    assert (entry["environment"], entry["shard"], entry["epoch"], entry["node"]) == ("e-1", 0, 42, "gpu-7")
    assert entry["time"].endswith("+00:00")
    assert "RuntimeError: boom" in entry["exception"]


def test_cors_answers_only_listed_origins(engine: Engine) -> None:
    listed = "https://console.example.org"
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    settings = Settings(jwt_secret=JWT_SECRET, cors_origins=[listed])
    with running_api(create_app(settings, engine)) as url:
        allowed = httpx.options(f"{url}/api/v1/users/me", headers={"Origin": listed, **preflight})
        assert allowed.status_code in {200, 204}
        assert allowed.headers["access-control-allow-origin"] == listed
        assert allowed.headers["access-control-allow-credentials"] == "true"
        other = httpx.options(
            f"{url}/api/v1/users/me", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers
        simple = httpx.get(f"{url}/healthz", headers={"Origin": listed})
        assert simple.headers["access-control-allow-origin"] == listed
    with running_api(create_app(Settings(jwt_secret=JWT_SECRET), engine)) as url:
        none = httpx.get(f"{url}/healthz", headers={"Origin": listed})
        assert "access-control-allow-origin" not in none.headers, "no origin is listed by default"


def test_a_drain_finishes_the_request_in_flight_and_refuses_new_ones(
    engine: Engine, new_user: Callable[[str], Caller]
) -> None:
    carol = new_user("carol")
    token = carol.headers["authorization"]
    with running_api_server(create_app(Settings(jwt_secret=JWT_SECRET, drain_seconds=30), engine)) as (
        url,
        server,
    ):
        answers: list[httpx.Response] = []
        with engine.connect() as blocker:
            blocker.execute(text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": carol.user_id})
            writer = threading.Thread(
                target=lambda: answers.append(
                    httpx.patch(
                        f"{url}/api/v1/users/me",
                        json={"display_name": "Carol"},
                        headers={"Authorization": token},
                        timeout=30,
                    )
                )
            )
            writer.start()
            poll_until(lambda: server.drain.in_flight == 1, 10, "the write to be in flight")
            server.handle_exit(signal.SIGTERM, None)
            refused = httpx.get(f"{url}/readyz")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "2"
            assert refused.json()["detail"].startswith("this API process is shutting down")
            assert not server.should_exit, "still serving what it started"
            blocker.rollback()
        writer.join(timeout=30)
        assert answers[0].status_code == 200, "the request in flight finished"
        poll_until(lambda: server.should_exit, 5, "the server to stop once drained")


def test_a_reload_changes_cors_origins_and_sign_in_limits_in_place(engine: Engine) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    first, second = "https://a.example.org", "https://b.example.org"
    app = create_app(Settings(jwt_secret=JWT_SECRET, cors_origins=[first]), engine)
    with running_api(app) as url:
        assert (
            httpx.options(f"{url}/api/v1/users/me", headers={"Origin": first, **preflight}).headers.get(
                "access-control-allow-origin"
            )
            == first
        )
        reloaded = Settings(
            jwt_secret=JWT_SECRET, cors_origins=[second], login_attempts_per_minute=1, api_port=9999
        )
        taken = app.state.live_settings.apply(reloaded)
        assert taken == {"cors_origins", "login_attempts_per_minute", "login_failures_per_account_per_hour"}
        moved = httpx.options(f"{url}/api/v1/users/me", headers={"Origin": second, **preflight})
        assert moved.headers.get("access-control-allow-origin") == second
        gone = httpx.options(f"{url}/api/v1/users/me", headers={"Origin": first, **preflight})
        assert "access-control-allow-origin" not in gone.headers
        attempt = {"email": "nobody@example.org", "password": "not a password"}
        assert httpx.post(f"{url}/api/v1/auth/login", json=attempt).status_code == 401
        assert httpx.post(f"{url}/api/v1/auth/login", json=attempt).status_code == 429, "one a minute now"


def test_cut_database_connections_answer_503_with_retry_after_then_recover(
    engine: Engine, new_user: Callable[[str], Caller]
) -> None:
    dave = new_user("dave")
    with running_api(create_app(Settings(jwt_secret=JWT_SECRET), engine)) as url:
        me = f"{url}/api/v1/users/me"
        headers = {"Authorization": dave.headers["authorization"]}
        rename = f"{url}/api/v1/users/me"
        assert httpx.get(me, headers=headers).status_code == 200
        assert httpx.patch(rename, json={"display_name": "D"}, headers=headers).status_code == 200
        with engine.begin() as connection:  # what a database restart or failover does to the API's pools
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'remotegpu-api%' AND pid <> pg_backend_pid()"
                )
            )
        statuses = []
        for _ in range(6):
            for answer in (
                httpx.get(me, headers=headers),
                httpx.patch(rename, json={"display_name": "D"}, headers=headers),
            ):
                statuses.append(answer.status_code)
                if answer.status_code == 503:
                    assert answer.headers["retry-after"] == "2"
                    assert answer.json()["title"] == "Database unavailable"
        assert 500 not in statuses
        assert statuses[-2:] == [200, 200], f"recovered by itself: {statuses}"
