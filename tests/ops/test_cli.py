"""The real `remotegpu` executable: version, dev stack start and clean stop, and one-line errors."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import URL
from typer.core import TyperArgument
from typer.testing import CliRunner

from remotegpu.ops.cli.app import app, main
from remotegpu.ops.migrate import current_revision, head_revision
from remotegpu.ops.ports import bind
from remotegpu.ops.postgres import create_fresh_database, drop_database, server_answers
from remotegpu.tests.ops.processes import (
    EXECUTABLE,
    command_env,
    started,
    wait_for_empty_group,
    wait_until_serving,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
__all__ = ["EXAMPLES", "EXECUTABLE", "_env", "_run"]  # what other test modules import
_env = command_env


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, *args], check=False, capture_output=True, text=True, env=_env(**env), timeout=60
    )


@contextlib.contextmanager
def _dev(env: dict[str, str], cwd: Path) -> Iterator[str]:
    """`remotegpu dev` up to its ready line (yields the output so far), then stopped as Ctrl-C from a
    terminal stops it (SIGINT to its process group): cleanly, nothing of it left, its API port free."""
    with started(["dev"], env, cwd=cwd) as (process, output):
        if not output.wait_for("Ready.", timeout_s=90):
            pytest.fail("remotegpu dev never became ready:\n" + output.text())
        yield "".join(output.seen)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
        text = output.text()
        assert process.returncode == 0, text
        assert "Stopped." in text
        assert "Traceback" not in text, text
        wait_for_empty_group(process.pid)
    bind("127.0.0.1", int(env["REMOTEGPU_API_PORT"])).close()


@pytest.fixture
def fresh_database(postgres_server_url: URL) -> Iterator[URL]:
    url = create_fresh_database(postgres_server_url, "remotegpu_cli")
    yield url
    drop_database(url)


def test_version_prints_the_installed_version() -> None:
    result = _run("version")
    assert result.returncode == 0
    assert result.stdout.startswith("remotegpu 0.")


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _commands(group: Any) -> Iterator[Any]:
    yield group
    for command in getattr(group, "commands", {}).values():
        yield from _commands(command)


def test_version_option_prints_the_installed_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"remotegpu {package_version('remotegpu')}\n"


def test_help_shows_no_python_type_placeholders() -> None:
    root = typer.main.get_command(app)
    context = root.make_context("remotegpu", ["--help"], resilient_parsing=True)
    commands = list(_commands(root))
    assert len(commands) > 30
    for command in commands:
        for param in command.get_params(context):
            shown = param.display_type_rich(context) or ""
            assert not re.search(r"<|list\[|\b(str|int|float|bool|path|Path)\b", shown), (command.name, shown)
    for args in (("apply",), ("watch",), ("get", "envs"), ()):
        assert not re.search(r"<(list\[|str|int|float|bool|path|Path)", _help(*args)), args
    assert re.search(r"--filename\s+-f\s+PATH\s+Spec file", _help("apply"))
    assert re.search(r"--dry-run\s+Show what would change", _help("apply"))


def test_help_groups_server_and_client_commands() -> None:
    shown = _help()
    server, client = shown.index("─ Server ─"), shown.index("─ Client ─")
    panels = sorted([(server, "server"), (client, "client"), (len(shown), "end")])

    def panel_of(command: str) -> str:
        at = re.search(rf"│ {command} ", shown)
        assert at, command
        return next(
            name for (start, name), (end, _) in itertools.pairwise(panels) if start < at.start() < end
        )

    for command in ("dev", "api", "reconciler", "simcluster", "db", "users", "bench"):
        assert panel_of(command) == "server", command
    for command in ("login", "register", "apply", "get", "watch", "logs", "access", "workspaces"):
        assert panel_of(command) == "client", command


def test_dev_help_says_everything_it_starts() -> None:
    said = " ".join(_help("dev").split())
    for part in (
        "Postgres",
        "simulated GPU cluster",
        "reconciler",
        "the API",
        "until Ctrl-C",
        "admin-password",
    ):
        assert part in said, part


def _said(shown: str) -> str:
    """Help text as one line of words, without the boxes around it."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", shown).split())


def test_usage_lines_name_arguments_in_capitals() -> None:
    root = typer.main.get_command(app)
    context = root.make_context("remotegpu", ["--help"], resilient_parsing=True)
    for command in _commands(root):
        for param in command.get_params(context):
            if isinstance(param, TyperArgument):
                (shown,) = param.get_usage_pieces(context)
                assert re.fullmatch(r"\[?[A-Z_]+\]?(\.\.\.)?", shown), (command.name, shown)
    for args, usage in [
        (("describe", "env"), "describe env [OPTIONS] NAME"),
        (("workspaces", "add-member"), "workspaces add-member [OPTIONS] USER"),
        (("watch",), "watch [OPTIONS] [NAMES]..."),
    ]:
        assert re.search(rf"Usage: remotegpu {re.escape(usage)} *\n", _help(*args)), usage


def test_help_reads_whole_at_80_columns() -> None:
    said = _said(_help("get", "envs"))
    assert "(default: the one chosen by remotegpu workspaces use)" in said
    simcluster = CliRunner().invoke(app, ["simcluster", "--help"], env={"COLUMNS": "80"}).output
    assert "…" not in simcluster, "nothing cut off"
    assert "(default: simcluster.kubeconfig in the .remotegpu folder)" in _said(simcluster)
    assert "whose name contains does-not-exist" in _said(simcluster)


@pytest.mark.parametrize(
    ("args", "begins", "ends"),
    [
        (["get", "envs", "--bogus"], "No such option: --bogus (see ", " get envs --help)"),
        (["describe", "env"], "Missing argument 'NAME'. (see ", " describe env --help)"),
        (["watch", "--timeout", "soon"], "Invalid value for '--timeout': ", " watch --help)"),
    ],
)
def test_bad_usage_is_one_line_on_stderr_and_exit_2(
    args: list[str],
    begins: str,
    ends: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["remotegpu", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert (out, err.count("\n")) == ("", 1), err
    assert err.startswith(f"error: {begins}"), err
    assert err.endswith(f"{ends}\n"), err


def test_main_exits_0_after_version_and_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (["--version"], ["get", "--help"]):
        monkeypatch.setattr(sys, "argv", ["remotegpu", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == 0, args
    assert capsys.readouterr().out.startswith(f"remotegpu {package_version('remotegpu')}\n")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_newcomer_flow_on_the_dev_stack(fresh_database: URL, tmp_path: Path) -> None:
    """The README's path: dev stack up, sign in as its admin, create a workspace, apply an example spec,
    watch it reach running on a simulated GPU node (kubectl shows the pod), read logs and access, stop."""
    rendered = fresh_database.render_as_string(hide_password=False)
    port = str(_free_port())
    with _dev(_env(DATABASE_URL=rendered, REMOTEGPU_API_PORT=port), tmp_path) as output:
        assert "migrated to revision" in output
        assert "leader of shard 0" in output
        assert "simulated, 4 nodes" in output
        assert f"http://127.0.0.1:{port}/api/v1" in output
        assert current_revision(fresh_database) == head_revision()
        cli = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
        password = (tmp_path / ".remotegpu" / "admin-password").read_text()
        server = f"http://127.0.0.1:{port}"
        login = _run_with_input(
            password,
            "login",
            "--server",
            server,
            "--email",
            "admin@remotegpu.local",
            "--password-stdin",
            **cli,
        )
        assert login.returncode == 0, login.stderr
        assert _run("workspaces", "create", "research", **cli).returncode == 0
        applied = _run("apply", "-f", str(EXAMPLES / "pytorch-notebook.yaml"), **cli)
        assert applied.stdout.strip() == "environment/notebook created", applied.stderr
        watched = _run("watch", "notebook", "--timeout", "45", "--interval", "0.2", **cli)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert "running" in watched.stdout

        listed = json.loads(_run("get", "envs", "-o", "json", **cli).stdout)
        assert [(e["name"], e["phase"]) for e in listed] == [("notebook", "running")]
        kubeconfig = tmp_path / ".remotegpu" / "simcluster.kubeconfig"
        shown = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "pods", "-o", "wide"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert f"env-{listed[0]['id']}" in shown
        assert "Running" in shown
        assert "dev-node-" in shown

        logs = _run("logs", "notebook", **cli)
        assert "Started container" in logs.stdout, logs.stderr
        reach = json.loads(_run("access", "notebook", "-o", "json", **cli).stdout)
        assert sorted(a["kind"] for a in reach) == ["jupyter", "ssh"]
        pod = json.loads(
            subprocess.run(
                [
                    "kubectl",
                    "--kubeconfig",
                    str(kubeconfig),
                    "get",
                    "pod",
                    f"env-{listed[0]['id']}",
                    "-o",
                    "json",
                ],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        )
        published = {p["containerPort"]: p["hostPort"] for p in pod["spec"]["containers"][0]["ports"]}
        ssh = next(a for a in reach if a["kind"] == "ssh")
        assert ssh["command"] == f"ssh -p {published[22]} root@127.0.0.1", (
            "dev nodes' ExternalIP, the pod's port"
        )
        assert _run("stop", "notebook", **cli).returncode == 0
        stopped = _run("watch", "notebook", "--timeout", "45", "--interval", "0.2", **cli)
        assert stopped.returncode == 0
        assert json.loads(_run("get", "envs", "-o", "json", **cli).stdout)[0]["phase"] == "stopped"


def _run_with_input(stdin: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, *args],
        check=False,
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=60,
        input=stdin,
    )


def test_dev_without_database_url_runs_an_embedded_postgres_and_stops_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    url = URL.create(
        "postgresql+psycopg", "postgres", None, None, None, "remotegpu", {"host": str(data_dir / "postgres")}
    )
    env = _env(REMOTEGPU_DATA_DIR=str(data_dir), REMOTEGPU_API_PORT=str(_free_port()))
    with _dev(env, tmp_path) as output:
        assert "embedded" in output
        assert (data_dir / "postgres" / "PG_VERSION").exists()
        assert current_revision(url) == head_revision()
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


def test_db_upgrade_migrates_the_configured_database_and_db_wait_waits_for_it(fresh_database: URL) -> None:
    rendered = fresh_database.render_as_string(hide_password=False)
    early = _run("db", "wait", "--timeout", "0.5", DATABASE_URL=rendered)
    assert early.returncode == 1
    assert early.stderr.strip() == (
        f"error: the database is at no revision, not {head_revision()}, after 0.5 s; run `remotegpu db"
        " upgrade` (the migrations Job) first"
    )
    result = _run("db", "upgrade", DATABASE_URL=rendered)
    assert result.returncode == 0, result.stderr
    assert current_revision(fresh_database) == head_revision()
    assert _run("db", "current", DATABASE_URL=rendered).stdout.strip() == current_revision(fresh_database)
    waited = _run("db", "wait", "--timeout", "5", DATABASE_URL=rendered)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == f"Database at revision {head_revision()}."


def test_api_command_serves_with_workers_and_users_create_bootstraps_an_admin(
    fresh_database: URL, tmp_path: Path
) -> None:
    rendered = fresh_database.render_as_string(hide_password=False)
    assert _run("db", "upgrade", DATABASE_URL=rendered).returncode == 0
    created = _run_with_input(
        "a long admin password\n",
        "users",
        "create",
        "ops@example.org",
        "ops",
        "--admin",
        DATABASE_URL=rendered,
    )
    assert created.returncode == 0, created.stderr
    assert "created admin ops" in created.stdout
    port = str(_free_port())
    env = _env(DATABASE_URL=rendered, REMOTEGPU_API_PORT=port, REMOTEGPU_JWT_SECRET="k" * 48)
    with started(["api", "--workers", "2"], env) as (server, output):
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(server, output, f"{base}/readyz")
        token = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"email": "ops@example.org", "password": "a long admin password"},
        ).json()["access_token"]
        me = httpx.get(f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert (me["username"], me["role"]) == ("ops", "admin")
        for _ in range(6):  # new connections: the kernel spreads them over both workers
            httpx.get(f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        # whichever worker answers a scrape counts every worker's requests
        assert [_requests_counted(f"{base}/metrics", "/api/v1/users/me") for _ in range(6)] == [7] * 6

        # SIGINT to the parent alone, which inherited SIG_IGN for it: the workers stop with it.
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
        assert server.returncode == 0, output.text()
        wait_for_empty_group(server.pid)
    bind("127.0.0.1", int(port)).close()  # nobody serves the port any more


def _requests_counted(metrics_url: str, path: str) -> float:
    families = text_string_to_metric_families(httpx.get(metrics_url).text)
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == "remotegpu_requests_total" and sample.labels.get("path") == path
    )


def test_api_command_needs_a_jwt_secret(fresh_database: URL) -> None:
    result = _run("api", DATABASE_URL=fresh_database.render_as_string(hide_password=False))
    assert result.returncode == 1
    assert "REMOTEGPU_JWT_SECRET" in result.stderr
