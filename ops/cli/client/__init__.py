"""Client-side commands: they talk to the API, never to the database.

`login`, `register`, `apply -f`, `get`, `describe`, `start|stop|restart|delete`, `logs -f`, `watch`,
`workspaces`, `ssh-keys`, `datasets`, `ops status`, `quota set`, `hosts cordon|uncordon|drain`,
`registry add|remove|login|logout|list`, `images sync`,
`billing invoices`, `prices set|list`, `top`. Tables by
default, `-o json|yaml` for scripts; errors are one line on stderr and a non-zero exit status.

One module per noun; `session.py` signs a command in and resolves its workspace, `options.py` holds the
options they share. `get` lists several nouns, so its group is assembled here from theirs.
`register_commands` is the table of contents: the order here is the order of the Client panel of
`remotegpu --help`.
"""

from __future__ import annotations

import typer

from remotegpu.ops.cli.client.apply import apply
from remotegpu.ops.cli.client.auth import login, passwd, register, reset_password
from remotegpu.ops.cli.client.billing import billing_app
from remotegpu.ops.cli.client.datasets import datasets_app
from remotegpu.ops.cli.client.describe import describe_app
from remotegpu.ops.cli.client.environments import access, delete, get_envs, logs, restart, start, stop
from remotegpu.ops.cli.client.hosts import get_gpus, get_hosts, hosts_app
from remotegpu.ops.cli.client.images import get_images, images_app
from remotegpu.ops.cli.client.ops_status import ops_app
from remotegpu.ops.cli.client.prices import prices_app
from remotegpu.ops.cli.client.quotas import quota_app
from remotegpu.ops.cli.client.registry import get_registries, registry_app
from remotegpu.ops.cli.client.ssh_keys import ssh_keys_app
from remotegpu.ops.cli.client.top import top
from remotegpu.ops.cli.client.watch import watch
from remotegpu.ops.cli.client.workspaces import get_workspaces, workspaces_app

PANEL = "Client"


def _get_app() -> typer.Typer:
    """`remotegpu get NOUN`: the list command of each noun, gathered into one group."""
    get_app = typer.Typer(
        help="List things: envs, hosts, gpus, images, workspaces, registries.", no_args_is_help=True
    )
    for name, command in (
        ("envs", get_envs),
        ("workspaces", get_workspaces),
        ("images", get_images),
        ("hosts", get_hosts),
        ("gpus", get_gpus),
        ("registries", get_registries),
    ):
        get_app.command(name)(command)
    return get_app


def register_commands(app: typer.Typer) -> None:
    """Add the client-side commands to the `remotegpu` app, in the Client panel of its help."""
    for command in (
        register,
        login,
        passwd,
        reset_password,
        apply,
        start,
        stop,
        restart,
        delete,
        logs,
        watch,
        access,
        top,
    ):
        app.command(rich_help_panel=PANEL)(command)
    for group, name in (
        (workspaces_app, "workspaces"),
        (ssh_keys_app, "ssh-keys"),
        (datasets_app, "datasets"),
        (_get_app(), "get"),
        (describe_app, "describe"),
        (ops_app, "ops"),
        (quota_app, "quota"),
        (hosts_app, "hosts"),
        (registry_app, "registry"),
        (images_app, "images"),
        (billing_app, "billing"),
        (prices_app, "prices"),
    ):
        app.add_typer(group, name=name, rich_help_panel=PANEL)
