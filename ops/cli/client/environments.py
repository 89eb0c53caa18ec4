"""Environments by name: `get envs`, `start|stop|restart|delete`, `logs` and `access`.

`find_environment` is how every environment command turns a name into one environment; `describe env`
and `watch` live beside this module and use it too.
"""

from __future__ import annotations

import webbrowser
from typing import Annotated, Any

import typer

from remotegpu.core.environments.states import Phase
from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.api_client import ApiClient
from remotegpu.ops.cli.client.options import Name, Output, Workspace
from remotegpu.ops.cli.client.session import chosen_workspace, is_uuid, signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import Column, OutputFormat, emit

ENV_COLUMNS: list[Column] = [
    ("NAME", lambda e: e["name"]),
    ("WORKSPACE", lambda e: e["workspace"]),
    ("PHASE", lambda e: e["phase"]),
    ("DESIRED", lambda e: e["desired_state"]),
    ("GPUS", lambda e: f"{e['gpu_count']}×{e['gpu_model'] or 'any'}"),
    ("HOST", lambda e: e["host"]),
    ("REASON", lambda e: e["queue_reason"] or e["reason"]),
]


def find_environment(client: ApiClient, name: str, workspace: str | None) -> dict[str, Any]:
    """The environment called `name` (or with that id) in `workspace` (or in any of yours, if unique)."""
    if is_uuid(name):
        return dict(client.get(f"/environments/{name}"))
    matches = client.get("/environments", name=name, workspace=chosen_workspace(workspace))["items"]
    if not matches:
        raise RemoteGPUError(f"environment {name!r} not found (see `remotegpu get envs`)")
    if len(matches) > 1:
        spaces = ", ".join(sorted(m["workspace"] for m in matches))
        raise RemoteGPUError(f"environment {name!r} exists in several workspaces ({spaces}); pass -w")
    return dict(client.get(f"/environments/{matches[0]['id']}"))


def get_envs(workspace: Workspace = None, output: Output = OutputFormat.TABLE) -> None:
    """Environments, newest first."""
    with signed_in_client() as client:
        items = list(client.items("/environments", workspace=chosen_workspace(workspace)))
    emit(console, items, output, ENV_COLUMNS)


OpenJupyter = Annotated[
    bool, typer.Option("--open", help="Open the Jupyter URL (with its token) in a browser.")
]


def access(
    name: Name, workspace: Workspace = None, output: Output = OutputFormat.TABLE, open_: OpenJupyter = False
) -> None:
    """How to reach a running environment (SSH command, URLs); exit 1 if it is not running."""
    with signed_in_client() as client:
        environment = find_environment(client, name, workspace)
        if environment["phase"] != Phase.RUNNING:
            raise RemoteGPUError(
                f"environment {environment['name']!r} is not running (phase {environment['phase']}); "
                f"see `remotegpu describe env {environment['name']}`"
            )
        found = list(client.get(f"/environments/{environment['id']}/access"))
    if not found and output is OutputFormat.TABLE:
        console.print("no access endpoints: the spec asks for no ssh, jupyter or ports")
        return
    emit(
        console,
        found,
        output,
        [("KIND", lambda a: a["kind"]), ("URL", lambda a: a["url"]), ("COMMAND", lambda a: a["command"])],
    )
    if open_:
        _open_jupyter(found)


def _open_jupyter(found: list[dict[str, Any]]) -> None:
    """Open the Jupyter URL in a browser, and print it for when no browser opens."""
    jupyter = next((a for a in found if a["kind"] == "jupyter"), None)
    if jupyter is None:
        raise RemoteGPUError("the environment has no Jupyter access; add `jupyter` to its spec's access")
    if "token=" not in jupyter["url"]:
        console.print("the Jupyter token is shown only to the environment's owner and workspace admins")
    console.print(f"opening {jupyter['url']}", highlight=False, soft_wrap=True)
    webbrowser.open(jupyter["url"])


def _control(action: str, name: str, workspace: str | None, **params: Any) -> None:
    with signed_in_client() as client:
        environment = find_environment(client, name, workspace)
        answer: Any = None
        if action == "delete":
            client.request("DELETE", f"/environments/{environment['id']}")
        else:
            answer = client.post(f"/environments/{environment['id']}/{action}", **params)
    console.print(f"environment/{environment['name']} {action} requested", highlight=False)
    budget = answer.get("budget") if isinstance(answer, dict) else None
    if action != "stop" and budget and budget.get("state") == "exhausted":
        console.print(
            "it will wait: its workspace's budget is exhausted for this billing period (budget exhausted);"
            " it starts when the limit is raised or the next period begins",
            highlight=False,
        )


def start(name: Name, workspace: Workspace = None) -> None:
    """Ask for an environment to run (also retries a failed one)."""
    _control("start", name, workspace)


def stop(name: Name, workspace: Workspace = None) -> None:
    """Stop an environment: GPUs are released, volumes kept."""
    _control("stop", name, workspace)


def restart(
    name: Name,
    workspace: Workspace = None,
    pull: Annotated[
        bool,
        typer.Option("--pull", help="Resolve the image tag again: run what it names now at its registry."),
    ] = False,
) -> None:
    """Stop and start an environment with the same spec (and the same image digest, unless --pull)."""
    if pull:
        _control("restart", name, workspace, pull="true")
    else:
        _control("restart", name, workspace)


def delete(name: Name, workspace: Workspace = None) -> None:
    """Delete an environment and its volumes."""
    _control("delete", name, workspace)


def logs(
    name: Name,
    workspace: Workspace = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[int | None, typer.Option(min=1, help="Only the last N lines.")] = None,
) -> None:
    """Print an environment's log."""
    with signed_in_client() as client:
        environment = find_environment(client, name, workspace)
        for line in client.stream_lines(
            f"/environments/{environment['id']}/logs", follow=follow or None, tail=tail
        ):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
