"""The real `remotegpu` executable: version, dev stack start and clean stop, and one-line errors."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from remotegpu.core.db import make_engine
from remotegpu.core.environments import submit_environment
from remotegpu.ops.migrate import current_revision
from remotegpu.ops.postgres import create_fresh_database, drop_database, server_answers
from remotegpu.tests.allocation_world import make_user, make_workspace

EXECUTABLE = shutil.which("remotegpu") or str(Path(sys.executable).with_name("remotegpu"))


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("REMOTEGPU_")}
    env.update(overrides)
    env["COLUMNS"] = "200"
    return env


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, *args], check=False, capture_output=True, text=True, env=_env(**env), timeout=60
    )


def _start_dev(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], str]:
    """Start `remotegpu dev` and return it with its output up to the ready line."""
    process = subprocess.Popen(
        [EXECUTABLE, "dev"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
    )
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith("Ready."):
            return process, "".join(seen)
    process.kill()
    pytest.fail("remotegpu dev never became ready:\n" + "".join(seen))


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    return rest


@pytest.fixture
def fresh_database(postgres_server_url: URL) -> Iterator[URL]:
    url = create_fresh_database(postgres_server_url, "remotegpu_cli")
    yield url
    drop_database(url)


def test_version_prints_the_installed_version() -> None:
    result = _run("version")
    assert result.returncode == 0
    assert result.stdout.startswith("remotegpu 0.")


def test_dev_with_database_url_migrates_it_and_stops_on_ctrl_c(fresh_database: URL, tmp_path: Path) -> None:
    rendered = fresh_database.render_as_string(hide_password=False)
    process, output = _start_dev(_env(DATABASE_URL=rendered), tmp_path)
    assert "Postgres" in output
    assert "migrated to revision" in output
    assert "leader of shard 0" in output
    assert "simulated, 4 nodes" in output
    assert current_revision(fresh_database) is not None
    try:
        environment = _submit_through_the_database(fresh_database)
        _wait_for_phase(fresh_database, environment, "running")
        kubeconfig = tmp_path / ".remotegpu" / "simcluster.kubeconfig"
        shown = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "pods", "-o", "wide"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert f"env-{environment}" in shown
        assert "Running" in shown
        assert "dev-node-" in shown
    finally:
        assert "Stopped." in _stop(process)


def _submit_through_the_database(url: URL) -> uuid.UUID:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            user = make_user(connection)
            workspace = make_workspace(connection, user)
            spec = {"image": "pytorch:24.05", "resources": {"gpus": {"count": 1}}}
            return submit_environment(
                connection, workspace_id=workspace, user_id=user, name="demo", spec=spec
            )
    finally:
        engine.dispose()


def _wait_for_phase(url: URL, environment: uuid.UUID, phase: str) -> None:
    engine = make_engine(url, pool_size=1)
    try:
        deadline = time.monotonic() + 30
        seen = None
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                seen = connection.execute(
                    text("SELECT phase FROM environments WHERE id = :id"), {"id": environment}
                ).scalar_one()
            if seen == phase:
                return
            time.sleep(0.1)
        pytest.fail(f"environment stayed {seen}, never {phase}")
    finally:
        engine.dispose()


def test_dev_without_database_url_runs_an_embedded_postgres_and_stops_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    process, output = _start_dev(_env(REMOTEGPU_DATA_DIR=str(data_dir)), tmp_path)
    assert "embedded" in output
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    url = URL.create(
        "postgresql+psycopg", "postgres", None, None, None, "remotegpu", {"host": str(data_dir / "postgres")}
    )
    assert current_revision(url) is not None
    _stop(process)
    assert not server_answers(url)


def test_bad_setting_is_one_readable_line_and_a_non_zero_exit() -> None:
    result = _run("db", "current", REMOTEGPU_API_PORT="eighty")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: REMOTEGPU_API_PORT: Expected `int`, got `str`"
    assert "Traceback" not in result.stderr


def test_db_commands_need_a_database_url() -> None:
    result = _run("db", "upgrade")
    assert result.returncode == 1
    assert "DATABASE_URL" in result.stderr


def test_db_upgrade_migrates_the_configured_database(fresh_database: URL) -> None:
    rendered = fresh_database.render_as_string(hide_password=False)
    result = _run("db", "upgrade", DATABASE_URL=rendered)
    assert result.returncode == 0, result.stderr
    assert current_revision(fresh_database) is not None
    assert _run("db", "current", DATABASE_URL=rendered).stdout.strip() == current_revision(fresh_database)
