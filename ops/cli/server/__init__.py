"""Server-side commands: they run or administer a server, so they need its database or its cluster.

Each module holds one command or group and imports its heavy parts (the dev stack, the reconciler,
migrations) inside the command, so the everyday client commands start quickly. `register_commands`
is the table of contents: the order here is the order of the Server panel of `remotegpu --help`.
"""

from __future__ import annotations

import typer

from remotegpu.ops.cli.server.agent import agent
from remotegpu.ops.cli.server.api import api
from remotegpu.ops.cli.server.bench import bench
from remotegpu.ops.cli.server.chaos import chaos
from remotegpu.ops.cli.server.dataset_sync import dataset_sync
from remotegpu.ops.cli.server.datasets_s3 import datasets_s3_app
from remotegpu.ops.cli.server.db import db_app
from remotegpu.ops.cli.server.dev import dev
from remotegpu.ops.cli.server.doctor import doctor
from remotegpu.ops.cli.server.gateways import gateways_app
from remotegpu.ops.cli.server.reconciler import reconciler
from remotegpu.ops.cli.server.secrets import secrets_app
from remotegpu.ops.cli.server.simcluster import simcluster
from remotegpu.ops.cli.server.users import users_app

PANEL = "Server"


def register_commands(app: typer.Typer) -> None:
    """Add the server-side commands to the `remotegpu` app, in the Server panel of its help."""
    for command in (dev, api, reconciler, agent, simcluster, doctor, bench, chaos, dataset_sync):
        app.command(rich_help_panel=PANEL)(command)
    app.add_typer(db_app, name="db", rich_help_panel=PANEL)
    app.add_typer(users_app, name="users", rich_help_panel=PANEL)
    app.add_typer(secrets_app, name="secrets", rich_help_panel=PANEL)
    app.add_typer(gateways_app, name="gateways", rich_help_panel=PANEL)
    app.add_typer(datasets_s3_app, name="datasets-s3", rich_help_panel=PANEL)
