"""`remotegpu chaos`: the reliability suite (`ops/chaos/`), imported only when it runs."""

from __future__ import annotations

from typing import Annotated

import typer


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

    raise typer.Exit(main(quick, minutes, seed))
