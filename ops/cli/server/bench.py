"""`remotegpu bench`: the benchmarks of `ops/bench/`, each imported only when it runs."""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError


def bench(
    name: Annotated[
        str,
        typer.Argument(help="Benchmark to run: allocation, reconcile, shards, api, billing or scheduling."),
    ],
    quick: Annotated[bool, typer.Option("--quick", help="A short run (under 30 s).")] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="allocation: contending processes; api: API worker processes."),
    ] = None,
    envs: Annotated[
        int | None,
        typer.Option(
            "--envs",
            min=1,
            help="reconcile, shards: environments to submit; billing: running ones to meter; scheduling: waiting ones.",
        ),
    ] = None,
    cluster: Annotated[
        str, typer.Option("--cluster", help="reconcile: memory or sim (over HTTP).")
    ] = "memory",
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes", min=1, help="reconcile --cluster sim: node count (500); scheduling: hosts (2,000)."
        ),
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", min=1, help="api: offered requests per second.")
    ] = None,
    batch: Annotated[
        bool, typer.Option("--batch", help="allocation: the scheduler's batch path instead of one by one.")
    ] = False,
) -> None:
    """Run a benchmark: a table, then one JSON line of figures."""
    if name == "allocation":
        from remotegpu.ops.bench import allocation

        allocation.main(quick, workers, batch)
    elif name == "reconcile":
        from remotegpu.ops.bench import reconcile

        if cluster not in {"memory", "sim"}:
            raise RemoteGPUError(f"--cluster: {cluster!r} is not a cluster; choose memory or sim")
        reconcile.main(quick, envs, cluster, nodes or 500)
    elif name == "api":
        from remotegpu.ops.bench import api as api_bench

        api_bench.main(quick, rate, workers)
    elif name == "shards":
        from remotegpu.ops.bench import shards

        shards.main(quick, envs)
    elif name == "billing":
        from remotegpu.ops.bench import billing

        billing.main(quick, envs)
    elif name == "scheduling":
        from remotegpu.ops.bench import scheduling

        scheduling.main(quick, envs, nodes)
    else:
        raise RemoteGPUError(
            f"unknown benchmark {name!r}; choose one of: allocation, reconcile, shards, api, billing, scheduling"
        )
