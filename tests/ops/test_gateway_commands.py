"""`remotegpu gateways set-credentials` and `check`: the admin login goes into the secrets store (never
an argument, never printed), and a check signs in with it or says in one line why it cannot."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from remotegpu.core.gateways.credentials import GatewayLogin, read_gateway_login
from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.secrets.builtin import EncryptedSecretStore, SecretKeys
from remotegpu.ops.cli.app import app
from remotegpu.ops.fakes.guacamole import FakeGuacamole

KEY = "cmVtb3RlZ3B1LWNsaS10ZXN0cy1zZWNyZXRzLWtleSE="
PASSWORD = "guacamole-service-password"


@pytest.fixture
def guacamole() -> Iterator[FakeGuacamole]:
    with FakeGuacamole(admin_username="remotegpu", admin_password=PASSWORD) as fake:
        yield fake


def _env(database_url: URL, guacamole: FakeGuacamole) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    return env | {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "REMOTEGPU_SECRETS_KEY": KEY,
        "REMOTEGPU_GUACAMOLE_URL": guacamole.url,
    }


def test_set_credentials_stores_the_login_and_check_signs_in_with_it(
    engine: Engine, database_url: URL, sessions: object, guacamole: FakeGuacamole
) -> None:
    env, runner = _env(database_url, guacamole), CliRunner()
    stored = runner.invoke(
        app,
        ["gateways", "set-credentials", "guacamole", "--username", "remotegpu", "--password-stdin"],
        input=f"{PASSWORD}\n",
        env=env,
    )
    assert stored.exit_code == 0, stored.output
    assert PASSWORD not in stored.output
    login = read_gateway_login(EncryptedSecretStore(engine, SecretKeys(KEY)), "guacamole")
    assert login == GatewayLogin("remotegpu", PASSWORD)

    checked = runner.invoke(app, ["gateways", "check", "guacamole"], env=env)
    assert checked.exit_code == 0, checked.output
    assert "guacamole: signed in; 0 RemoteGPU connection(s)." in checked.output
    assert guacamole.logins == 1

    runner.invoke(
        app,
        ["gateways", "set-credentials", "guacamole", "--username", "remotegpu", "--password-stdin"],
        input="a-wrong-password\n",
        env=env,
    )
    # `main` turns these errors into one line on stderr and exit status 1 (tests/ops/test_cli.py)
    refused = runner.invoke(app, ["gateways", "check", "guacamole"], env=env)
    assert isinstance(refused.exception, RemoteGPUError)
    assert "Guacamole login as 'remotegpu' refused" in str(refused.exception)
    assert "a-wrong-password" not in str(refused.exception)
    blank = runner.invoke(
        app,
        ["gateways", "set-credentials", "guacamole", "--username", " ", "--password-stdin"],
        input=f"{PASSWORD}\n",
        env=env,
    )
    assert "--username: empty" in str(blank.exception)
    unconfigured = runner.invoke(app, ["gateways", "check", "jumpserver"], env=env)
    assert "set jumpserver_url" in str(unconfigured.exception)
