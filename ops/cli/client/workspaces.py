"""`remotegpu workspaces create|use|add-member|settings` and `remotegpu get workspaces`."""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.api_client import load_profile, save_profile
from remotegpu.ops.cli.client.options import Output, Workspace
from remotegpu.ops.cli.client.session import required_workspace, signed_in_client, workspace_id
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit

workspaces_app = typer.Typer(help="Create and choose workspaces, manage members.", no_args_is_help=True)


@workspaces_app.command("create")
def workspace_create(
    name: Annotated[str, typer.Argument(help="Short DNS-label name, e.g. research.")],
    display_name: Annotated[str, typer.Option(help="Longer name shown in tables.")] = "",
    use: Annotated[bool, typer.Option(help="Make it the default workspace of this CLI.")] = True,
) -> None:
    """Create a workspace you own."""
    with signed_in_client() as client:
        created = client.post("/workspaces", {"name": name, "display_name": display_name})
    if use:
        profile = load_profile()
        profile.workspace = created["name"]
        save_profile(profile)
    console.print(f"workspace/{created['name']} created" + (" (now the default)" if use else ""))


@workspaces_app.command("use")
def workspace_use(name: Annotated[str, typer.Argument(help="Workspace name.")]) -> None:
    """Make a workspace the default of `apply`, `get`, `watch`…"""
    with signed_in_client() as client:
        found = client.get(f"/workspaces/{workspace_id(client, name)}")
    profile = load_profile()
    profile.workspace = found["name"]
    save_profile(profile)
    console.print(f"default workspace: {found['name']}")


@workspaces_app.command("add-member")
def workspace_add_member(
    user: Annotated[str, typer.Argument(help="E-mail, username or id.")],
    role: Annotated[str, typer.Option(help="owner, admin, member or viewer.")] = "member",
    workspace: Workspace = None,
) -> None:
    """Add someone to a workspace."""
    with signed_in_client() as client:
        added = client.post(
            f"/workspaces/{workspace_id(client, required_workspace(workspace))}/members",
            {"user": user, "role": role},
        )
    console.print(f"{added['username']} is now {added['role']}")


@workspaces_app.command("settings")
def workspace_settings(
    admin_keys: Annotated[
        bool | None,
        typer.Option(
            "--admin-keys/--no-admin-keys",
            help="Also authorise workspace admins' and owners' SSH keys in members' environments.",
        ),
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            help="How environments are reached: direct, guacamole or jumpserver (where the deployment lets"
            " workspaces choose); `default` for the deployment's choice.",
        ),
    ] = None,
    spending_limit: Annotated[
        str | None,
        typer.Option(
            "--spending-limit",
            help="Limit per billing period in the deployment's currency, e.g. 250.00; `none` to remove it"
            " (owners). At 80% a warning; at 100% new environments wait and running ones stop.",
        ),
    ] = None,
    idle_stop_minutes: Annotated[
        str | None,
        typer.Option(
            "--idle-stop-minutes",
            help="Stop a running environment whose GPUs were all idle this many minutes, unless its spec"
            " sets policies.idle_stop_after; `none` to never (needs monitoring: see `remotegpu doctor`).",
        ),
    ] = None,
    home_volume: Annotated[
        str | None,
        typer.Option(
            "--home-volume",
            help="Give each member a persistent home of this size (e.g. 50Gi) at /home/<user> in their"
            " environments, billed as storage; `none` for no new ones.",
        ),
    ] = None,
    workspace: Workspace = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Show the workspace's settings; with a flag, change it first (admins and owners; the spending
    limit owners only)."""
    changes: dict[str, object] = {}
    if home_volume is not None:
        changes["home_volume_size"] = None if home_volume.lower() == "none" else home_volume
    if idle_stop_minutes is not None:
        changes["default_idle_stop_minutes"] = _minutes(idle_stop_minutes)
    if spending_limit is not None:
        changes["spending_limit"] = None if spending_limit.lower() == "none" else spending_limit
    if admin_keys is not None:
        changes["admin_keys_in_member_environments"] = admin_keys
    if gateway is not None:
        changes["gateway"] = None if gateway == "default" else gateway
    with signed_in_client() as client:
        path = f"/workspaces/{workspace_id(client, required_workspace(workspace))}/settings"
        shown = client.request("PUT", path, json_body=changes) if changes else client.get(path)
    rows = [{"setting": name, "value": value} for name, value in shown.items()]
    emit(
        console,
        rows if output is OutputFormat.TABLE else shown,
        output,
        [
            ("SETTING", lambda s: s["setting"]),
            ("VALUE", lambda s: "-" if s["value"] is None else str(s["value"])),
        ],
    )


def _minutes(value: str) -> int | None:
    if value.lower() == "none":
        return None
    if not value.isdigit():
        raise RemoteGPUError(f"--idle-stop-minutes: {value!r} is not a whole number of minutes (or `none`)")
    return int(value)


def get_workspaces(output: Output = OutputFormat.TABLE) -> None:
    """Your workspaces and your role in each."""
    with signed_in_client() as client:
        items = list(client.items("/workspaces"))
    emit(
        console,
        items,
        output,
        [
            ("NAME", lambda w: w["name"]),
            ("ROLE", lambda w: w["role"]),
            ("DISPLAY NAME", lambda w: w["display_name"]),
        ],
    )
