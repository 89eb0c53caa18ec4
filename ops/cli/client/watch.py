"""`remotegpu watch`: a live table until every environment has settled, and what "settled" means."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from remotegpu.core.environments.states import Phase
from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.api_client import ApiClient
from remotegpu.ops.cli.client.environments import ENV_COLUMNS, find_environment
from remotegpu.ops.cli.client.options import Workspace
from remotegpu.ops.cli.client.session import chosen_workspace, signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import table
from remotegpu.policies.queue import NEVER_FITS


def unplaceable(environment: dict[str, Any]) -> bool:
    """Whether an environment waits for capacity that no host has (no host has its GPU model, or enough
    GPUs of it, or every such host is cordoned): waiting longer will not place it."""
    return environment["phase"] == Phase.ADMITTED and (environment["queue_reason"] or "").startswith(
        NEVER_FITS
    )


def settled(environment: dict[str, Any]) -> bool:
    """Whether the reconciler has finished with an environment for now (it may still change later)."""
    phase, desired = environment["phase"], environment["desired_state"]
    if phase == Phase.FAILED or unplaceable(environment):
        return True
    caught_up = int(environment["observed_generation"]) >= int(environment["generation"])
    return caught_up and phase == desired


def _watched(
    client: ApiClient, names: list[str], workspace: str | None
) -> tuple[str | None, set[str] | None]:
    """The workspace to list and the ids of the named environments (None: all of them); each name is
    looked up as `describe` does, so a name that matches nothing is an error, not an empty table."""
    if not names:
        return chosen_workspace(workspace), None
    found = [find_environment(client, name, workspace) for name in names]
    spaces = {e["workspace"] for e in found}
    return (spaces.pop() if len(spaces) == 1 else None), {str(e["id"]) for e in found}


def watch(
    names: Annotated[list[str] | None, typer.Argument(help="Environments to watch (default: all).")] = None,
    workspace: Workspace = None,
    timeout: Annotated[float, typer.Option(min=1, help="Give up after this many seconds.")] = 600,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 1.0,
) -> None:
    """A live table of phases until every environment has settled; exit 1 if any failed, cannot be
    placed or time ran out."""
    deadline = time.monotonic() + timeout
    progress = Progress(
        TextColumn("settled"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
    task = progress.add_task("settled", total=None)
    with signed_in_client() as client:
        chosen, wanted = _watched(client, names or [], workspace)
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                items = list(client.items("/environments", workspace=chosen))
                if wanted is not None:
                    items = [e for e in items if str(e["id"]) in wanted]
                done = [e for e in items if settled(e)]
                progress.update(task, total=len(items), completed=len(done))
                live.update(Group(table(items, ENV_COLUMNS), progress))
                if len(done) == len(items):
                    break
                if time.monotonic() > deadline:
                    raise RemoteGPUError(
                        f"{len(items) - len(done)} environments had not settled after {timeout:g} s"
                    )
                time.sleep(interval)
    if not console.is_terminal:
        console.print()  # the last frame ends without a newline off a terminal
    failed = [e["name"] for e in items if e["phase"] == Phase.FAILED]
    stuck = [f"{e['name']} ({e['queue_reason']})" for e in items if unplaceable(e)]
    if failed or stuck:
        said = [f"failed: {', '.join(failed)}"] if failed else []
        said += [f"cannot be placed: {', '.join(stuck)}"] if stuck else []
        raise RemoteGPUError(f"{'; '.join(said)} (see `remotegpu describe env NAME`)")
