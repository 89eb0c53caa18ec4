"""Metered usage and the invoices it rolls up into.

Money is `Decimal` (NUMERIC), never float. Rows here are kept when a workspace is deleted: their
foreign keys are `ON DELETE RESTRICT`. A finalized invoice and its lines are immutable (a trigger).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments.states import InvoiceStatus, MeteredResource
from remotegpu.core.models.base import Base, CreatedAt, UuidPk, WriterStamped, enum_type

Money = Numeric(18, 6)
Amount = Numeric(24, 12)
"""An interval's amount: 12 decimal places, so rounding happens once, per invoice line."""


class Price(Base):
    """The price of one resource (of one GPU model) from `effective_from` until the next one's."""

    __tablename__ = "prices"
    __table_args__ = (
        Index(
            "uq_prices_resource_model_effective_from",
            "resource",
            text("coalesce(gpu_model, '')"),
            "effective_from",
            unique=True,
        ),
        CheckConstraint("unit_price >= 0", name="not_negative"),
        CheckConstraint("(resource = 'gpu') = (gpu_model IS NOT NULL)", name="model_only_for_gpu"),
    )

    id: Mapped[UuidPk]
    resource: Mapped[MeteredResource] = mapped_column(enum_type(MeteredResource, "resource"))
    gpu_model: Mapped[str | None] = mapped_column(String(64))
    unit_price: Mapped[Decimal] = mapped_column(Money)
    """Per `resource.unit`: GPU-hour, core-hour, GiB-hour or GiB-month, in the deployment's currency."""
    effective_from: Mapped[dt.datetime]
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[CreatedAt]


class Meter(WriterStamped, Base):
    """One resource of one environment over one observed spell, and how far it has been metered.

    Compute (GPUs, CPU, memory) is one spell per run: from the moment the reconciler observes the
    environment running to the moment it observes it not running. Storage is one spell per volume, from
    its creation to its deletion. `metered_until` is the cursor: the end of the spell's last interval,
    moved only by the statement that inserts the next one, guarded by its previous value.
    """

    __tablename__ = "meters"
    __table_args__ = (
        UniqueConstraint("environment_id", "resource", "subject", "started_at"),
        CheckConstraint("num_nonnulls(environment_id, home_volume_id) = 1", name="one_owner"),
        Index(
            "uq_meters_home_volume_id_started_at",
            "home_volume_id",
            "started_at",
            unique=True,
            postgresql_where=text("home_volume_id IS NOT NULL"),
        ),
        CheckConstraint("metered_until >= started_at", name="cursor_after_start"),
        CheckConstraint("ended_at IS NULL OR metered_until <= ended_at", name="cursor_before_end"),
        CheckConstraint("quantity > 0", name="positive_quantity"),
        CheckConstraint("(resource = 'gpu') = (gpu_model IS NOT NULL)", name="model_only_for_gpu"),
        Index(
            "ix_meters_due",
            "metered_until",
            postgresql_where=text("ended_at IS NULL OR metered_until < ended_at"),
        ),
    )

    id: Mapped[UuidPk]
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("environments.id", ondelete="RESTRICT")
    )
    """The environment metered; NULL for a home volume's storage (it outlives environments)."""
    home_volume_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("home_volumes.id", ondelete="RESTRICT")
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="RESTRICT"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    resource: Mapped[MeteredResource] = mapped_column(enum_type(MeteredResource, "resource"))
    subject: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """The volume's name for storage; empty for compute."""
    gpu_model: Mapped[str | None] = mapped_column(String(64))
    quantity: Mapped[Decimal] = mapped_column(Money)
    """GPUs, cores, GiB of memory or GiB of volume."""
    started_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime | None]
    metered_until: Mapped[dt.datetime]
    amount: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0), server_default="0")
    """The sum of its intervals' amounts, added by the statement that writes them: an environment's cost
    so far reads a few meters, never its (ever-growing) intervals."""
    created_at: Mapped[CreatedAt]


class BillingInterval(WriterStamped, Base):
    """Usage of one meter over [started_at, ended_at), priced with the price in force at its start.

    A meter's intervals tile its spell: no gap, no overlap, each emitted once (unique start per meter),
    none crossing a price change or a billing-period boundary. `amount` keeps 12 decimal places; money is
    rounded once, per invoice line, never per interval.
    """

    __tablename__ = "billing_intervals"
    __table_args__ = (
        UniqueConstraint("meter_id", "started_at"),
        CheckConstraint("ended_at > started_at", name="positive_length"),
        CheckConstraint("quantity > 0 AND unit_price >= 0 AND amount >= 0", name="not_negative"),
        Index("ix_billing_intervals_environment_id_started_at", "environment_id", "started_at"),
        Index(
            "ix_billing_intervals_uninvoiced",
            "started_at",
            "workspace_id",
            postgresql_where=text("invoice_id IS NULL"),
        ),
    )

    id: Mapped[UuidPk]
    meter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("meters.id", ondelete="RESTRICT"))
    environment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("environments.id", ondelete="RESTRICT")
    )
    """NULL for a home volume's storage (`home_volume_id`)."""
    home_volume_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("home_volumes.id", ondelete="RESTRICT")
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="RESTRICT"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    resource: Mapped[MeteredResource] = mapped_column(enum_type(MeteredResource, "resource"))
    subject: Mapped[str] = mapped_column(String(64), default="", server_default="")
    gpu_model: Mapped[str | None] = mapped_column(String(64))
    quantity: Mapped[Decimal] = mapped_column(Money)
    unit: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime]
    ended_at: Mapped[dt.datetime]
    currency: Mapped[str] = mapped_column(String(3))
    unit_price: Mapped[Decimal] = mapped_column(Money)
    """The price per `unit` in force at `started_at`."""
    amount: Mapped[Decimal] = mapped_column(Amount)
    invoice_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("invoices.id", ondelete="RESTRICT"), index=True
    )
    """The finalized invoice it is on, set in the transaction that finalizes it: each interval is invoiced
    exactly once. Until then it shows on a draft (`core.billing.invoices`)."""
    created_at: Mapped[CreatedAt]


class Invoice(WriterStamped, Base):
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
    """One line of an invoice: the usage of one resource (and GPU model) at one unit price — or, when
    `adjusts_period_start` is set, such usage of an earlier, already finalized period metered late.

    `amount` is the sum of its intervals' (12-place) amounts rounded once, half-even, to cents;
    `quantity` is in `unit` (GPU-hours, core-hours, GiB-hours, GiB-months)."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint("quantity >= 0 AND amount >= 0", name="not_negative"),
        CheckConstraint("(resource = 'gpu') = (gpu_model IS NOT NULL)", name="model_only_for_gpu"),
    )

    id: Mapped[UuidPk]
    invoice_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("invoices.id", ondelete="RESTRICT"), index=True)
    description: Mapped[str] = mapped_column(Text)
    resource: Mapped[MeteredResource] = mapped_column(enum_type(MeteredResource, "resource"))
    gpu_model: Mapped[str | None] = mapped_column(String(64))
    quantity: Mapped[Decimal] = mapped_column(Money)
    unit: Mapped[str] = mapped_column(String(16))
    unit_price: Mapped[Decimal] = mapped_column(Money)
    amount: Mapped[Decimal] = mapped_column(Money)
    adjusts_period_start: Mapped[dt.datetime | None]
    """Set on an adjustment line: the start of the (finalized) period whose late usage it bills."""
