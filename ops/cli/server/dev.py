"""`remotegpu dev`: all of RemoteGPU on this machine, for a first look and for development."""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer
from rich.table import Table

from remotegpu.core.platform.settings import DevRegistryChoice, DevS3Choice, GatewayChoice, SecretsBackend
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.cli.server.api import HostOption, PortOption, api_address
from remotegpu.ops.cli.server.config import ConfigOption, LogFormatOption, server_settings

SecretsOption = Annotated[
    SecretsBackend | None,
    typer.Option(
        "--secrets", help="Secrets store: builtin, or vault (a fake Vault unless vault_url is set)."
    ),
]

GatewayOption = Annotated[
    GatewayChoice | None,
    typer.Option(
        "--gateway",
        help="Also publish SSH through guacamole or jumpserver (a contract fake unless its URL is set).",
    ),
]


RegistryOption = Annotated[
    DevRegistryChoice | None,
    typer.Option(
        "--registry",
        help="Sync the image catalog from harbor: Harbor's contract fake with demo images (none: no registry).",
    ),
]


S3Option = Annotated[
    DevS3Choice | None,
    typer.Option(
        "--s3",
        help="Keep uploaded datasets in moto's S3 server on loopback, synced into environments by Jobs"
        " (needs moto[server]); none: a local folder.",
    ),
]


def dev(
    config: ConfigOption = None,
    log_format: LogFormatOption = None,
    host: HostOption = None,
    port: PortOption = None,
    secrets: SecretsOption = None,
    gateway: GatewayOption = None,
    registry: RegistryOption = None,
    s3: S3Option = None,
) -> None:
    """Run all of RemoteGPU on this machine until Ctrl-C: Postgres (embedded unless DATABASE_URL is set)
    with the schema migrated, a simulated GPU cluster (with a kubeconfig for kubectl), a reconciler and the
    API; a platform admin is created on first start (its password is in .remotegpu/admin-password)."""
    from remotegpu.ops.stopping import stopped_by_signals, wait_for_stop

    with stopped_by_signals():
        settings = api_address(
            server_settings(config, log_format=log_format, default_format="console"), host, port
        )
        if secrets is not None:
            settings = msgspec.structs.replace(settings, secrets_backend=secrets)
        from remotegpu.ops.devstack import running_dev_stack  # after the port check: a large import

        with running_dev_stack(
            settings, gateway or settings.gateway, registry or "none", s3 or "none"
        ) as stack:
            table = Table(title="RemoteGPU dev stack", show_header=True)
            table.add_column("component")
            table.add_column("where", overflow="fold")
            for component, where in stack.describe():
                table.add_row(component, where)
            console.print(table)
            console.print("Ready. Press Ctrl-C to stop.", highlight=False)
            try:
                wait_for_stop()
            finally:
                console.print("Stopping…")
    console.print("Stopped.")
