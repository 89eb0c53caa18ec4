"""The user-facing half of the `remotegpu` CLI: it talks to the API, never to the database.

`login`, `register`, `apply -f`, `get`, `describe`, `start|stop|restart|delete`, `logs -f`, `watch`,
`workspaces`, `ops status`, `quota set`, `hosts cordon|uncordon|drain`, `billing invoices`. Tables by
default, `-o json|yaml` for scripts; errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import contextlib
import difflib
import getpass
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.settings import load_settings
from remotegpu.ops.api_client import ApiClient, ClientProfile, load_profile, save_profile, server_url
from remotegpu.ops.output import Column, OutputFormat, emit, table
from remotegpu.ops.spec_files import read_specs
from remotegpu.policies.queue import NEVER_FITS

console = Console()
err_console = Console(stderr=True)

Output = Annotated[OutputFormat, typer.Option("--output", "-o", help="table, json or yaml.")]
Workspace = Annotated[
    str | None,
    typer.Option(
        "--workspace",
        "-w",
        help="Workspace name or id (default: the one chosen by `remotegpu workspaces use`).",
    ),
]
Name = Annotated[str, typer.Argument(help="Environment name (or id).")]


@contextlib.contextmanager
def _client() -> Iterator[ApiClient]:
    """A client with the saved or configured token; every command but `register` and `login` needs one."""
    client = ApiClient.from_settings(load_settings())
    if not client.signed_in:
        client.close()
        raise RemoteGPUError(f"not signed in to {client.server}: sign in first (`remotegpu login`)")
    try:
        yield client
    finally:
        client.close()


def _workspace(explicit: str | None) -> str | None:
    return explicit or load_profile().workspace


# -- account ----------------------------------------------------------------------------------


def register(
    email: Annotated[str, typer.Option(prompt=True, help="E-mail address.")],
    username: Annotated[str, typer.Option(prompt=True, help="User name.")],
    server: Annotated[
        str | None, typer.Option(help="API URL (default: the saved or configured one).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create an account on the API (then `remotegpu login`); the server is remembered for `login`."""
    password = _password(password_stdin, confirm=True)
    settings = load_settings()
    profile = load_profile()
    client = ApiClient(server or server_url(settings, profile), None)  # signing in sends no token
    with contextlib.closing(client):
        user = client.post("/auth/register", {"email": email, "username": username, "password": password})
    if profile.server != client.server:  # a token (and workspace) of another server must not follow it
        save_profile(ClientProfile(client.server))
    next_step = f"remotegpu login --email {user['email']}"
    if server_url(settings, load_profile()).rstrip("/") != client.server:  # a configured URL wins
        next_step += f" --server {client.server}"
    console.print(f"Registered {user['username']} <{user['email']}>. Next: {next_step}", highlight=False)


def login(
    email: Annotated[str, typer.Option(prompt=True, help="E-mail address.")],
    server: Annotated[str | None, typer.Option(help="API URL, e.g. http://127.0.0.1:8080.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Sign in and save an API token for this machine (in your config folder, readable by you only)."""
    password = _password(password_stdin, confirm=False)
    settings = load_settings()
    profile = load_profile()
    client = ApiClient(server or server_url(settings, profile), None)  # signing in sends no token
    with contextlib.closing(client):
        access = client.post("/auth/login", {"email": email, "password": password})["access_token"]
    with contextlib.closing(ApiClient(client.server, access)) as signed_in:
        minted = signed_in.post("/auth/tokens", {"name": f"cli@{socket.gethostname()}"[:64]})
    path = save_profile(ClientProfile(client.server, minted["token"], profile.workspace))
    console.print(f"Signed in to {client.server} as {email}; token saved in {path}")


def _password(from_stdin: bool, *, confirm: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Repeat password: ") != password:
        raise RemoteGPUError("the passwords differ; try again")
    return password


# -- workspaces -------------------------------------------------------------------------------

workspaces_app = typer.Typer(help="Create and choose workspaces, manage members.", no_args_is_help=True)


@workspaces_app.command("create")
def workspace_create(
    name: Annotated[str, typer.Argument(help="Short DNS-label name, e.g. research.")],
    display_name: Annotated[str, typer.Option(help="Longer name shown in tables.")] = "",
    use: Annotated[bool, typer.Option(help="Make it the default workspace of this CLI.")] = True,
) -> None:
    """Create a workspace you own."""
    with _client() as client:
        created = client.post("/workspaces", {"name": name, "display_name": display_name})
    if use:
        profile = load_profile()
        profile.workspace = created["name"]
        save_profile(profile)
    console.print(f"workspace/{created['name']} created" + (" (now the default)" if use else ""))


@workspaces_app.command("use")
def workspace_use(name: Annotated[str, typer.Argument(help="Workspace name.")]) -> None:
    """Make a workspace the default of `apply`, `get`, `watch`…"""
    with _client() as client:
        found = client.get(f"/workspaces/{_workspace_id(client, name)}")
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
    with _client() as client:
        added = client.post(
            f"/workspaces/{_workspace_id(client, _required_workspace(workspace))}/members",
            {"user": user, "role": role},
        )
    console.print(f"{added['username']} is now {added['role']}")


def _required_workspace(workspace: str | None) -> str:
    chosen = _workspace(workspace)
    if chosen is None:
        raise RemoteGPUError("no workspace given: pass -w NAME or run `remotegpu workspaces use NAME`")
    return chosen


def _workspace_id(client: ApiClient, reference: str) -> str:
    if _is_uuid(reference):
        return reference
    for item in client.items("/workspaces"):
        if item["name"] == reference:
            return str(item["id"])
    raise RemoteGPUError(f"workspace {reference!r} not found (see `remotegpu get workspaces`)")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# -- apply --------------------------------------------------------------------------------------


def apply(
    files: Annotated[list[Path], typer.Option("--filename", "-f", help="Spec file or folder; repeatable.")],
    workspace: Workspace = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
    ] = False,
) -> None:
    """Create or update environments from YAML specs (by name, within their workspace)."""
    documents = read_specs(files)
    default = _workspace(workspace)
    with _client() as client:
        for document in documents:
            chosen = document.spec.workspace or default
            if chosen is None:
                raise RemoteGPUError(f"{document.origin}: no workspace: add `workspace:` or pass -w NAME")
            result = client.post(
                "/environments/apply",
                document.data,
                workspace=None if document.spec.workspace else chosen,
                dry_run=dry_run or None,
            )
            suffix = " (dry run)" if dry_run else ""
            console.print(f"environment/{document.spec.name} {result['outcome']}{suffix}", highlight=False)
            if dry_run and result["outcome"] != "unchanged":
                _print_diff(result.get("stored_spec"), result["desired_spec"], document.spec.name)


def _print_diff(stored: dict[str, Any] | None, desired: dict[str, Any], name: str) -> None:
    before = yaml.safe_dump(stored, sort_keys=True).splitlines() if stored else []
    after = yaml.safe_dump(desired, sort_keys=True).splitlines()
    for line in difflib.unified_diff(before, after, f"{name} (stored)", f"{name} (desired)", lineterm=""):
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        console.print(line, style=style, highlight=False, markup=False)


# -- get / describe -----------------------------------------------------------------------------

get_app = typer.Typer(help="List things: envs, hosts, gpus, images, workspaces.", no_args_is_help=True)

ENV_COLUMNS: list[Column] = [
    ("NAME", lambda e: e["name"]),
    ("WORKSPACE", lambda e: e["workspace"]),
    ("PHASE", lambda e: e["phase"]),
    ("DESIRED", lambda e: e["desired_state"]),
    ("GPUS", lambda e: f"{e['gpu_count']}×{e['gpu_model'] or 'any'}"),
    ("HOST", lambda e: e["host"]),
    ("REASON", lambda e: e["queue_reason"] or e["reason"]),
]


@get_app.command("envs")
def get_envs(workspace: Workspace = None, output: Output = OutputFormat.TABLE) -> None:
    """Environments, newest first."""
    with _client() as client:
        items = list(client.items("/environments", workspace=_workspace(workspace)))
    emit(console, items, output, ENV_COLUMNS)


@get_app.command("workspaces")
def get_workspaces(output: Output = OutputFormat.TABLE) -> None:
    """Your workspaces and your role in each."""
    with _client() as client:
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


@get_app.command("images")
def get_images(output: Output = OutputFormat.TABLE) -> None:
    """Images you can use."""
    with _client() as client:
        items = list(client.items("/images"))
    emit(
        console,
        items,
        output,
        [
            ("NAME", lambda i: i["name"]),
            ("REFERENCE", lambda i: i["reference"]),
            ("VISIBILITY", lambda i: i["visibility"]),
            ("CUDA", lambda i: i["cuda_version"]),
        ],
    )


HOST_COLUMNS: list[Column] = [
    ("NAME", lambda h: h["name"]),
    ("HEALTH", lambda h: h["health"]),
    ("CORDONED", lambda h: "draining" if h["draining"] else h["cordoned"]),
    ("MODELS", lambda h: h["gpu_models"]),
    ("GPUS FREE", lambda h: f"{h['gpus_free']}/{h['gpus_total']}"),
    ("REASON", lambda h: h["cordon_reason"]),
]


@get_app.command("hosts")
def get_hosts(output: Output = OutputFormat.TABLE) -> None:
    """GPU hosts (platform admins)."""
    with _client() as client:
        items = list(client.items("/hosts"))
    emit(console, items, output, HOST_COLUMNS)


@get_app.command("gpus")
def get_gpus(output: Output = OutputFormat.TABLE) -> None:
    """Every GPU and who holds it (platform admins)."""
    with _client() as client:
        items = client.get("/gpus")
    emit(
        console,
        items,
        output,
        [
            ("HOST", lambda g: g["host"]),
            ("INDEX", lambda g: g["index"]),
            ("MODEL", lambda g: g["model"]),
            ("HEALTH", lambda g: g["health"]),
            ("ENVIRONMENT", lambda g: g["environment_id"]),
        ],
    )


describe_app = typer.Typer(help="Show one thing in full.", no_args_is_help=True)


def find_environment(client: ApiClient, name: str, workspace: str | None) -> dict[str, Any]:
    """The environment called `name` (or with that id) in `workspace` (or in any of yours, if unique)."""
    if _is_uuid(name):
        return dict(client.get(f"/environments/{name}"))
    matches = client.get("/environments", name=name, workspace=_workspace(workspace))["items"]
    if not matches:
        raise RemoteGPUError(f"environment {name!r} not found (see `remotegpu get envs`)")
    if len(matches) > 1:
        spaces = ", ".join(sorted(m["workspace"] for m in matches))
        raise RemoteGPUError(f"environment {name!r} exists in several workspaces ({spaces}); pass -w")
    return dict(client.get(f"/environments/{matches[0]['id']}"))


@describe_app.command("env")
def describe_env(name: Name, workspace: Workspace = None, output: Output = OutputFormat.TABLE) -> None:
    """Spec, phase, conditions, queue position, events and access of one environment."""
    with _client() as client:
        environment = find_environment(client, name, workspace)
        events = client.get(f"/environments/{environment['id']}/events")["items"]
        access = _access(client, environment)
    if output is not OutputFormat.TABLE:
        emit(console, {**environment, "events": events, "access": access}, output, [])
        return
    rows = [
        ("Name", f"{environment['name']}  ({environment['id']})"),
        ("Workspace", environment["workspace"]),
        ("Owner", environment["owner"]),
        ("Phase", environment["phase"] + (f" ({environment['reason']})" if environment["reason"] else "")),
        ("Desired", environment["desired_state"]),
        ("Generation", f"{environment['generation']} (observed {environment['observed_generation']})"),
        ("Host", environment["host"] or "-"),
        (
            "GPUs",
            f"{environment['gpu_count']}×{environment['gpu_model'] or 'any'} {environment.get('gpu_indexes') or ''}",
        ),
    ]
    if environment["queue_position"] is not None:
        rows.append(("Queue", f"#{environment['queue_position']}: {environment['queue_reason']}"))
    if environment["message"]:
        rows.append(("Message", environment["message"]))
    for key, value in rows:
        console.print(f"[bold]{key + ':':<12}[/bold] {value}", highlight=False)
    console.print("[bold]Spec:[/bold]")
    console.print(
        yaml.safe_dump(environment["spec"], sort_keys=False).rstrip(), highlight=False, markup=False
    )
    if environment["conditions"]:
        console.print(
            table(
                environment["conditions"],
                [(key.upper(), _getter(key)) for key in environment["conditions"][0]],
                "Conditions",
            )
        )
    if access:
        console.print(
            table(
                access,
                [
                    ("KIND", lambda a: a["kind"]),
                    ("URL", lambda a: a["url"]),
                    ("COMMAND", lambda a: a["command"]),
                ],
                "Access",
            )
        )
    console.print(
        table(
            events[-20:],
            [
                ("AT", lambda e: e["at"][11:19]),
                ("REASON", lambda e: e["reason"]),
                ("MESSAGE", lambda e: e["message"]),
            ],
            "Events",
        )
    )


def _getter(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda item: item.get(key)


def _access(client: ApiClient, environment: dict[str, Any]) -> list[dict[str, Any]]:
    from remotegpu.ops.api_client import ApiError

    try:
        return list(client.get(f"/environments/{environment['id']}/access"))
    except ApiError as error:
        if error.status == 403:  # a viewer, or someone else's environment: the rest is still shown
            return []
        raise


def access(name: Name, workspace: Workspace = None, output: Output = OutputFormat.TABLE) -> None:
    """How to reach a running environment (SSH command, URLs); exit 1 if it is not running."""
    with _client() as client:
        environment = find_environment(client, name, workspace)
        if environment["phase"] != "running":
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


# -- lifecycle ----------------------------------------------------------------------------------


def _control(action: str, name: str, workspace: str | None) -> None:
    with _client() as client:
        environment = find_environment(client, name, workspace)
        if action == "delete":
            client.request("DELETE", f"/environments/{environment['id']}")
        else:
            client.post(f"/environments/{environment['id']}/{action}")
    console.print(f"environment/{environment['name']} {action} requested", highlight=False)


def start(name: Name, workspace: Workspace = None) -> None:
    """Ask for an environment to run (also retries a failed one)."""
    _control("start", name, workspace)


def stop(name: Name, workspace: Workspace = None) -> None:
    """Stop an environment: GPUs are released, volumes kept."""
    _control("stop", name, workspace)


def restart(name: Name, workspace: Workspace = None) -> None:
    """Stop and start an environment with the same spec."""
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
    with _client() as client:
        environment = find_environment(client, name, workspace)
        for line in client.stream_lines(
            f"/environments/{environment['id']}/logs", follow=follow or None, tail=tail
        ):
            console.print(line, highlight=False, markup=False, soft_wrap=True)


# -- watch --------------------------------------------------------------------------------------


def unplaceable(environment: dict[str, Any]) -> bool:
    """Whether an environment waits for capacity that no host has (no host has its GPU model, or enough
    GPUs of it, or every such host is cordoned): waiting longer will not place it."""
    return environment["phase"] == "admitted" and (environment["queue_reason"] or "").startswith(NEVER_FITS)


def settled(environment: dict[str, Any]) -> bool:
    """Whether the reconciler has finished with an environment for now (it may still change later)."""
    phase, desired = environment["phase"], environment["desired_state"]
    if phase == "failed" or unplaceable(environment):
        return True
    caught_up = int(environment["observed_generation"]) >= int(environment["generation"])
    return caught_up and phase == desired


def _watched(
    client: ApiClient, names: list[str], workspace: str | None
) -> tuple[str | None, set[str] | None]:
    """The workspace to list and the ids of the named environments (None: all of them); each name is
    looked up as `describe` does, so a name that matches nothing is an error, not an empty table."""
    if not names:
        return _workspace(workspace), None
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
    with _client() as client:
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
    failed = [e["name"] for e in items if e["phase"] == "failed"]
    stuck = [f"{e['name']} ({e['queue_reason']})" for e in items if unplaceable(e)]
    if failed or stuck:
        said = [f"failed: {', '.join(failed)}"] if failed else []
        said += [f"cannot be placed: {', '.join(stuck)}"] if stuck else []
        raise RemoteGPUError(f"{'; '.join(said)} (see `remotegpu describe env NAME`)")


# -- admin --------------------------------------------------------------------------------------

ops_app = typer.Typer(help="Operator views.", no_args_is_help=True)


@ops_app.command("status")
def ops_status(output: Output = OutputFormat.TABLE) -> None:
    """The reconciler: leader, epoch, queue, phases, stuck and failing environments (platform admins)."""
    with _client() as client:
        status = client.get("/ops/status")
    if output is not OutputFormat.TABLE:
        emit(console, status, output, [])
        return
    console.print(
        table(
            status["shards"],
            [
                ("SHARD", lambda s: s["shard"]),
                ("LEADER", lambda s: s["leader"]),
                ("EPOCH", lambda s: s["epoch"]),
                ("HEARTBEAT", lambda s: s["heartbeat_at"]),
            ],
            "Reconciler",
        )
    )
    console.print(
        table(
            [{"phase": k, "count": v} for k, v in sorted(status["phases"].items())],
            [("PHASE", lambda p: p["phase"]), ("ENVIRONMENTS", lambda p: p["count"])],
            "Phases",
        )
    )
    console.print(f"queue depth: {status['queue_depth']}   due now: {status['due_now']}")
    trouble: list[Column] = [
        ("NAME", lambda t: t["name"]),
        ("WORKSPACE", lambda t: t["workspace"]),
        ("PHASE", lambda t: t["phase"]),
        ("REASON", lambda t: t["reason"]),
        ("RETRIES", lambda t: t["retry_count"]),
        ("MESSAGE", lambda t: t["message"]),
    ]
    for title in ("stuck", "failing"):
        if status[title]:
            console.print(table(status[title], trouble, title.capitalize()))


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
    with _client() as client:
        if user:
            path = f"/quotas/{user}"
        else:
            path = f"/quotas/workspaces/{_workspace_id(client, _required_workspace(workspace))}"
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


hosts_app = typer.Typer(help="Cordon, uncordon and drain hosts (platform admins).", no_args_is_help=True)


def _host_id(client: ApiClient, name: str) -> str:
    if _is_uuid(name):
        return name
    for host in client.items("/hosts"):
        if host["name"] == name:
            return str(host["id"])
    raise RemoteGPUError(f"host {name!r} not found (see `remotegpu get hosts`)")


def _host_action(action: str, name: str, reason: str | None) -> None:
    with _client() as client:
        body = None if action == "uncordon" else {"reason": reason or ""}
        result = client.post(f"/hosts/{_host_id(client, name)}/{action}", body)
    if action == "drain":
        console.print(
            f"host/{name} drained; stopping {len(result['stopping'])} environments", highlight=False
        )
    else:
        console.print(f"host/{name} {action}ed", highlight=False)


Reason = Annotated[str | None, typer.Option(help="Why (kept in the host's events).")]


@hosts_app.command("cordon")
def hosts_cordon(name: Annotated[str, typer.Argument(help="Host name.")], reason: Reason = None) -> None:
    """No new environments on the host."""
    _host_action("cordon", name, reason)


@hosts_app.command("uncordon")
def hosts_uncordon(name: Annotated[str, typer.Argument(help="Host name.")]) -> None:
    """Allow new environments on the host again."""
    _host_action("uncordon", name, None)


@hosts_app.command("drain")
def hosts_drain(name: Annotated[str, typer.Argument(help="Host name.")], reason: Reason = None) -> None:
    """Cordon the host and stop everything on it."""
    _host_action("drain", name, reason)


billing_app = typer.Typer(help="Invoices and metered usage.", no_args_is_help=True)


@billing_app.command("invoices")
def billing_invoices(workspace: Workspace = None, output: Output = OutputFormat.TABLE) -> None:
    """Invoices of workspaces whose bills you may see."""
    with _client() as client:
        items = list(client.items("/billing/invoices", workspace=_workspace(workspace)))
    emit(
        console,
        items,
        output,
        [
            ("PERIOD", lambda i: f"{i['period_start'][:10]} – {i['period_end'][:10]}"),
            ("STATUS", lambda i: i["status"]),
            ("TOTAL", lambda i: f"{i['total']} {i['currency']}"),
        ],
    )


def register_commands(app: typer.Typer) -> None:
    """Add the API-facing commands to the `remotegpu` app."""
    for command in (register, login, apply, start, stop, restart, delete, logs, watch, access):
        app.command()(command)
    for group, name in (
        (workspaces_app, "workspaces"),
        (get_app, "get"),
        (describe_app, "describe"),
        (ops_app, "ops"),
        (quota_app, "quota"),
        (hosts_app, "hosts"),
        (billing_app, "billing"),
    ):
        app.add_typer(group, name=name)
