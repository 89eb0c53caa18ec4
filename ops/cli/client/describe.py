"""`remotegpu describe env`: one environment in full (spec, phase, cost so far, policy stops, deadline,
budget, conditions, access, events)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import typer
import yaml
from rich.text import Text

from remotegpu.ops.api_client import ApiClient
from remotegpu.ops.cli.client.environments import find_environment
from remotegpu.ops.cli.client.options import Name, Output, Workspace
from remotegpu.ops.cli.client.session import signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit, table

describe_app = typer.Typer(help="Show one thing in full.", no_args_is_help=True)


@describe_app.command("env")
def describe_env(name: Name, workspace: Workspace = None, output: Output = OutputFormat.TABLE) -> None:
    """Spec, phase, conditions, queue position, events and access of one environment."""
    with signed_in_client() as client:
        environment = find_environment(client, name, workspace)
        events = client.get(f"/environments/{environment['id']}/events")["items"]
        access = _access(client, environment)
    if output is not OutputFormat.TABLE:
        emit(console, {**environment, "events": events, "access": access}, output, [])
        return
    rows = [
        ("Name", f"{environment['name']}  ({environment['id']})"),
        ("Workspace", environment["workspace"]),
        ("Owner", environment["owner"]),
        ("Phase", environment["phase"] + (f" ({environment['reason']})" if environment["reason"] else "")),
        ("Desired", environment["desired_state"]),
        ("Generation", f"{environment['generation']} (observed {environment['observed_generation']})"),
        ("Host", environment["host"] or "-"),
        ("Image", _image(environment)),
        (
            "GPUs",
            f"{environment['gpu_count']}×{environment['gpu_model'] or 'any'} {environment.get('gpu_indexes') or ''}",
        ),
    ]
    cost = environment.get("cost_so_far")
    if cost is not None:  # shown to its owner and to those who may see the workspace's bills
        rows.append(("Cost so far", f"{cost['rounded']} {cost['currency']}"))
    if environment["queue_position"] is not None:
        rows.append(("Queue", f"#{environment['queue_position']}: {environment['queue_reason']}"))
    elif environment.get("queue_reason"):  # waits for something other than room: quota, a spent budget
        rows.append(("Queue", environment["queue_reason"]))
    rows += policy_rows(environment)
    if environment["message"]:
        rows.append(("Message", environment["message"]))
    for key, value in rows:
        console.print(Text.assemble((f"{key + ':':<12}", "bold"), f" {value}"), highlight=False)
    console.print(Text("Spec:", style="bold"))
    console.print(
        yaml.safe_dump(environment["spec"], sort_keys=False).rstrip(), highlight=False, markup=False
    )
    if environment["conditions"]:
        console.print(
            table(
                environment["conditions"],
                [(key.upper(), _getter(key)) for key in environment["conditions"][0]],
                "Conditions",
            )
        )
    if access:
        console.print(
            table(
                access,
                [
                    ("KIND", lambda a: a["kind"]),
                    ("URL", lambda a: a["url"]),
                    ("COMMAND", lambda a: a["command"]),
                ],
                "Access",
            )
        )
    console.print(
        table(
            events[-20:],
            [
                ("AT", lambda e: e["at"][11:19]),
                ("REASON", lambda e: e["reason"]),
                ("MESSAGE", lambda e: e["message"]),
            ],
            "Events",
        )
    )


def _image(environment: dict[str, Any]) -> str:
    """The tag the spec names, and the digest the pod runs once pinned."""
    pinned = environment.get("pinned_image")
    image = str(environment["spec"].get("image", "-"))
    return f"{image} @ {pinned['digest']}" if pinned else f"{image} (digest not pinned)"


def policy_rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    """What the stop policies say: why the system stopped it, when its run's max duration ends, and
    the workspace's budget once it is at 80 % or more."""
    rows = []
    stop = environment.get("policy_stop")
    if stop:
        rows.append(("Stopped by", f"{stop['reason']}: {stop['message']}"))
    if environment.get("max_duration_deadline"):
        rows.append(("Deadline", f"{environment['max_duration_deadline'][:19]}Z (policies.max_duration)"))
    budget = environment.get("budget")
    if budget and budget["state"] != "ok":
        rows.append(("Budget", budget_text(budget)))
    return rows


def budget_text(budget: dict[str, Any]) -> str:
    """`WARNING: 85.0% of the limit spent (85.00 of 100 USD)`, or the state alone without the figures."""
    shown = "EXHAUSTED" if budget["state"] == "exhausted" else "WARNING"
    if budget.get("limit") is None:
        return f"{shown}: the workspace is near or past its spending limit"
    spent = Decimal(budget["spent"]).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    text = f"{shown}: {budget['percent']}% of the limit spent ({spent} of {budget['limit']} {budget['currency']})"
    if budget["state"] == "exhausted":
        text += "; new environments wait and running ones are stopped"
    return text


def _getter(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda item: item.get(key)


def _access(client: ApiClient, environment: dict[str, Any]) -> list[dict[str, Any]]:
    from remotegpu.ops.api_client import ApiError

    try:
        return list(client.get(f"/environments/{environment['id']}/access"))
    except ApiError as error:
        if error.status == 403:  # a viewer, or someone else's environment: the rest is still shown
            return []
        raise
