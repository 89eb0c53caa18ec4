"""`remotegpu agent`: the host agent on a GPU node (a DaemonSet), or `--once` to see what it reads."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any

import typer

from remotegpu.ops.cli.consoles import console


def _nvml() -> Any:
    """The NVML bindings; imported here so tests can put a fake in `sys.modules["pynvml"]`."""
    import pynvml

    return pynvml


def agent(
    node: Annotated[
        str | None,
        typer.Option(envvar="NODE_NAME", help="This node's name (default: $NODE_NAME, else the host name)."),
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Cluster to publish to (default: in-cluster config).")
    ] = None,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between reads (XID errors: at once).")
    ] = 10.0,
    once: Annotated[
        bool, typer.Option("--once", help="Read the GPUs once, print them, publish nothing.")
    ] = False,
) -> None:
    """Read this node's GPUs through NVML and publish them as its annotations until Ctrl-C or SIGTERM."""
    from remotegpu.ops.agent.nvml_reader import NvmlReader

    nvml = _nvml()
    reader = NvmlReader(nvml)
    try:
        reader.open()
    except nvml.NVMLError as error:
        raise SystemExit(
            f"error: NVML is not available ({error}): run the agent on a GPU node with the NVIDIA driver"
            " (in a pod: with the nvidia runtime class)"
        ) from None
    reader.close()
    if once:
        _print_once(reader)
        return
    _run(reader, node or os.environ.get("NODE_NAME") or socket.gethostname(), kubeconfig, interval)


def _print_once(reader: Any) -> None:
    from rich.table import Table

    from remotegpu.core.inventory.gpu_report import report_annotations

    reader.open()
    try:
        readings = reader.read()
    finally:
        reader.close()
    table = Table("INDEX", "UUID", "MODEL", "MEMORY", "HEALTH", "PROBLEMS", box=None)
    for r in readings:
        table.add_row(
            str(r.index),
            r.uuid,
            r.model,
            f"{r.memory_mib} MiB",
            "healthy" if r.healthy else "unhealthy",
            "; ".join(r.problems),
        )
    console.print(table)
    console.print("Annotations the agent publishes on its node:")
    for key, value in report_annotations(readings).items():
        console.print(f"  {key}: {value}", markup=False, highlight=False, soft_wrap=True)
    console.print("XID errors arrive as events while the agent runs; --once sees none.")


def _run(reader: Any, node: str, kubeconfig: Path | None, interval: float) -> None:
    import threading

    from remotegpu.core.cluster.kubernetes.client import api_client_from_kubeconfig
    from remotegpu.ops.agent.publisher import NodeAnnotations, NodeNotFoundError
    from remotegpu.ops.agent.runner import run_agent
    from remotegpu.ops.stopping import StopRequested, install_stop_handlers

    install_stop_handlers()
    stop = threading.Event()
    publisher = NodeAnnotations(api_client_from_kubeconfig(str(kubeconfig) if kubeconfig else None), node)
    console.print(f"Agent running on node {node}. Press Ctrl-C to stop.")

    def first_round(readings: list[Any], _written: bool) -> None:
        if not getattr(first_round, "done", False):
            console.print(f"Published {len(readings)} GPUs.")
            first_round.done = True  # type: ignore[attr-defined]

    try:
        run_agent(reader, publisher, stop, interval_s=interval, on_round=first_round)
    except StopRequested:
        stop.set()
    except NodeNotFoundError as error:
        raise SystemExit(f"error: {error}; pass --node or set NODE_NAME from spec.nodeName") from None
    console.print("Stopped.")
