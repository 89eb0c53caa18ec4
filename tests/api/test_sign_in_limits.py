"""Sign-in rate limits: counted in the database (so every API process enforces one limit), per address
and per account from each address, answered with 429, `Retry-After` and when to try again."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from remotegpu.api.app import create_app
from remotegpu.core.accounts.sign_in_limits import SignInLimits, count_sign_in_attempt
from remotegpu.core.accounts.users import register_user
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.api_server import running_api
from remotegpu.tests.api.conftest import JWT_SECRET, PASSWORD
from remotegpu.tests.ops.test_cli import EXECUTABLE, _env

START = dt.datetime(2026, 11, 30, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def frozen(engine: Engine, sessions: sessionmaker[Session]) -> Iterator[Callable[[dt.timedelta], None]]:
    """A frozen clock and no counters left by earlier tests (`sessions` empties the tables after)."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM sign_in_counters"))
    with clock.frozen_at(START) as advance:
        yield advance


@contextmanager
def _apis(engine: Engine, count: int, per_address: int = 10, per_account: int = 20) -> Iterator[list[str]]:
    """`count` API processes' worth of apps (each its own state) on one database."""
    settings = Settings(
        jwt_secret=JWT_SECRET,
        login_attempts_per_minute=per_address,
        login_failures_per_account_per_hour=per_account,
    )
    with ExitStack() as stack:
        yield [stack.enter_context(running_api(create_app(settings, engine))) for _ in range(count)]


def _sign_in(url: str, email: str, password: str, address: str = "127.0.0.1") -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=address)) as client:
        return client.post(f"{url}/api/v1/auth/login", json={"email": email, "password": password})


def test_two_api_processes_share_one_limit_per_address(
    engine: Engine, frozen: Callable[[dt.timedelta], None]
) -> None:
    with _apis(engine, 2, per_address=2) as (first, second):
        answers = [_sign_in((first, second)[i % 2], "a@example.org", "wrong") for i in range(6)]
        assert [a.status_code for a in answers] == [401, 401, 429, 429, 429, 429]
        refused = answers[-1]
        assert refused.headers["retry-after"] == "60"
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["detail"] == (
            "too many sign-in attempts from this address; try again in 60 seconds (at 2026-11-30T12:01:00Z)"
        )
        frozen(dt.timedelta(seconds=45))
        assert _sign_in(second, "a@example.org", "wrong").headers["retry-after"] == "15"
        frozen(dt.timedelta(seconds=15))
        assert _sign_in(first, "a@example.org", "wrong").status_code == 401, "a new window"


def test_failures_at_an_account_slow_that_address_but_never_lock_the_owner_out(
    engine: Engine, frozen: Callable[[dt.timedelta], None]
) -> None:
    with engine.begin() as connection:
        register_user(connection, email="alice@example.org", username="alice", password=PASSWORD)
    stranger, owner = "127.0.0.1", "127.0.0.2"
    with _apis(engine, 1, per_account=2) as (url,):
        guesses = [_sign_in(url, "alice@example.org", f"guess {i}", stranger).status_code for i in range(2)]
        assert guesses == [401, 401]
        refused = _sign_in(url, "Alice@example.org", PASSWORD, stranger)
        assert refused.status_code == 429, "refused before the password is checked, right or not"
        assert refused.headers["retry-after"] == "3600"
        assert "this account from this address" in refused.json()["detail"]
        assert _sign_in(url, "bob@example.org", "guess", stranger).status_code == 401, "other accounts"
        assert _sign_in(url, "alice@example.org", PASSWORD, owner).status_code == 200, "the owner"
        # The success cleared the owner's count (it counted too), so their own typos start from zero.
        typos = [_sign_in(url, "alice@example.org", "typo", owner).status_code for _ in range(2)]
        assert typos == [401, 401]
        frozen(dt.timedelta(hours=1))
        assert _sign_in(url, "alice@example.org", PASSWORD, stranger).status_code == 200


def test_cli_says_when_to_sign_in_again(
    engine: Engine, frozen: Callable[[dt.timedelta], None], tmp_path: Path
) -> None:
    with engine.begin() as connection:  # the one attempt allowed, spent
        count_sign_in_attempt(connection, SignInLimits(1, 1), "127.0.0.1", "a@example.org")
    with _apis(engine, 1, per_address=1) as (url,):
        result = subprocess.run(
            [EXECUTABLE, "login", "--server", url, "--email", "a@example.org", "--password-stdin"],
            input="wrong\n",
            capture_output=True,
            text=True,
            env=_env(XDG_CONFIG_HOME=str(tmp_path)),
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "try again in 60 seconds" in result.stderr
    assert "[HTTP 429]" in result.stderr
