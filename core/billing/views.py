"""Billing as users read it: metered intervals and invoices of the workspaces whose bills they may see.

Billing admins are workspace owners and admins; platform admins see every workspace's bills. Naming a
workspace the caller is not a member of reads as naming one that does not exist (NotFoundError); a
member below admin is refused (ForbiddenError). Without a workspace, the lists hold every workspace
whose bills the caller may see.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.accounts.membership import workspace_access
from remotegpu.core.accounts.users import Principal
from remotegpu.core.billing.invoices import CENTS, Line, draft_lines, stored_lines, total_of
from remotegpu.core.environments.states import InvoiceStatus
from remotegpu.core.platform.errors import ForbiddenError, NotFoundError
from remotegpu.core.platform.pagination import decode_cursor, page
from remotegpu.core.platform.settings import BillingPeriod
from remotegpu.policies.roles import Action, allows

BILLABLE = (
    "(:admin OR EXISTS (SELECT 1 FROM workspace_members m WHERE m.workspace_id = {table}.workspace_id"
    " AND m.user_id = :user AND m.role IN ('owner', 'admin')))"
)
"""Whether the caller may read the bills of `{table}`'s workspace (parameters :user and :admin); `m` is
taken by the membership, so give the outer table another alias."""


@dataclass(frozen=True)
class RecordFilter:
    """What `list_records` narrows to; None means no filter."""

    environment: str | None = None
    """An environment's id, or its name: every environment ever called so (in `workspace` when one is
    named), since a deleted environment's records are kept and its name may have been reused."""
    start: datetime | None = None
    end: datetime | None = None
    """Records overlapping [start, end): the same rule as usage windows."""


def list_records(
    connection: Connection,
    principal: Principal,
    workspace: str | None,
    *,
    limit: int,
    cursor: str | None,
    filters: RecordFilter = RecordFilter(),
) -> tuple[list[Any], str | None]:
    """Billing intervals, newest first, of `workspace` (by name or id) or of every billable one.

    The filters are plain predicates beside the keyset condition on (started_at, id), so a cursor taken
    with them continues the same filtered list."""
    workspace_id = billable_workspace(connection, principal, workspace)
    after = decode_cursor(cursor, (datetime, uuid.UUID))
    environment_id = _as_uuid(filters.environment) if filters.environment else None
    params = _params(principal, workspace_id, after, limit) | {
        "environment_id": environment_id,
        "environment_name": filters.environment if filters.environment and not environment_id else None,
        "window_start": filters.start,
        "window_end": filters.end,
    }
    rows = list(
        connection.execute(
            text(
                "SELECT b.id, b.environment_id, b.workspace_id, b.user_id, b.resource, b.subject, b.gpu_model,"
                " b.quantity, b.unit, b.started_at,"
                " b.ended_at, b.currency, b.unit_price, b.amount, b.invoice_id FROM billing_intervals b"
                f" WHERE {BILLABLE.format(table='b')}"
                " AND (CAST(:workspace AS uuid) IS NULL OR b.workspace_id = :workspace)"
                " AND (CAST(:environment_id AS uuid) IS NULL OR b.environment_id = :environment_id)"
                " AND (CAST(:environment_name AS text) IS NULL OR b.environment_id IN"
                "      (SELECT e.id FROM environments e WHERE e.name = :environment_name"
                "          AND (CAST(:workspace AS uuid) IS NULL OR e.workspace_id = :workspace)))"
                " AND (CAST(:window_start AS timestamptz) IS NULL OR b.ended_at > :window_start)"
                " AND (CAST(:window_end AS timestamptz) IS NULL OR b.started_at < :window_end)"
                " AND (CAST(:after_at AS timestamptz) IS NULL"
                "      OR (b.started_at, b.id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid)))"
                " ORDER BY b.started_at DESC, b.id DESC LIMIT :limit"
            ),
            params,
        )
    )
    return page(rows, limit, lambda row: (row.started_at.isoformat(), row.id))


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


_INVOICE_COLUMNS = "i.id, i.workspace_id, i.user_id, i.period_start, i.period_end, i.status, i.currency, i.total, i.finalized_at"


@dataclass(frozen=True)
class InvoiceView:
    """An invoice as read: a draft's total (and lines) computed now from its usage, a finalized one's as
    written when it was finalized."""

    id: uuid.UUID
    workspace_id: uuid.UUID | None
    user_id: uuid.UUID | None
    period_start: datetime
    period_end: datetime
    status: str
    currency: str
    total: Decimal
    finalized_at: datetime | None
    lines: list[Line] | None
    """Only when one invoice is asked for."""


def _view(connection: Connection, row: Any, period: BillingPeriod, *, with_lines: bool) -> InvoiceView:
    if str(row.status) == InvoiceStatus.DRAFT and row.workspace_id is not None:
        lines = draft_lines(connection, row.workspace_id, row.period_start, row.period_end, period)
        total = total_of(lines)
    else:
        lines = stored_lines(connection, row.id) if with_lines else []
        total = row.total.quantize(CENTS)
    return InvoiceView(
        row.id,
        row.workspace_id,
        row.user_id,
        row.period_start,
        row.period_end,
        str(row.status),
        row.currency,
        total,
        row.finalized_at,
        lines if with_lines else None,
    )


def list_invoices(
    connection: Connection,
    principal: Principal,
    workspace: str | None,
    *,
    limit: int,
    cursor: str | None,
    period: BillingPeriod = "month",
) -> tuple[list[InvoiceView], str | None]:
    """Invoices, newest period first, of `workspace` (by name or id) or of every billable one; drafts'
    totals as of now (`period` names their adjustment lines' periods)."""
    workspace_id = billable_workspace(connection, principal, workspace)
    after = decode_cursor(cursor, (datetime, uuid.UUID))
    rows = list(
        connection.execute(
            text(
                f"SELECT {_INVOICE_COLUMNS} FROM invoices i WHERE {BILLABLE.format(table='i')}"
                " AND (CAST(:workspace AS uuid) IS NULL OR i.workspace_id = :workspace)"
                " AND (CAST(:after_at AS timestamptz) IS NULL"
                "      OR (i.period_start, i.id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid)))"
                " ORDER BY i.period_start DESC, i.id DESC LIMIT :limit"
            ),
            _params(principal, workspace_id, after, limit),
        )
    )
    shown, following = page(rows, limit, lambda row: (row.period_start.isoformat(), row.id))
    return [_view(connection, row, period, with_lines=False) for row in shown], following


def get_invoice(
    connection: Connection, principal: Principal, invoice_id: uuid.UUID, period: BillingPeriod
) -> InvoiceView:
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
    return _view(connection, invoice, period, with_lines=True)


def billable_workspace(
    connection: Connection, principal: Principal, workspace: str | None
) -> uuid.UUID | None:
    """The id of `workspace` (name or id) once the caller may read its bills; None when none is named."""
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
