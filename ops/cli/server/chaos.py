"""`remotegpu chaos`: the reliability suite (`ops/chaos/`), imported only when it runs."""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.ops.cli.consoles import err_console


def chaos(
    quick: Annotated[
        bool, typer.Option("--quick", help="Every kind of fault once over 45 s of churn.")
    ] = False,
    minutes: Annotated[
        float | None, typer.Option("--minutes", min=0.5, help="Churn this long, six faults a minute.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Chooses the faults' order and moments and the churn.")
    ] = 1,
) -> None:
    """Churn environments while killing, pausing and cutting off the reconcilers, the API's database and
    the cluster; then check every invariant. A table, then one JSON line; exit 1 on any violation."""
    from remotegpu.ops.chaos.run import main
    from remotegpu.ops.stopping import stopped_by_signals

    # SIGINT or SIGTERM unwinds the run: its processes, cluster and Postgres are stopped on the way out
    with stopped_by_signals():
        raise typer.Exit(main(quick, minutes, seed))
    err_console.print("Stopped before the checks ran: no figures.")
    raise typer.Exit(1)
