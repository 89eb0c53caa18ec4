"""`remotegpu doctor` against real parts: the test database, the simulated cluster, the built-in secrets
store and Debian's Prometheus scraping the simulated DCGM exporter. A row per part; exit status 0 when
every configured part answers, 1 when one does not (or hangs past the timeout); without DATABASE_URL
the database is `not configured` and named."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from remotegpu.core.accounts.users import Principal
from remotegpu.core.environments.states import UserRole
from remotegpu.core.registry.configured import RegistryDocument, put_registry
from remotegpu.core.registry.credentials import RegistryLogin, set_login
from remotegpu.core.secrets.builtin import EncryptedSecretStore, SecretKeys, generate_secrets_key
from remotegpu.core.secrets.registry_credentials import REGISTRY_CREDENTIALS
from remotegpu.ops.cli.app import app
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.ops.simcluster.server import DCGM_PATH
from remotegpu.tests.allocation_world import make_user
from remotegpu.tests.prometheus_world import Prometheus, ScrapeJob, running_prometheus
from remotegpu.tests.registry_world import RunningRegistry, registry
from remotegpu.tests.secrets_world import builtin_store

PARTS = ["database", "cluster", "registry", "secrets", "gateway", "prometheus"]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(
        NodeTemplate(count=2, gpus=4), start_delay=dt.timedelta(milliseconds=50)
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def prometheus(sim: SimulatedCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    jobs = [ScrapeJob("dcgm", [sim.url.removeprefix("http://")], DCGM_PATH, honor_labels=True)]
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), jobs) as running:
        running.wait_for("DCGM_FI_DEV_GPU_UTIL")
        yield running


def doctor(*args: str, **settings: str) -> Result:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    env |= {"DATABASE_URL": None, "COLUMNS": "300"} | dict(settings)
    return CliRunner().invoke(app, ["doctor", "-o", "json", *args], env=env)


def rows(result: Result) -> dict[str, dict[str, Any]]:
    found = {row["part"]: row for row in json.loads(result.stdout)}
    assert list(found) == PARTS
    return found


@pytest.fixture
def configured(
    engine: Engine,
    database_url: URL,
    sessions: sessionmaker[Session],
    sim: SimulatedCluster,
    prometheus: Prometheus,
    tmp_path: Path,
) -> dict[str, str]:
    """Settings that configure the database, the cluster, the secrets store and Prometheus."""
    return {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "REMOTEGPU_KUBECONFIG": str(sim.write_kubeconfig(tmp_path / "kubeconfig")),
        "REMOTEGPU_SECRETS_KEY": generate_secrets_key(),
        "REMOTEGPU_PROMETHEUS_URL": prometheus.url,
    }


def test_every_configured_part_answers_and_the_others_name_their_setting(configured: dict[str, str]) -> None:
    result = doctor(**configured)
    assert result.exit_code == 0, result.output
    found = rows(result)
    assert {part: found[part]["state"] for part in PARTS} == {
        "database": "ok",
        "cluster": "ok",
        "registry": "not configured",
        "secrets": "ok",
        "gateway": "not configured",
        "prometheus": "ok",
    }
    assert "migrated (revision" in found["database"]["detail"]
    assert found["cluster"]["detail"].startswith("2 nodes (2 ready), 8 GPUs")
    assert "8 GPUs report DCGM_FI_DEV_GPU_UTIL" in found["prometheus"]["detail"]
    assert "remotegpu registry add NAME --url URL" in found["registry"]["detail"]
    assert "set gateway = guacamole or jumpserver" in found["gateway"]["detail"]
    assert configured["REMOTEGPU_SECRETS_KEY"] not in result.stdout


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_configured_part_that_does_not_answer_fails_the_doctor(
    configured: dict[str, str], engine: Engine
) -> None:
    down = f"http://127.0.0.1:{_closed_port()}"
    key = configured["REMOTEGPU_SECRETS_KEY"]
    # the registry named in the stored credentials is not there either
    EncryptedSecretStore(engine, SecretKeys(key)).put(
        REGISTRY_CREDENTIALS, json.dumps({"auths": {f"127.0.0.1:{_closed_port()}": {"auth": "dTpw"}}})
    )
    result = doctor(**(configured | {"REMOTEGPU_PROMETHEUS_URL": down}))
    assert result.exit_code == 1, result.output
    found = rows(result)
    assert found["prometheus"]["state"] == "failed"
    assert f"Prometheus at {down} cannot be reached" in found["prometheus"]["detail"]
    assert found["registry"]["state"] == "failed"
    assert "does not answer" in found["registry"]["detail"]
    assert found["database"]["state"] == "ok"


def test_a_part_that_hangs_is_reported_after_the_timeout(configured: dict[str, str]) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        hanging = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = doctor("--timeout", "0.5", **(configured | {"REMOTEGPU_PROMETHEUS_URL": hanging}))
    assert result.exit_code == 1, result.output
    prometheus = rows(result)["prometheus"]
    assert (prometheus["state"], prometheus["detail"]) == (
        "failed",
        f"Prometheus at {hanging} did not answer in time",
    )


def test_it_runs_without_a_database_url() -> None:
    result = doctor()
    assert result.exit_code == 0, result.output
    found = rows(result)
    assert all(row["state"] == "not configured" for row in found.values())
    assert "set DATABASE_URL" in found["database"]["detail"]
    assert "set prometheus_url" in found["prometheus"]["detail"]
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    table = CliRunner().invoke(app, ["doctor"], env=env | {"DATABASE_URL": None, "COLUMNS": "300"})
    assert [line.split()[0] for line in table.stdout.splitlines()[1:7]] == PARTS


@pytest.mark.parametrize(("password", "state"), [(None, "ok"), ("not the password", "failed")])
def test_a_configured_registry_is_asked_with_its_login(
    configured: dict[str, str], engine: Engine, registry: RunningRegistry, password: str | None, state: str
) -> None:
    """The real registry (htpasswd auth) is listed with the stored login: it answers, or the doctor
    says the login is refused, never showing the password."""
    store = builtin_store(engine, configured["REMOTEGPU_SECRETS_KEY"])
    with engine.begin() as connection:
        admin = make_user(connection)
        principal = Principal(admin, "root", "root@example.org", UserRole.ADMIN)
        config = put_registry(connection, principal, "lab", RegistryDocument("oci", registry.url, ["ml"]))
        login = RegistryLogin(registry.username, password or registry.password)
        set_login(connection, principal, store, config, login)
    result = doctor(**configured)
    found = rows(result)
    assert found["registry"]["state"] == state, found["registry"]
    if state == "ok":
        assert found["registry"]["detail"] == "1 configured registries answer: lab (oci)"
        assert result.exit_code == 0, result.output
    else:
        assert "lab: the login is refused" in found["registry"]["detail"]
        assert result.exit_code == 1
    assert login.password not in result.stdout


__all__ = ["registry"]  # the real registry fixture, imported for pytest
