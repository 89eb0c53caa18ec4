"""The long-running commands own their processes and their port.

Each of `dev`, `api --workers 2`, `reconciler` and `simcluster` stops on SIGINT and on SIGTERM sent to it
alone (as `kill PID` does; a terminal's Ctrl-C reaches the whole group): exit status 0, no process of its
group left, its port free. They start as a background job of a non-interactive shell would, with SIGINT
ignored. `dev` and `api` with SIGINT are the stops of tests/ops/test_cli.py, which start them anyway.
A worker dies with its parent, also a killed one; a taken port is refused in one line before anything
starts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from remotegpu.ops.migrate import upgrade
from remotegpu.ops.ports import bind
from remotegpu.ops.postgres import create_fresh_database, drop_database
from remotegpu.tests.ops.processes import (
    Output,
    command_env,
    started,
    wait_for_empty_group,
    wait_until_serving,
)
from remotegpu.tests.polling import poll_until

JWT_SECRET = "k" * 48


@pytest.fixture(scope="module")
def migrated_database(postgres_server_url: URL) -> Iterator[str]:
    """One migrated database for every command of this module (each stops cleanly before the next)."""
    url = create_fresh_database(postgres_server_url, "remotegpu_signals")
    upgrade(url)
    yield url.render_as_string(hide_password=False)
    drop_database(url)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _command(name: str, port: int, database_url: str, folder: Path) -> tuple[list[str], dict[str, str]]:
    """The arguments and environment of `name` serving on `port` (the reconciler serves none)."""
    if name == "dev":
        return ["dev", "--host", "127.0.0.1", "--port", str(port)], command_env(DATABASE_URL=database_url)
    if name == "api":
        env = command_env(
            DATABASE_URL=database_url, REMOTEGPU_JWT_SECRET=JWT_SECRET, REMOTEGPU_API_PORT=str(port)
        )
        return ["api", "--workers", "2"], env
    if name == "reconciler":
        return ["reconciler"], command_env(DATABASE_URL=database_url)
    kubeconfig = str(folder / "sim.kubeconfig")
    return ["simcluster", "--nodes", "1", "--port", str(port), "--kubeconfig", kubeconfig], command_env()


READY_LINE = {"dev": "Ready.", "reconciler": "Reconciler ", "simcluster": "Simulated cluster at "}


def _wait_until_ready(name: str, process: subprocess.Popen[str], output: Output, port: int) -> None:
    if name == "api":
        wait_until_serving(process, output, f"http://127.0.0.1:{port}/readyz")
    else:
        assert output.wait_for(READY_LINE[name]), f"remotegpu {name} never became ready:\n{output.text()}"


def _assert_port_free(port: int) -> None:
    bind("127.0.0.1", port).close()  # raises EADDRINUSE while anything still listens


@pytest.mark.parametrize(
    ("name", "signum"),
    [
        ("dev", signal.SIGTERM),
        ("api", signal.SIGTERM),
        ("reconciler", signal.SIGINT),
        ("reconciler", signal.SIGTERM),
        ("simcluster", signal.SIGINT),
        ("simcluster", signal.SIGTERM),
    ],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else value,
)
def test_a_stop_signal_to_the_command_stops_everything_it_started(
    name: str, signum: signal.Signals, migrated_database: str, tmp_path: Path
) -> None:
    port = _free_port()
    args, env = _command(name, port, migrated_database, tmp_path)
    with started(args, env, cwd=tmp_path) as (process, output):
        _wait_until_ready(name, process, output, port)
        os.kill(process.pid, signum)
        process.wait(timeout=60)
        text = output.text()
        assert process.returncode == 0, text
        assert "Stopped." in text
        assert "Traceback" not in text, text
        wait_for_empty_group(process.pid)
        _assert_port_free(port)


_CHILD = """
import sys
from remotegpu.ops.stopping import die_with_parent, install_stop_handlers, wait_for_stop
install_stop_handlers()
die_with_parent(int(sys.argv[1]))
print("ready", flush=True)
wait_for_stop()
"""
_PARENT = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
child.wait()
"""


def test_a_worker_dies_with_its_parent_killed_by_sigkill() -> None:
    """What an API worker of `remotegpu api --workers N` does first (`die_with_parent`), in a bare child."""
    with started(["-c", _PARENT, _CHILD], command_env(), program=sys.executable) as (process, output):
        assert output.wait_for("ready", timeout_s=30), output.text()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        wait_for_empty_group(process.pid)


@pytest.mark.parametrize(
    ("args", "env", "flag"),
    [
        # No DATABASE_URL: an embedded Postgres would start first.
        (["dev"], {"REMOTEGPU_API_PORT": "{port}"}, "--port or REMOTEGPU_API_PORT"),
        # A database that does not answer: connecting would fail first.
        (
            ["api", "--host", "127.0.0.1", "--port", "{port}"],
            {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
            "--port or REMOTEGPU_API_PORT",
        ),
        (["simcluster", "--port", "{port}"], {}, "--port (0: any free port)"),
    ],
    ids=["dev", "api", "simcluster"],
)
def test_a_taken_port_is_refused_in_one_line_before_anything_starts(
    args: list[str], env: dict[str, str], flag: str, tmp_path: Path
) -> None:
    with bind("127.0.0.1", 0) as taken:
        port = str(taken.getsockname()[1])
        args = [arg.format(port=port) for arg in args]
        env = command_env(**{key: value.format(port=port) for key, value in env.items()})
        with started(args, env, cwd=tmp_path) as (process, output):
            process.wait(timeout=60)
            text = output.text()
    assert process.returncode == 1
    assert text == f"error: port {port} on 127.0.0.1 is in use: choose another with {flag}\n"
    assert not (tmp_path / ".remotegpu").exists()  # nothing started: no embedded Postgres, no kubeconfig


def _leader(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                text(
                    "SELECT leader_id FROM shard_leaders WHERE shard = 0 AND heartbeat_at > now() - interval '5 s'"
                )
            ).scalar()
    finally:
        engine.dispose()


def test_a_sigterm_leader_hands_over_within_a_heartbeat_not_a_lease(
    migrated_database: str, tmp_path: Path
) -> None:
    """The leader resigns on SIGTERM (its lock released, its unworked leases given back), so a standby
    that campaigns every heartbeat leads again long before a lease (30 s) would have run out."""
    env = command_env(
        DATABASE_URL=migrated_database,
        REMOTEGPU_HEARTBEAT_SECONDS="0.5",
        REMOTEGPU_RECONCILER_METRICS_PORT="0",
    )
    with started(["reconciler", "--identity", "replica-a"], env, cwd=tmp_path) as (first, first_output):
        assert first_output.wait_for("Reconciler "), first_output.text()
        poll_until(
            lambda: _leader(migrated_database), 20, "replica-a to lead", until=lambda who: who == "replica-a"
        )
        with started(["reconciler", "--identity", "replica-b"], env, cwd=tmp_path) as (second, second_output):
            assert second_output.wait_for("Reconciler "), second_output.text()
            stopped_at = time.monotonic()
            os.kill(first.pid, signal.SIGTERM)
            poll_until(
                lambda: _leader(migrated_database),
                20,
                "replica-b to lead",
                until=lambda who: who == "replica-b",
            )
            takeover = time.monotonic() - stopped_at
            first.wait(timeout=30)
            assert first.returncode == 0, first_output.text()
            print(f"takeover after SIGTERM: {takeover:.2f} s (heartbeat 0.5 s, lease 30 s)")
            assert takeover < 10, (
                "a lease is 30 s; a resigned leader is replaced at the standby's next campaign"
            )
            os.kill(second.pid, signal.SIGTERM)
            second.wait(timeout=30)


def test_sighup_reloads_what_may_change_and_names_what_needs_a_restart(
    migrated_database: str, tmp_path: Path
) -> None:
    config = tmp_path / "remotegpu.toml"
    config.write_text("reconcile_workers = 8\n")
    env = command_env(DATABASE_URL=migrated_database, REMOTEGPU_RECONCILER_METRICS_PORT="0")
    args = ["reconciler", "--config", str(config), "--log-format", "json"]
    with started(args, env, cwd=tmp_path) as (process, output):
        assert output.wait_for("Reconciler "), output.text()
        config.write_text(
            'reconcile_workers = 2\nlog_level = "debug"\napi_port = 9999\nmeter_seconds = "x"\n'
        )
        os.kill(process.pid, signal.SIGHUP)
        assert output.wait_for('{"time"', timeout_s=10)  # some JSON line; the bad file is refused:
        poll_until(lambda: "Settings not reloaded" in output.text(), 10, "the invalid file refused")
        config.write_text('reconcile_workers = 2\nlog_level = "debug"\napi_port = 9999\n')
        os.kill(process.pid, signal.SIGHUP)
        poll_until(lambda: '"Settings reloaded"' in output.text(), 10, "the reload")
        line = next(json.loads(raw) for raw in output.text().splitlines() if '"Settings reloaded"' in raw)
        assert line["applied"] == ["log_level", "reconcile_workers"]
        assert line["need_restart"] == ["api_port"]
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        assert process.returncode == 0, output.text()
