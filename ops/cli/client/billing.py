"""`remotegpu billing invoices`: the invoices of workspaces whose bills the caller may see."""

from __future__ import annotations

import typer

from remotegpu.ops.cli.client.options import Output, Workspace
from remotegpu.ops.cli.client.session import chosen_workspace, signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit

billing_app = typer.Typer(help="Invoices and metered usage.", no_args_is_help=True)


@billing_app.command("invoices")
def billing_invoices(workspace: Workspace = None, output: Output = OutputFormat.TABLE) -> None:
    """Invoices of workspaces whose bills you may see."""
    with signed_in_client() as client:
        items = list(client.items("/billing/invoices", workspace=chosen_workspace(workspace)))
    emit(
        console,
        items,
        output,
        [
            ("PERIOD", lambda i: f"{i['period_start'][:10]} – {i['period_end'][:10]}"),
            ("STATUS", lambda i: i["status"]),
            ("TOTAL", lambda i: f"{i['total']} {i['currency']}"),
        ],
    )
