"""Billing as users read it: metered intervals and invoices of the workspaces whose bills they may see.

Billing admins are workspace owners and admins; platform admins see every workspace's bills. Naming a
workspace the caller is not a member of reads as naming one that does not exist (NotFoundError); a
member below admin is refused (ForbiddenError). Without a workspace, the lists hold every workspace
whose bills the caller may see.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.accounts.membership import workspace_access
from remotegpu.core.accounts.users import Principal
from remotegpu.core.platform.errors import ForbiddenError, NotFoundError
from remotegpu.core.platform.pagination import decode_cursor, page
from remotegpu.policies.roles import Action, allows

_BILLABLE = (
    "(:admin OR EXISTS (SELECT 1 FROM workspace_members m WHERE m.workspace_id = {table}.workspace_id"
    " AND m.user_id = :user AND m.role IN ('owner', 'admin')))"
)


def list_records(
    connection: Connection,
    principal: Principal,
    workspace: str | None,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """Billing intervals, newest first, of `workspace` (by name or id) or of every billable one."""
    workspace_id = _billable_workspace(connection, principal, workspace)
    after = decode_cursor(cursor, (datetime, uuid.UUID))
    rows = list(
        connection.execute(
            text(
                "SELECT b.id, b.environment_id, b.workspace_id, b.user_id, b.resource, b.subject, b.gpu_model,"
                " b.quantity, b.unit, b.started_at,"
                " b.ended_at, b.currency, b.unit_price, b.amount, b.invoice_id FROM billing_intervals b"
                f" WHERE {_BILLABLE.format(table='b')}"
                " AND (CAST(:workspace AS uuid) IS NULL OR b.workspace_id = :workspace)"
                " AND (CAST(:after_at AS timestamptz) IS NULL"
                "      OR (b.started_at, b.id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid)))"
                " ORDER BY b.started_at DESC, b.id DESC LIMIT :limit"
            ),
            _params(principal, workspace_id, after, limit),
        )
    )
    return page(rows, limit, lambda row: (row.started_at.isoformat(), row.id))


_INVOICE_COLUMNS = "i.id, i.workspace_id, i.user_id, i.period_start, i.period_end, i.status, i.currency, i.total, i.finalized_at"


def list_invoices(
    connection: Connection,
    principal: Principal,
    workspace: str | None,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """Invoices, newest period first, of `workspace` (by name or id) or of every billable one."""
    workspace_id = _billable_workspace(connection, principal, workspace)
    after = decode_cursor(cursor, (datetime, uuid.UUID))
    rows = list(
        connection.execute(
            text(
                f"SELECT {_INVOICE_COLUMNS} FROM invoices i WHERE {_BILLABLE.format(table='i')}"
                " AND (CAST(:workspace AS uuid) IS NULL OR i.workspace_id = :workspace)"
                " AND (CAST(:after_at AS timestamptz) IS NULL"
                "      OR (i.period_start, i.id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid)))"
                " ORDER BY i.period_start DESC, i.id DESC LIMIT :limit"
            ),
            _params(principal, workspace_id, after, limit),
        )
    )
    return page(rows, limit, lambda row: (row.period_start.isoformat(), row.id))


def get_invoice(connection: Connection, principal: Principal, invoice_id: uuid.UUID) -> tuple[Any, list[Any]]:
    """An invoice the caller may see, with its lines; NotFoundError for non-members, ForbiddenError for
    members below admin."""
    invoice = connection.execute(
        text(
            f"SELECT {_INVOICE_COLUMNS}, (SELECT m.role::text FROM workspace_members m"
            "   WHERE m.workspace_id = i.workspace_id AND m.user_id = :user) AS caller_role"
            " FROM invoices i WHERE i.id = :id"
        ),
        {"id": invoice_id, "user": principal.user_id},
    ).one_or_none()
    if invoice is None or (invoice.caller_role is None and not principal.is_admin):
        raise NotFoundError(f"invoice {invoice_id} not found")
    if not principal.is_admin and not allows(invoice.caller_role, Action.READ_BILLING):
        raise ForbiddenError("invoices are for workspace owners and admins")
    lines = list(
        connection.execute(
            text(
                "SELECT description, gpu_model, gpu_hours, unit_price, amount FROM invoice_lines"
                " WHERE invoice_id = :id ORDER BY gpu_model, description"
            ),
            {"id": invoice_id},
        )
    )
    return invoice, lines


def _billable_workspace(
    connection: Connection, principal: Principal, workspace: str | None
) -> uuid.UUID | None:
    if workspace is None:
        return None
    access = workspace_access(connection, principal, workspace)
    access.require(Action.READ_BILLING)
    return access.id


def _params(
    principal: Principal, workspace_id: uuid.UUID | None, after: tuple[Any, ...] | None, limit: int
) -> dict[str, Any]:
    return {
        "user": principal.user_id,
        "admin": principal.is_admin,
        "workspace": workspace_id,
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
        "limit": limit + 1,
    }
