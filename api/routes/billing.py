"""Billing records (metered intervals) and invoices of the workspaces whose bills the caller may see."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal
from typing import Annotated

import msgspec
from litestar import Response, Router, get
from litestar.params import FromPath, FromQuery, QueryParameter

from remotegpu.api.budget import BudgetOut, budget_out
from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.accounts.membership import workspace_access
from remotegpu.core.billing.budget import workspace_budget
from remotegpu.core.billing.invoices import CSV_HEADER, csv_rows
from remotegpu.core.billing.pricing import money
from remotegpu.core.billing.usage import Usage, usage
from remotegpu.core.billing.views import InvoiceView, RecordFilter, get_invoice, list_invoices, list_records
from remotegpu.core.platform import clock
from remotegpu.core.platform.errors import InvalidInputError, NotFoundError
from remotegpu.core.platform.pagination import MAX_PAGE_SIZE

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)]
From = Annotated[
    str | None,
    QueryParameter(
        name="from",
        description="an ISO 8601 time (2026-11-01T00:00:00Z; a date is its midnight; no offset means UTC)",
    ),
]
To = Annotated[str | None, QueryParameter(name="to", description="an ISO 8601 time, after `from`")]


def parse_time(field: str, value: str | None) -> dt.datetime | None:
    """An ISO 8601 time from the query; 422 naming `field` when it is not one. No offset means UTC."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset that moves it out of years 1–9999
        raise InvalidInputError(field, "expected an ISO 8601 time such as 2026-11-01T00:00:00Z") from None


def parse_window(start: str | None, end: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """`from` and `to` as times; 422 naming `from` when it is not before `to`."""
    first, last = parse_time("from", start), parse_time("to", end)
    if first is not None and last is not None and first >= last:
        raise InvalidInputError("from", "must be before `to`")
    return first, last


class RecordOut(msgspec.Struct):
    """One metered interval: `quantity` of `resource` (GPUs of `gpu_model`, cores, GiB of memory, or GiB of
    volume `subject`) over [started_at, ended_at), at `unit_price` per `unit`; money as a fixed-point decimal string."""

    id: uuid.UUID
    environment_id: uuid.UUID | None
    """Null for a user's home volume (subject `home`; `user_id` is whose)."""
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    resource: str
    subject: str
    gpu_model: str | None
    quantity: str
    unit: str
    started_at: dt.datetime
    ended_at: dt.datetime
    currency: str
    unit_price: str
    amount: str
    invoice_id: uuid.UUID | None


class RecordList(msgspec.Struct):
    """A page of billing records, newest first."""

    items: list[RecordOut]
    next_cursor: str | None = None


class InvoiceLineOut(msgspec.Struct):
    """Usage of one resource (GPUs of `gpu_model`, cores, GiB of memory, GiB of volumes) at one unit price:
    `quantity` in `unit`; `amount` its intervals' sum rounded once to cents, half-even. An adjustment
    line (`adjusts_period_start` set) bills usage of that earlier, already finalized period metered late."""

    description: str
    resource: str
    gpu_model: str | None
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    adjusts_period_start: dt.datetime | None


class InvoiceOut(msgspec.Struct):
    """An invoice; `lines` only when one invoice is asked for. A draft's total and lines are its usage so
    far (computed when read); a finalized one never changes. `total` is the sum of the lines."""

    id: uuid.UUID
    workspace_id: uuid.UUID | None
    user_id: uuid.UUID | None
    period_start: dt.datetime
    period_end: dt.datetime
    status: str
    currency: str
    total: Decimal
    finalized_at: dt.datetime | None
    lines: list[InvoiceLineOut] | None = None


class InvoiceList(msgspec.Struct):
    """A page of invoices, newest period first."""

    items: list[InvoiceOut]
    next_cursor: str | None = None


def _invoice(view: InvoiceView) -> InvoiceOut:
    return InvoiceOut(
        view.id,
        view.workspace_id,
        view.user_id,
        view.period_start,
        view.period_end,
        view.status,
        view.currency,
        view.total,
        view.finalized_at,
        None
        if view.lines is None
        else [
            InvoiceLineOut(
                x.description,
                x.resource.value,
                x.gpu_model,
                x.quantity,
                x.unit,
                x.unit_price,
                x.amount,
                x.adjusts_period_start,
            )
            for x in view.lines
        ],
    )


@get("/records", sync_to_thread=True, opt=answers(403, 404))
def records(
    request: AnyRequest,
    api: Api,
    workspace: FromQuery[str | None] = None,
    environment: FromQuery[str | None] = None,
    from_: From = None,
    to: To = None,
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
) -> RecordList:
    """Metered intervals of the workspaces whose bills the caller may see (owners and admins), newest
    first; `environment` (id, or name — within `workspace` when given) and `from`/`to` keep those of
    that environment and overlapping [from, to)."""
    start, end = parse_window(from_, to)
    with api.acting(request) as (connection, principal):
        rows, following = list_records(
            connection,
            principal,
            workspace,
            limit=limit,
            cursor=cursor,
            filters=RecordFilter(environment, start, end),
        )
    items = [
        RecordOut(
            r.id,
            r.environment_id,
            r.workspace_id,
            r.user_id,
            r.resource,
            r.subject,
            r.gpu_model,
            money(r.quantity),
            r.unit,
            r.started_at,
            r.ended_at,
            r.currency,
            money(r.unit_price),
            money(r.amount),
            r.invoice_id,
        )
        for r in rows
    ]
    return RecordList(items, following)


class UsageLineOut(msgspec.Struct):
    """One resource of one environment over the window: `quantity` in `unit` (gpu_hour, core_hour,
    gib_hour, gib_month), `amount` unrounded."""

    workspace_id: uuid.UUID
    workspace: str
    environment_id: uuid.UUID | None
    """Null for a user's home volume (`environment` is then `home:<username>`)."""
    environment: str
    resource: str
    gpu_model: str | None
    subject: str
    quantity: str
    unit: str
    amount: str


class EnvironmentTotalOut(msgspec.Struct):
    """One environment's (or home volume's: no id, `home:<username>`) unrounded total over the window."""

    environment_id: uuid.UUID | None
    environment: str
    amount: str


class UsageOut(msgspec.Struct):
    """Usage over [from, to): closed intervals (pro rata when partly inside) plus every meter's open tail
    up to now. Amounts are unrounded; `total_rounded` is `total` rounded once to cents, half-even."""

    start: dt.datetime = msgspec.field(name="from")
    end: dt.datetime = msgspec.field(name="to")
    currency: str
    lines: list[UsageLineOut]
    environments: list[EnvironmentTotalOut]
    """Each environment's unrounded total."""
    total: str
    total_rounded: str
    budget: BudgetOut | None = None
    """With `?workspace=` and a spending limit set: the workspace's limit, spend and state in the current
    billing period (whatever the window), and the `overrun` past the limit (volumes keep accruing)."""


def usage_out(answer: Usage) -> UsageOut:
    """The API's view of a usage answer."""
    lines = [
        UsageLineOut(
            line.workspace_id,
            line.workspace,
            line.environment_id,
            line.environment,
            line.resource.value,
            line.gpu_model,
            line.subject,
            money(line.quantity),
            line.resource.unit,
            money(line.amount),
        )
        for line in answer.lines
    ]
    environments = [
        EnvironmentTotalOut(environment_id, name, money(amount))
        for (environment_id, name), amount in answer.by_environment().items()
    ]
    return UsageOut(
        answer.start,
        answer.end,
        answer.currency,
        lines,
        environments,
        money(answer.total),
        money(answer.total_rounded),
    )


@get("/usage", sync_to_thread=True, opt=answers(403, 404))
def usage_view(
    request: AnyRequest,
    api: Api,
    workspace: FromQuery[str | None] = None,
    from_: From = None,
    to: To = None,
) -> UsageOut:
    """Live usage by environment and resource of `workspace` (or of every workspace whose bills the
    caller may see) over [from, to) — by default the current billing period up to now — including the
    running environments' cost so far."""
    start, end = parse_window(from_, to)
    with api.acting(request) as (connection, principal):
        answer = usage(
            connection,
            principal,
            workspace,
            start,
            end,
            clock.now(),
            api.billing_period,
            currency=api.currency,
        )
        shown = usage_out(answer)
        if workspace is not None:  # `usage` has checked that the caller may read its bills
            workspace_id = workspace_access(connection, principal, workspace).id
            budget = workspace_budget(connection, workspace_id, clock.now(), api.billing_period)
            shown.budget = budget_out(budget, api.currency, figures=True)
    return shown


@get("/invoices", sync_to_thread=True, opt=answers(403, 404))
def invoices(
    request: AnyRequest,
    api: Api,
    workspace: FromQuery[str | None] = None,
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
) -> InvoiceList:
    """Invoices of the workspaces whose bills the caller may see: a draft per workspace for the current
    period (its usage so far) and the finalized ones."""
    with api.acting(request) as (connection, principal):
        views, following = list_invoices(
            connection, principal, workspace, limit=limit, cursor=cursor, period=api.billing_period
        )
    return InvoiceList([_invoice(view) for view in views], following)


@get("/invoices/{invoice_id:str}", sync_to_thread=True, opt=answers(403))
def invoice(invoice_id: FromPath[str], request: AnyRequest, api: Api) -> Response[InvoiceOut]:
    """One invoice with its lines; `/invoices/{id}.csv` answers its lines as CSV (`text/csv`, a header
    row, then one row per line). One route serves both: a path parameter cannot carry a suffix."""
    as_csv = invoice_id.endswith(".csv")
    try:
        wanted = uuid.UUID(invoice_id.removesuffix(".csv"))
    except ValueError:
        raise NotFoundError(f"invoice {invoice_id} not found") from None
    with api.acting(request) as (connection, principal):
        view = get_invoice(connection, principal, wanted, api.billing_period)
    if not as_csv:
        return Response(_invoice(view))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(csv_rows(view.lines or []))
    name = f"invoice-{view.period_start:%Y-%m-%d}-{view.id}.csv"
    return Response(
        out.getvalue(),  # type: ignore[arg-type]  # the CSV twin of the documented JSON answer
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


router = Router("/billing", route_handlers=[records, usage_view, invoices, invoice], tags=["billing"])
