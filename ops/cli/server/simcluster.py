"""`remotegpu simcluster`: a simulated Kubernetes cluster with GPU nodes, served over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from remotegpu.ops.cli.consoles import console


def simcluster(
    nodes: Annotated[int, typer.Option(min=1, help="Number of GPU nodes.")] = 8,
    gpus_per_node: Annotated[int, typer.Option(min=0, help="GPUs on each node.")] = 8,
    model: Annotated[str, typer.Option(help="GPU model (nvidia.com/gpu.product).")] = "H100",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free).")] = 0,
    start_delay: Annotated[float, typer.Option(min=0, help="Seconds from pod admission to Running.")] = 1.0,
    kubeconfig: Annotated[
        Path,
        typer.Option(
            help="Where to write the kubeconfig (default: simcluster.kubeconfig in the .remotegpu folder).",
            show_default=False,
        ),
    ] = Path(".remotegpu/simcluster.kubeconfig"),
    fail_pulls: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-pulls",
            metavar="IMAGE",
            help="An image (or repository) whose pulls fail, as do those whose name contains"
            " `does-not-exist`; repeatable.",
        ),
    ] = None,
    external_address: Annotated[
        str | None,
        typer.Option(
            help="An ExternalIP every node reports (e.g. 127.0.0.1, so SSH commands reach this machine);"
            " without it nodes report only their InternalIP (10.0.x.y).",
        ),
    ] = None,
) -> None:
    """Run a simulated Kubernetes cluster with GPU nodes until Ctrl-C; prints its kubeconfig path."""
    import datetime as dt

    from remotegpu.ops.ports import check_port_free
    from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
    from remotegpu.ops.stopping import stopped_by_signals, wait_for_stop

    with stopped_by_signals():
        if port:
            check_port_free("127.0.0.1", port, port_flag="--port (0: any free port)")
        template = NodeTemplate(
            count=nodes, gpus=gpus_per_node, model=model, external_address=external_address
        )
        with SimulatedCluster(
            template,
            start_delay=dt.timedelta(seconds=start_delay),
            port=port,
            failing_images=fail_pulls or (),
        ) as cluster:
            path = cluster.write_kubeconfig(kubeconfig).resolve()
            console.print(f"Simulated cluster at {cluster.url}: {nodes} nodes × {gpus_per_node} {model}")
            console.print(f"kubeconfig: {path}", highlight=False, soft_wrap=True)
            console.print(f"Try: kubectl --kubeconfig {path} get nodes", highlight=False, soft_wrap=True)
            console.print(
                f"DCGM exporter (for Prometheus): {cluster.dcgm_url}", highlight=False, soft_wrap=True
            )
            wait_for_stop()
    console.print("Stopped.")
