"""`remotegpu quota set`: replace the limits of a workspace or a user (platform admins)."""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli.client.options import Output, Workspace
from remotegpu.ops.cli.client.session import required_workspace, signed_in_client, workspace_id
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit

quota_app = typer.Typer(help="Quotas (setting them needs a platform admin).", no_args_is_help=True)


@quota_app.command("set")
def quota_set(
    workspace: Workspace = None,
    user: Annotated[str | None, typer.Option(help="User id (instead of a workspace).")] = None,
    gpus: Annotated[int | None, typer.Option(min=0, help="Most GPUs at once.")] = None,
    gpu_model: Annotated[list[str] | None, typer.Option(help="Per-model limit, MODEL=N; repeatable.")] = None,
    cpu: Annotated[str | None, typer.Option(help="CPU, e.g. 64 or 500m.")] = None,
    memory: Annotated[str | None, typer.Option(help="Memory, e.g. 512Gi.")] = None,
    storage: Annotated[str | None, typer.Option(help="Volume storage, e.g. 10Ti.")] = None,
    running: Annotated[int | None, typer.Option(min=0, help="Most running environments.")] = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Replace the limits of a workspace or user; limits left out are unlimited."""
    by_model: dict[str, int] = {}
    for entry in gpu_model or []:
        model, _, count = entry.partition("=")
        if not count.isdigit():
            raise RemoteGPUError(f"--gpu-model {entry!r}: write MODEL=N, e.g. H100=8")
        by_model[model] = int(count)
    body = {
        "gpus": gpus,
        "gpus_by_model": by_model,
        "cpu": cpu,
        "memory": memory,
        "storage": storage,
        "running_environments": running,
    }
    with signed_in_client() as client:
        if user:
            path = f"/quotas/{user}"
        else:
            path = f"/quotas/workspaces/{workspace_id(client, required_workspace(workspace))}"
        result = client.request("PUT", path, json_body=body)
    emit(
        console,
        result,
        output,
        [
            ("SUBJECT", lambda q: q["subject"]),
            ("GPUS", lambda q: q["max_gpus"]),
            ("BY MODEL", lambda q: q["max_gpus_by_model"]),
            ("MEMORY", lambda q: q["max_memory_bytes"]),
            ("RUNNING", lambda q: q["max_running_environments"]),
        ],
    )
