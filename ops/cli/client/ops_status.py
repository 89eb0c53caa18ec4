"""`remotegpu ops status`: the reconciler as an operator sees it (platform admins)."""

from __future__ import annotations

import typer

from remotegpu.ops.cli.client.options import Output
from remotegpu.ops.cli.client.session import signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import Column, OutputFormat, emit, table

ops_app = typer.Typer(help="Operator views.", no_args_is_help=True)


@ops_app.command("status")
def ops_status(output: Output = OutputFormat.TABLE) -> None:
    """The reconciler: leader, epoch, queue, phases, stuck and failing environments (platform admins)."""
    with signed_in_client() as client:
        status = client.get("/ops/status")
    if output is not OutputFormat.TABLE:
        emit(console, status, output, [])
        return
    console.print(
        table(
            status["shards"],
            [
                ("SHARD", lambda s: s["shard"]),
                ("LEADER", lambda s: s["leader"]),
                ("EPOCH", lambda s: s["epoch"]),
                ("HEARTBEAT", lambda s: s["heartbeat_at"]),
            ],
            "Reconciler",
        )
    )
    console.print(
        table(
            [{"phase": k, "count": v} for k, v in sorted(status["phases"].items())],
            [("PHASE", lambda p: p["phase"]), ("ENVIRONMENTS", lambda p: p["count"])],
            "Phases",
        )
    )
    console.print(f"queue depth: {status['queue_depth']}   due now: {status['due_now']}")
    trouble: list[Column] = [
        ("NAME", lambda t: t["name"]),
        ("WORKSPACE", lambda t: t["workspace"]),
        ("PHASE", lambda t: t["phase"]),
        ("REASON", lambda t: t["reason"]),
        ("RETRIES", lambda t: t["retry_count"]),
        ("MESSAGE", lambda t: t["message"]),
    ]
    for title in ("stuck", "failing"):
        if status[title]:
            console.print(table(status[title], trouble, title.capitalize()))
