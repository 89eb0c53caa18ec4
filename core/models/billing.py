"""Metered usage and the invoices it rolls up into.

Money is `Decimal` (NUMERIC), never float. Rows here are kept when a workspace is deleted: their
foreign keys are `ON DELETE RESTRICT`. A finalized invoice and its lines are immutable (a trigger).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments.states import InvoiceStatus
from remotegpu.core.models.base import Base, CreatedAt, GpuModel, UuidPk, enum_type

Money = Numeric(18, 6)


class BillingInterval(Base):
    """Usage of one environment over [started_at, ended_at), priced with the unit price of the time.

    Intervals of one environment never overlap and leave no gap while it runs; each is emitted once
    (unique start per environment).
    """

    __tablename__ = "billing_intervals"
    __table_args__ = (
        UniqueConstraint("environment_id", "started_at"),
        CheckConstraint("ended_at > started_at", name="positive_length"),
        CheckConstraint("gpu_count >= 0 AND unit_price >= 0 AND amount >= 0", name="not_negative"),
    )

    id: Mapped[UuidPk]
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="RESTRICT"))
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="RESTRICT"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    gpu_model: Mapped[GpuModel]
    gpu_count: Mapped[int]
    started_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime]
    currency: Mapped[str] = mapped_column(String(3))
    unit_price: Mapped[Decimal] = mapped_column(Money)
    """Price of one GPU-hour at the time the interval was emitted."""
    amount: Mapped[Decimal] = mapped_column(Money)
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[CreatedAt]


class Invoice(Base):
    """The bill of one workspace (or one user) for one billing period."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("num_nonnulls(workspace_id, user_id) = 1", name="one_subject"),
        CheckConstraint("period_end > period_start", name="period_valid"),
        CheckConstraint("(status = 'finalized') = (finalized_at IS NOT NULL)", name="finalized_when"),
        UniqueConstraint("workspace_id", "period_start"),
        UniqueConstraint("user_id", "period_start"),
    )

    id: Mapped[UuidPk]
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workspaces.id", ondelete="RESTRICT"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    period_start: Mapped[dt.datetime]
    period_end: Mapped[dt.datetime]
    status: Mapped[InvoiceStatus] = mapped_column(
        enum_type(InvoiceStatus, "status"),
        default=InvoiceStatus.DRAFT,
        server_default=InvoiceStatus.DRAFT.value,
    )
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(Money, default=Decimal(0), server_default="0")
    finalized_at: Mapped[dt.datetime | None]
    created_at: Mapped[CreatedAt]


class InvoiceLine(Base):
    """One line of an invoice: GPU-hours of one model at one unit price."""

    __tablename__ = "invoice_lines"
    __table_args__ = (CheckConstraint("gpu_hours >= 0 AND amount >= 0", name="not_negative"),)

    id: Mapped[UuidPk]
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"), index=True)
    description: Mapped[str] = mapped_column(Text)
    gpu_model: Mapped[GpuModel]
    gpu_hours: Mapped[Decimal] = mapped_column(Money)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    amount: Mapped[Decimal] = mapped_column(Money)
