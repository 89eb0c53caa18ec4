"""`remotegpu billing invoices|invoice|usage`: the bills and live usage of workspaces whose bills you may
see."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any

import typer
from rich.text import Text

from remotegpu.ops.cli.client.options import Output, Workspace
from remotegpu.ops.cli.client.session import chosen_workspace, signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit, table

billing_app = typer.Typer(help="Invoices and metered usage.", no_args_is_help=True)

UNITS = {"gpu_hour": "GPU-h", "core_hour": "core-h", "gib_hour": "GiB-h", "gib_month": "GiB-month"}
"""How the table writes each unit the API names."""

From = Annotated[
    str | None,
    typer.Option("--from", help="Start, ISO 8601 (default: the start of the current billing period)."),
]
To = Annotated[str | None, typer.Option("--to", help="End, ISO 8601, exclusive (default: now).")]


@billing_app.command("invoices")
def billing_invoices(workspace: Workspace = None, output: Output = OutputFormat.TABLE) -> None:
    """Invoices of workspaces whose bills you may see: the current period's drafts (usage so far) and the
    finalized ones."""
    with signed_in_client() as client:
        items = list(client.items("/billing/invoices", workspace=chosen_workspace(workspace)))
    emit(
        console,
        items,
        output,
        [
            ("ID", lambda i: i["id"]),
            ("PERIOD", lambda i: f"{i['period_start'][:10]} – {i['period_end'][:10]}"),
            ("STATUS", lambda i: i["status"]),
            ("TOTAL", lambda i: f"{i['total']} {i['currency']}"),
        ],
    )


@billing_app.command("invoice")
def billing_invoice(
    invoice_id: Annotated[str, typer.Argument(metavar="ID", help="The invoice's id (`billing invoices`).")],
    as_csv: Annotated[bool, typer.Option("--csv", help="Print its lines as CSV, with a header row.")] = False,
    output: Output = OutputFormat.TABLE,
) -> None:
    """One invoice with its lines; a draft's are its usage so far. Each line's amount is its usage's
    exact sum rounded once to cents (half-even); the total is the sum of the lines."""
    with signed_in_client() as client:
        if as_csv:
            for line in client.stream_lines(f"/billing/invoices/{invoice_id}.csv"):
                typer.echo(line)
            return
        invoice = dict(client.get(f"/billing/invoices/{invoice_id}"))
    if output is not OutputFormat.TABLE:
        emit(console, invoice, output, [])
        return
    currency = invoice["currency"]
    period = f"{invoice['period_start'][:10]} – {invoice['period_end'][:10]}"
    console.print(Text.assemble(("Invoice", "bold"), f" {invoice['id']}  {period}  {invoice['status']}"))
    console.print(
        table(
            invoice["lines"],
            [
                ("DESCRIPTION", lambda li: li["description"]),
                (
                    "QUANTITY",
                    lambda li: f"{quantity_text(li['quantity'])} {UNITS.get(li['unit'], li['unit'])}",
                ),
                ("UNIT PRICE", lambda li: f"{Decimal(li['unit_price']).normalize():f}"),
                ("AMOUNT", lambda li: f"{cents(li['amount'])} {currency}"),
            ],
        )
    )
    console.print(
        Text.assemble(("Total", "bold"), f": {cents(invoice['total'])} {currency}"), highlight=False
    )


@billing_app.command("usage")
def billing_usage(
    workspace: Workspace = None, from_: From = None, to: To = None, output: Output = OutputFormat.TABLE
) -> None:
    """Usage and cost so far by environment and resource, running environments included up to now.

    Amounts in the table are each rounded to cents (half-even); the total is the unrounded sum rounded
    once, so lines may differ from it by a cent. `-o json` has the unrounded amounts."""
    with signed_in_client() as client:
        answer = dict(
            client.get("/billing/usage", workspace=chosen_workspace(workspace), **{"from": from_, "to": to})
        )
    if output is not OutputFormat.TABLE:
        emit(console, answer, output, [])
        return
    currency = answer["currency"]
    several = len({line["workspace_id"] for line in answer["lines"]}) > 1
    console.print(
        table(
            answer["lines"],
            [
                (
                    "ENVIRONMENT",
                    lambda li: f"{li['workspace']}/{li['environment']}" if several else li["environment"],
                ),
                ("RESOURCE", resource_label),
                (
                    "QUANTITY",
                    lambda li: f"{quantity_text(li['quantity'])} {UNITS.get(li['unit'], li['unit'])}",
                ),
                ("AMOUNT", lambda li: f"{cents(li['amount'])} {currency}"),
            ],
        )
    )
    window = f"{answer['from'][:19]}Z – {answer['to'][:19]}Z"
    console.print(
        Text.assemble(("Total", "bold"), f" {window}: {answer['total_rounded']} {currency}"), highlight=False
    )
    budget = answer.get("budget")
    if budget:
        console.print(Text.assemble(("Budget", "bold"), f" {budget_line(budget)}"), highlight=False)


def budget_line(budget: dict[str, Any]) -> str:
    """The period's limit, spend and state, and the overrun past the limit (volumes keep accruing)."""
    text = (
        f"since {budget['period_start'][:10]}: {cents(budget['spent'])} of {budget['limit']}"
        f" {budget['currency']} ({budget['percent']}%, {budget['state']})"
    )
    if budget["state"] == "warning":
        text += " — WARNING: at 100% new environments wait and running ones are stopped"
    if budget["state"] == "exhausted":
        text += " — EXHAUSTED: new environments wait, running ones were stopped"
    if Decimal(budget["overrun"]) > 0:
        text += f"; overrun {cents(budget['overrun'])} {budget['currency']} (volumes keep accruing storage)"
    return text


def resource_label(line: dict[str, Any]) -> str:
    """`gpu H100`, `cpu`, `memory`, `storage data` (the volume's name)."""
    detail = line["gpu_model"] if line["resource"] == "gpu" else line["subject"]
    return f"{line['resource']} {detail}" if detail else line["resource"]


def quantity_text(value: str) -> str:
    """A quantity to at most 4 decimal places, with at least one: `3.0`, `1.5`, `0.0417`."""
    shown = Decimal(value).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN).normalize()
    text = f"{shown:f}"
    return text if "." in text else f"{text}.0"


def cents(value: str) -> str:
    """An amount rounded to cents, half-even."""
    return f"{Decimal(value).quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):f}"
