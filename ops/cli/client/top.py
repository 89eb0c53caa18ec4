"""`remotegpu top`: the running environments you can see, one row per GPU with its utilisation, memory
and power as Prometheus last saw them (one query for the whole page on the server)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli.client.options import Output, Workspace
from remotegpu.ops.cli.client.session import chosen_workspace, signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import Column, OutputFormat, emit

Mine = Annotated[bool, typer.Option("--mine", help="Only your own environments.")]

TOP_COLUMNS: list[Column] = [
    ("NAME", lambda r: r["name"]),
    ("WORKSPACE", lambda r: r["workspace"]),
    ("HOST", lambda r: r["host"]),
    ("GPU", lambda r: r["gpu"]),
    ("UTIL", lambda r: r["util"]),
    ("MEMORY", lambda r: r["memory"]),
    ("POWER", lambda r: r["power"]),
]


def top(workspace: Workspace = None, mine: Mine = False, output: Output = OutputFormat.TABLE) -> None:
    """GPU utilisation of the running environments you can see, per GPU (needs monitoring: see
    `remotegpu doctor`)."""
    with signed_in_client() as client:
        pages = []
        cursor = None
        while True:
            page = client.get(
                "/environments/metrics",
                workspace=chosen_workspace(workspace),
                mine=mine or None,
                cursor=cursor,
                limit=200,
            )
            pages.append(page)
            cursor = page.get("next_cursor")
            if not cursor:
                break
    monitoring = pages[0]["monitoring"]
    if monitoring["state"] != "ok":
        raise RemoteGPUError(monitoring["message"])
    items = [item for page in pages for item in page["items"]]
    if output is not OutputFormat.TABLE:
        emit(console, items, output, [])
        return
    emit(console, [row for item in items for row in gpu_rows(item)], output, TOP_COLUMNS)


def gpu_rows(environment: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per GPU of `environment` (one row saying `no data` when Prometheus has none)."""
    base = {"name": environment["name"], "workspace": environment["workspace"], "host": environment["host"]}
    if not environment["gpus"]:
        count = f"{environment['gpu_count']}×{environment['gpu_model'] or 'any'}"
        return [{**base, "gpu": count, "util": "no data", "memory": "-", "power": "-"}]
    return [{**base, "gpu": gpu["gpu"], **readings(gpu)} for gpu in environment["gpus"]]


def readings(gpu: dict[str, Any]) -> dict[str, str]:
    """A GPU's newest utilisation, memory and power as text (`-` where there is no reading)."""

    def shown(value: float | None, unit: str) -> str:
        return "-" if value is None else f"{value:.0f}{unit}"

    return {
        "util": shown(gpu["utilisation_percent"], "%"),
        "memory": shown(gpu["memory_used_mib"], " MiB"),
        "power": shown(gpu["power_watts"], " W"),
    }
