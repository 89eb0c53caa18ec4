"""`remotegpu prices set|list`: the price list (anyone signed in reads it; platform admins set it).

`set` takes items such as `H100=2.49/h cpu=0.02/h memory=0.005/h storage=0.10/month`: a GPU model or
`cpu`, `memory`, `storage`; a decimal; and the unit the resource is priced per (`/h` for GPUs, CPU cores
and GiB of memory, `/month` for GiB of storage, a month being 730 hours). A wrong or missing unit is
refused before anything is sent, so a price per month is never taken for one per hour.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli.client.options import Output
from remotegpu.ops.cli.client.session import signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit

prices_app = typer.Typer(help="The price list (setting prices needs a platform admin).", no_args_is_help=True)

_SUFFIXES = {"h": "/h", "hour": "/h", "month": "/month"}
"""Unit suffixes as written, by what they mean."""
_RESOURCES = {
    "cpu": ("/h", "core-hour", "cpu=0.02/h"),
    "memory": ("/h", "GiB-hour", "memory=0.005/h"),
    "storage": ("/month", "GiB-month", "storage=0.10/month"),
}
_GPU = ("/h", "GPU-hour", "H100=2.49/h")
_UNIT_NAMES = {
    "gpu_hour": "GPU-hour",
    "core_hour": "core-hour",
    "gib_hour": "GiB-hour",
    "gib_month": "GiB-month",
}


def parse_price(item: str) -> dict[str, Any]:
    """`H100=2.49/h` → the API's price object; RemoteGPUError names the item and how to write it."""
    name, equals, rest = item.partition("=")
    name = name.strip()
    if not equals or not name:
        raise RemoteGPUError(f"{item!r}: write RESOURCE=PRICE/UNIT, e.g. H100=2.49/h or storage=0.10/month")
    resource = name.lower() if name.lower() in _RESOURCES else "gpu"
    if name.lower() == "gpu":
        raise RemoteGPUError(f"{item!r}: a GPU price is per model: name it, e.g. H100=2.49/h")
    unit, unit_name, example = _RESOURCES.get(resource, _GPU)
    amount, slash, suffix = rest.partition("/")
    written = _SUFFIXES.get(suffix.strip().lower()) if slash else None
    if written != unit:
        what = "a GPU model" if resource == "gpu" else resource
        raise RemoteGPUError(
            f"{item!r}: {what} is priced per {unit_name}: end the price with {unit}, e.g. "
            + (example if resource != "gpu" else f"{name}=2.49/h")
        )
    try:
        price = Decimal(amount.strip())
    except InvalidOperation:
        price = Decimal("NaN")
    if not price.is_finite():
        raise RemoteGPUError(
            f"{item!r}: {amount.strip() or 'the price'} is not a decimal number, e.g. {example}"
        )
    body: dict[str, Any] = {"resource": resource, "unit_price": str(price)}
    if resource == "gpu":
        body["gpu_model"] = name
    return body


def _start(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise RemoteGPUError(
            f"--from {value!r}: write an ISO 8601 time, e.g. 2026-12-01 or 2026-12-01T00:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.isoformat()


@prices_app.command("set")
def prices_set(
    items: Annotated[
        list[str],
        typer.Argument(
            help="Prices: MODEL=PRICE/h for a GPU model, cpu=PRICE/h (per core), memory=PRICE/h (per GiB),"
            " storage=PRICE/month (per GiB, a month being 730 hours).",
            show_default=False,
        ),
    ],
    start: Annotated[
        str | None,
        typer.Option(
            "--from", help="When they start (ISO 8601, UTC unless an offset is given); default: now."
        ),
    ] = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Set prices from now or from a later time (platform admins); they never apply to past usage."""
    body = {"effective_from": _start(start), "prices": [parse_price(item) for item in items]}
    with signed_in_client() as client:
        result = client.request("PUT", "/billing/prices", json_body=body)
    _show(result, output)


@prices_app.command("list")
def prices_list(output: Output = OutputFormat.TABLE) -> None:
    """The prices in force now and those scheduled to start later."""
    with signed_in_client() as client:
        result = client.get("/billing/prices")
    _show(result, output)


def _show(result: dict[str, Any], output: OutputFormat) -> None:
    if output is not OutputFormat.TABLE:
        emit(console, result, output, [])
        return
    if not result["current"] and not result["scheduled"]:
        console.print("no prices set: usage costs nothing until one is (`remotegpu prices set`)")
        return
    currency = result["currency"]
    columns = [
        ("RESOURCE", lambda p: p["resource"]),
        ("MODEL", lambda p: p["gpu_model"]),
        (
            "PRICE",
            lambda p: f"{_plain(p['unit_price'])} {currency} / {_UNIT_NAMES.get(p['unit'], p['unit'])}",
        ),
        ("FROM", lambda p: p["effective_from"]),
    ]
    emit(console, result["current"], output, columns, title="In force now")
    if result["scheduled"]:
        emit(console, result["scheduled"], output, columns, title="Scheduled")


def _plain(price: str) -> str:
    """`2.490000` → `2.49`, `3.000000` → `3.00`: no trailing zeros past the cents."""
    whole, _, fraction = str(price).partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"
