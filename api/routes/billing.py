"""Billing records (metered intervals) and invoices of the workspaces whose bills the caller may see."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Router, get
from litestar.params import FromPath, FromQuery, QueryParameter

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.billing.views import get_invoice, list_invoices, list_records
from remotegpu.core.platform.pagination import MAX_PAGE_SIZE

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)]


class RecordOut(msgspec.Struct):
    """One metered interval: `quantity` of `resource` (GPUs of `gpu_model`, cores, GiB of memory, or GiB of
    volume `subject`) over [started_at, ended_at), at `unit_price` per `unit`; money as a decimal string."""

    id: uuid.UUID
    environment_id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    resource: str
    subject: str
    gpu_model: str | None
    quantity: Decimal
    unit: str
    started_at: dt.datetime
    ended_at: dt.datetime
    currency: str
    unit_price: Decimal
    amount: Decimal
    invoice_id: uuid.UUID | None


class RecordList(msgspec.Struct):
    """A page of billing records, newest first."""

    items: list[RecordOut]
    next_cursor: str | None = None


class InvoiceLineOut(msgspec.Struct):
    """GPU-hours of one model at one price."""

    description: str
    gpu_model: str
    gpu_hours: Decimal
    unit_price: Decimal
    amount: Decimal


class InvoiceOut(msgspec.Struct):
    """An invoice; `lines` only when one invoice is asked for."""

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


def _invoice(row: Any, lines: list[Any] | None = None) -> InvoiceOut:
    return InvoiceOut(
        row.id,
        row.workspace_id,
        row.user_id,
        row.period_start,
        row.period_end,
        str(row.status),
        row.currency,
        row.total,
        row.finalized_at,
        None
        if lines is None
        else [InvoiceLineOut(x.description, x.gpu_model, x.gpu_hours, x.unit_price, x.amount) for x in lines],
    )


@get("/records", sync_to_thread=True, opt=answers(403, 404))
def records(
    request: AnyRequest,
    api: Api,
    workspace: FromQuery[str | None] = None,
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
) -> RecordList:
    """Metered intervals of the workspaces whose bills the caller may see (owners and admins)."""
    with api.acting(request) as (connection, principal):
        rows, following = list_records(connection, principal, workspace, limit=limit, cursor=cursor)
    items = [
        RecordOut(
            r.id,
            r.environment_id,
            r.workspace_id,
            r.user_id,
            r.resource,
            r.subject,
            r.gpu_model,
            r.quantity,
            r.unit,
            r.started_at,
            r.ended_at,
            r.currency,
            r.unit_price,
            r.amount,
            r.invoice_id,
        )
        for r in rows
    ]
    return RecordList(items, following)


@get("/invoices", sync_to_thread=True, opt=answers(403, 404))
def invoices(
    request: AnyRequest,
    api: Api,
    workspace: FromQuery[str | None] = None,
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
) -> InvoiceList:
    """Invoices of the workspaces whose bills the caller may see."""
    with api.acting(request) as (connection, principal):
        rows, following = list_invoices(connection, principal, workspace, limit=limit, cursor=cursor)
    return InvoiceList([_invoice(r) for r in rows], following)


@get("/invoices/{invoice_id:uuid}", sync_to_thread=True, opt=answers(403))
def invoice(invoice_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> InvoiceOut:
    """One invoice with its lines."""
    with api.acting(request) as (connection, principal):
        row, lines = get_invoice(connection, principal, invoice_id)
    return _invoice(row, lines)


router = Router("/billing", route_handlers=[records, invoices, invoice], tags=["billing"])
