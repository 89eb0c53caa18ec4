"""`remotegpu registry add|remove|login|logout|list` and `get registries` (platform admins): the
registries the catalog is synced from, and the credentials images are read and pulled with.

`login` reads the password from stdin (never an argument: it would land in the shell's history and in
`ps`). Given the name of a configured registry it stores that registry's login (or, with `--project`,
one project's); given any other host it adds it to the platform-wide credentials without touching the
others.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.secrets.registry_credentials import docker_config_for
from remotegpu.ops.api_client import ApiClient
from remotegpu.ops.cli.client.options import Output
from remotegpu.ops.cli.client.session import signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit

registry_app = typer.Typer(
    help="Registries the catalog is synced from, and their credentials (platform admins).",
    no_args_is_help=True,
)


Project = Annotated[
    str | None,
    typer.Option(
        "--project", help="A mapped project (or repository path) of a configured registry: its own login."
    ),
]


def _configured(client: ApiClient, registry: str) -> bool:
    return any(item["name"] == registry for item in client.get("/registries")["items"])


@registry_app.command("login")
def registry_login(
    registry: Annotated[str, typer.Argument(help="A configured registry's name, or any registry host.")],
    username: Annotated[
        str, typer.Option("--username", "-u", help="User name (or robot account) at the registry.")
    ],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password (or access token) from stdin.")
    ] = False,
    project: Project = None,
) -> None:
    """Give the platform credentials for a registry; pods pull its images with them (a configured
    registry's are also what its catalog is synced and its tags resolved with)."""
    if not password_stdin:
        raise RemoteGPUError(
            "give the password on stdin: `remotegpu registry login REGISTRY --username U --password-stdin`"
        )
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise RemoteGPUError("no password on stdin; pipe it in, e.g. `< password-file`")
    with signed_in_client() as client:
        if _configured(client, registry):
            body = {"username": username, "password": password, "project": project}
            client.put(f"/registries/{registry}/login", body)
        elif project is not None:
            raise RemoteGPUError(
                f"--project needs a configured registry; {registry!r} is not one (`remotegpu get registries`)"
            )
        else:
            client.put("/registry-credentials", docker_config_for(registry, username, password), merge=True)
    where = f"{registry} project {project}" if project else registry
    console.print(f"Registry credentials for {where} saved (user {username}).", highlight=False)


@registry_app.command("logout")
def registry_logout(
    registry: Annotated[str, typer.Argument(help="A configured registry's name, or a registry host.")],
    project: Project = None,
) -> None:
    """Forget the platform's credentials for a registry (or one of its projects)."""
    with signed_in_client() as client:
        if _configured(client, registry):
            client.request("DELETE", f"/registries/{registry}/login", params={"project": project})
        else:
            client.request("DELETE", f"/registry-credentials/{registry}")
    console.print(f"Registry credentials for {registry} removed.", highlight=False)


def _mapping(values: list[str]) -> dict[str, str]:
    mapped: dict[str, str] = {}
    for value in values:
        path, equals, workspace = value.partition("=")
        if not equals or not path or not workspace:
            raise RemoteGPUError(
                f"--workspace {value!r}: write PATH=WORKSPACE, e.g. --workspace team-a=research"
            )
        mapped[path] = workspace
    return mapped


@registry_app.command("add")
def registry_add(
    name: Annotated[str, typer.Argument(help="A name for it (lower-case letters, digits, '-').")],
    url: Annotated[str, typer.Option("--url", help="Its base URL, e.g. https://harbor.example.org.")],
    kind: Annotated[str, typer.Option("--kind", help="`oci` (any OCI registry) or `harbor`.")] = "oci",
    public: Annotated[
        list[str] | None,
        typer.Option("--public", help="A project or repository path every workspace sees (repeat)."),
    ] = None,
    workspace: Annotated[
        list[str] | None,
        typer.Option(
            "--workspace", help="PATH=WORKSPACE: a project or repository path one workspace sees (repeat)."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="host[:port] image references name, when not the URL's.")
    ] = None,
) -> None:
    """Sync the catalog from a registry (or change how): the next sync adds its images, public or per
    workspace by project. Running it again replaces the configuration."""
    body = {
        "kind": kind,
        "url": url,
        "public": public or [],
        "workspaces": _mapping(workspace or []),
        "host": host,
    }
    with signed_in_client() as client:
        saved = client.put(f"/registries/{name}", body)
    console.print(
        f"Registry {saved['name']} ({saved['kind']}, {saved['host']}) configured; run `remotegpu images sync`"
        " to read it now.",
        highlight=False,
    )


@registry_app.command("remove")
def registry_remove(name: Annotated[str, typer.Argument(help="A configured registry's name.")]) -> None:
    """Stop syncing a registry: its images stay in the catalog, marked gone (running environments keep
    them), and its logins are deleted."""
    with signed_in_client() as client:
        if not _configured(client, name):  # the DELETE is idempotent; a mistyped name deserves a word
            raise RemoteGPUError(
                f"registry {name!r}: no such registry is configured; `remotegpu get registries` lists them"
            )
        client.request("DELETE", f"/registries/{name}")
    console.print(f"Registry {name} removed.", highlight=False)


def get_registries(output: Output = OutputFormat.TABLE) -> None:
    """Configured registries and how their last sync went (platform admins)."""
    with signed_in_client() as client:
        items = client.get("/registries")["items"]
    emit(
        console,
        items,
        output,
        [
            ("NAME", lambda r: r["name"]),
            ("KIND", lambda r: r["kind"]),
            ("HOST", lambda r: r["host"]),
            ("PUBLIC", lambda r: ",".join(r["public"]) or "-"),
            ("WORKSPACES", lambda r: ",".join(f"{p}={w}" for p, w in r["workspaces"].items()) or "-"),
            ("LOGIN", lambda r: "yes" if r["has_login"] else "no"),
            ("LAST SYNC", lambda r: r["last_synced_at"] or "never"),
            ("ERROR", lambda r: r["last_sync_error"] or ""),
        ],
    )


@registry_app.command("list")
def registry_list(output: Output = OutputFormat.TABLE) -> None:
    """The registries the platform has credentials for (never the credentials)."""
    with signed_in_client() as client:
        found = client.get("/registry-credentials")["registries"]
    emit(console, [{"registry": name} for name in found], output, [("REGISTRY", lambda r: r["registry"])])


@registry_app.command("robot")
def registry_robot(
    name: Annotated[str, typer.Argument(help="A configured Harbor registry's name.")],
    project: Annotated[
        str, typer.Option("--project", help="The mapped Harbor project its images come from.")
    ],
    robot: Annotated[
        str, typer.Option("--robot-name", help="The robot's name in the project.")
    ] = "remotegpu-pull",
) -> None:
    """Make a Harbor robot account that may pull from one project (or give it a new secret), with the
    registry's login, and store it as that project's pull login; its secret is never shown."""
    with signed_in_client() as client:
        made = client.post(f"/registries/{name}/robots", {"project": project, "name": robot})
    console.print(
        f"Robot {made['robot']} stored as the pull login of {name} project {project}.", highlight=False
    )
