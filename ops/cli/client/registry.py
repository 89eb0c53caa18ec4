"""`remotegpu registry login|logout|list`: the platform's image registry credentials (platform admins).

`login` reads the password from stdin (never an argument: it would land in the shell's history and in
`ps`), and adds the registry to those configured without touching the others.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.secrets.registry_credentials import docker_config_for
from remotegpu.ops.cli.client.options import Output
from remotegpu.ops.cli.client.session import signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit

registry_app = typer.Typer(
    help="Credentials for private image registries (platform admins).", no_args_is_help=True
)


@registry_app.command("login")
def registry_login(
    registry: Annotated[str, typer.Argument(help="Registry host, e.g. harbor.example.org.")],
    username: Annotated[str, typer.Option("--username", "-u", help="User name at the registry.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password (or access token) from stdin.")
    ] = False,
) -> None:
    """Give the platform credentials for a registry; every environment's pods may then pull from it."""
    if not password_stdin:
        raise RemoteGPUError(
            "give the password on stdin: `remotegpu registry login REGISTRY --username U --password-stdin`"
        )
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise RemoteGPUError("no password on stdin; pipe it in, e.g. `< password-file`")
    with signed_in_client() as client:
        client.put("/registry-credentials", docker_config_for(registry, username, password), merge=True)
    console.print(f"Registry credentials for {registry} saved (user {username}).", highlight=False)


@registry_app.command("logout")
def registry_logout(
    registry: Annotated[str, typer.Argument(help="Registry host, e.g. harbor.example.org.")],
) -> None:
    """Forget the platform's credentials for a registry."""
    with signed_in_client() as client:
        client.request("DELETE", f"/registry-credentials/{registry}")
    console.print(f"Registry credentials for {registry} removed.", highlight=False)


@registry_app.command("list")
def registry_list(output: Output = OutputFormat.TABLE) -> None:
    """The registries the platform has credentials for (never the credentials)."""
    with signed_in_client() as client:
        found = client.get("/registry-credentials")["registries"]
    emit(console, [{"registry": name} for name in found], output, [("REGISTRY", lambda r: r["registry"])])
