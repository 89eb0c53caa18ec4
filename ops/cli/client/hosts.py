"""GPU hosts, for platform admins: `get hosts`, `get gpus`, `hosts cordon|uncordon|drain` and
`hosts set-address`."""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.api_client import ApiClient
from remotegpu.ops.cli.client.options import Output
from remotegpu.ops.cli.client.session import is_uuid, signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import Column, OutputFormat, emit

HOST_COLUMNS: list[Column] = [
    ("NAME", lambda h: h["name"]),
    ("ADDRESS", lambda h: h["address"] + ("" if h["public_address"] else _source_note(h["address_source"]))),
    ("HEALTH", lambda h: h["health"]),
    ("CORDONED", lambda h: "draining" if h["draining"] else h["cordoned"]),
    ("MODELS", lambda h: h["gpu_models"]),
    ("GPUS FREE", lambda h: f"{h['gpus_free']}/{h['gpus_total']}"),
    ("REASON", lambda h: h["cordon_reason"]),
]


def _source_note(source: str | None) -> str:
    """Why an address without an admin override may not be reachable: it is a guess."""
    if source is None:
        return " (node name)"
    return " (hostname)" if source == "Hostname" else ""


def get_hosts(output: Output = OutputFormat.TABLE) -> None:
    """GPU hosts (platform admins)."""
    with signed_in_client() as client:
        items = list(client.items("/hosts"))
    emit(console, items, output, HOST_COLUMNS)


def get_gpus(output: Output = OutputFormat.TABLE) -> None:
    """Every GPU and who holds it (platform admins)."""
    with signed_in_client() as client:
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


hosts_app = typer.Typer(
    help="Cordon, uncordon and drain hosts, and set their public address (platform admins).",
    no_args_is_help=True,
)


def _host_id(client: ApiClient, name: str) -> str:
    if is_uuid(name):
        return name
    for host in client.items("/hosts"):
        if host["name"] == name:
            return str(host["id"])
    raise RemoteGPUError(f"host {name!r} not found (see `remotegpu get hosts`)")


def _host_action(action: str, name: str, reason: str | None) -> None:
    with signed_in_client() as client:
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


@hosts_app.command("set-address")
def hosts_set_address(
    name: Annotated[str, typer.Argument(help="Host name.")],
    address: Annotated[
        str | None, typer.Argument(help="Hostname or IP address users reach the host by.", show_default=False)
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the override: the node's own address counts again.")
    ] = False,
) -> None:
    """Set the address SSH commands and URLs name for this host (or --clear it)."""
    if (address is None) == (not clear):
        raise RemoteGPUError("give either an ADDRESS or --clear (see `remotegpu hosts set-address --help`)")
    with signed_in_client() as client:
        host = client.request(
            "PUT", f"/hosts/{_host_id(client, name)}", json_body={"public_address": address}
        )
    if clear:
        console.print(f"host/{name} address override cleared; address {host['address']}", highlight=False)
    else:
        console.print(f"host/{name} address set to {host['address']}", highlight=False)
