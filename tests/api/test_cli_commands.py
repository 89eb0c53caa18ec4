"""The real `remotegpu` executable against a running API: apply, dry-run diffs, get, describe, admin
commands, and one-line errors with a non-zero exit status."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.api.conftest import Caller
from remotegpu.tests.ops.test_cli import EXAMPLES, EXECUTABLE, _env

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(api_url: str, tmp_path: Path) -> Callable[[Caller], Run]:
    """A runner of the CLI signed in (by API token) as a given caller."""

    def as_caller(caller: Caller) -> Run:
        token = caller.post("/auth/tokens", json={"name": "cli-test"}).json()["token"]

        def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
            env = _env(
                REMOTEGPU_SERVER_URL=api_url, REMOTEGPU_TOKEN=token, XDG_CONFIG_HOME=str(tmp_path / "xdg")
            )
            return subprocess.run(
                [EXECUTABLE, *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                input=stdin,
                check=False,
            )

        return run

    return as_caller


def test_apply_a_folder_then_a_dry_run_shows_the_diff(
    cli: Callable[[Caller], Run], new_user: Callable[[str], Caller], reconciler: Reconciler, tmp_path: Path
) -> None:
    alice = new_user("alice")
    run = cli(alice)
    assert run("workspaces", "create", "research").returncode == 0
    applied = run("apply", "-f", str(EXAMPLES))
    assert applied.returncode == 0, applied.stderr
    assert sorted(applied.stdout.split("\n")[:-1]) == [
        "environment/llm-finetune created",
        "environment/notebook created",
        "environment/prep created",
    ]
    again = run("apply", "-f", str(EXAMPLES / "pytorch-notebook.yaml"))
    assert again.stdout.strip() == "environment/notebook unchanged"

    changed = yaml.safe_load((EXAMPLES / "pytorch-notebook.yaml").read_text())
    changed["resources"]["gpus"]["count"] = 2
    edited = tmp_path / "notebook.yaml"
    edited.write_text(yaml.safe_dump(changed))
    preview = run("apply", "-f", str(edited), "--dry-run")
    assert "environment/notebook updated (dry run)" in preview.stdout
    assert "-    count: 1" in preview.stdout
    assert "+    count: 2" in preview.stdout
    stored = json.loads(run("get", "envs", "-o", "json").stdout)
    assert {e["name"]: e["generation"] for e in stored}["notebook"] == 1, "a dry run changes nothing"

    reconciler.run_until_idle()
    described = run("describe", "env", "notebook")
    assert "Phase:       running" in described.stdout
    assert "ssh -p" in described.stdout
    as_yaml = yaml.safe_load(run("get", "envs", "-o", "yaml").stdout)
    assert {e["name"] for e in as_yaml} == {"notebook", "llm-finetune", "prep"}


def test_errors_are_one_line_and_exit_non_zero(
    cli: Callable[[Caller], Run], new_user: Callable[[str], Caller], tmp_path: Path
) -> None:
    run = cli(new_user("alice"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: environment\nname: x\nimage: y\nresources: {gpus: 1, memroy: 1Gi}\n")
    for args, message in [
        (("apply", "-f", str(bad), "-w", "research"), "bad.yaml: $.resources.memroy: unknown field `memroy`"),
        (("apply", "-f", str(EXAMPLES / "pytorch-notebook.yaml")), "no workspace"),
        (("stop", "ghost", "-w", "research"), "not found"),
        (("get", "hosts"), "this needs a platform administrator [HTTP 403]"),
    ]:
        result = run(*args)
        assert result.returncode == 1, (args, result.stdout)
        assert result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_unreachable_api_is_a_clear_error(tmp_path: Path) -> None:
    env = _env(REMOTEGPU_SERVER_URL="http://127.0.0.1:9", XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run(
        [EXECUTABLE, "get", "envs"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "cannot reach the API at http://127.0.0.1:9" in result.stderr


def test_admin_commands(cli: Callable[[Caller], Run], admin: Caller, reconciler: Reconciler) -> None:
    run = cli(admin)
    assert run("workspaces", "create", "ops-team").returncode == 0
    quota = run("quota", "set", "--gpus", "4", "--gpu-model", "H100=2", "--memory", "256Gi", "-o", "json")
    assert quota.returncode == 0, quota.stderr
    assert json.loads(quota.stdout)["max_gpus_by_model"] == {"H100": 2}
    assert "node-0" in run("get", "hosts").stdout
    assert run("hosts", "cordon", "node-0", "--reason", "fans").stdout.strip() == "host/node-0 cordoned"
    hosts = {h["name"]: h for h in json.loads(run("get", "hosts", "-o", "json").stdout)}
    assert (hosts["node-0"]["cordoned"], hosts["node-0"]["cordon_reason"]) == (True, "fans")
    assert "drained" in run("hosts", "drain", "node-1").stdout
    reconciler.run_until_idle()
    status = run("ops", "status")
    assert "api-test" in status.stdout
    assert "queue depth" in status.stdout
    assert run("billing", "invoices").returncode == 0
    assert len(json.loads(run("get", "gpus", "-o", "json").stdout)) == 16
