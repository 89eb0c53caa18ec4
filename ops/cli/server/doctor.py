"""`remotegpu doctor`: is every part of this deployment there and answering?"""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.ops.cli.client.options import Output
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.cli.server.config import ConfigOption, server_settings
from remotegpu.ops.output import OutputFormat, emit

Timeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds each part has to answer.")]


def doctor(config: ConfigOption = None, timeout: Timeout = 5.0, output: Output = OutputFormat.TABLE) -> None:
    """One row per part (database, cluster, registry, secrets, gateway, Prometheus): its state, and for
    a part that is not configured the setting that turns it on. Exit status 0 only when every configured
    part answers; runs without DATABASE_URL."""
    from remotegpu.ops.doctor import Doctor, PartState

    reports = Doctor(server_settings(config), timeout_s=timeout).run()
    rows = [{"part": r.part, "state": str(r.state), "detail": r.detail} for r in reports]
    emit(
        console,
        rows,
        output,
        [("PART", lambda r: r["part"]), ("STATE", lambda r: r["state"]), ("DETAIL", lambda r: r["detail"])],
    )
    if any(r.state is PartState.FAILED for r in reports):
        raise typer.Exit(1)
