"""The workspaces page and billing: usage, the spending limit, invoices and their CSV."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Response, get
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from remotegpu.api.console.calls import call
from remotegpu.api.console.page import page, workspaces_of
from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.routes import billing, workspaces
from remotegpu.core.platform.errors import ForbiddenError, NotFoundError


@get("/workspaces")
async def workspaces_page(request: AnyRequest, api: Api) -> Template:
    """The caller's workspaces, and their members where the caller may see them."""
    spaces = await workspaces_of(request, api)
    members: dict[uuid.UUID, list[Any] | None] = {}
    for space in spaces:
        try:
            members[space.id] = await call(
                workspaces.members, workspace_id=space.id, request=request, api=api
            )
        except (ForbiddenError, NotFoundError):
            members[space.id] = None
    return await page(request, api, "workspaces.html", workspaces=spaces, members=members)


@get("/billing")
async def billing_page(request: AnyRequest, api: Api, workspace: FromQuery[str | None] = None) -> Template:
    """Usage so far by environment and resource, the spending limit, and the invoices of one workspace
    (for those who may see its bills)."""
    spaces = await workspaces_of(request, api)
    chosen = workspace or (spaces[0].name if spaces else None)
    usage = invoices = None
    refused = None
    if chosen is not None:
        try:
            usage = await call(
                billing.usage_view, request=request, api=api, workspace=chosen, from_=None, to=None
            )
            invoices = (
                await call(
                    billing.invoices, request=request, api=api, workspace=chosen, limit=50, cursor=None
                )
            ).items
        except ForbiddenError as error:
            refused = str(error)
    return await page(
        request,
        api,
        "billing.html",
        workspaces=spaces,
        workspace=chosen,
        usage=usage,
        invoices=invoices,
        refused=refused,
    )


@get("/billing/invoices/{invoice_id:uuid}")
async def invoice_page(invoice_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> Template:
    """One invoice with its lines."""
    answer = await call(billing.invoice, invoice_id=str(invoice_id), request=request, api=api)
    return await page(request, api, "invoice.html", invoice=answer.content)


@get("/billing/invoices/{invoice_id:uuid}/csv")
async def invoice_csv(invoice_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> Response[Any]:
    """The invoice's lines as CSV: the REST route's own download."""
    answer: Response[Any] = await call(
        billing.invoice, invoice_id=f"{invoice_id}.csv", request=request, api=api
    )
    return answer


ROUTES = [workspaces_page, billing_page, invoice_page, invoice_csv]
