"""Claims on GPUs and host ports, and the append-only history of every claim and release.

A claim is active while `released_at` is NULL. Partial unique indexes are the last line of defence
behind the advisory locks: no GPU can hold two active claims, and no (host, host port, protocol) can be
mapped twice. `ClaimHistory` lets tests check the invariants over time, not only in the final state.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments.states import ClaimAction, ClaimKind, PortPurpose, Protocol
from remotegpu.core.models.base import Base, UuidPk, WriterStamped, enum_type

_PORT_RANGE = "BETWEEN 1 AND 65535"


class Allocation(WriterStamped, Base):
    """What one allocation charged: the host, the GPUs' model and count, CPU, memory, storage.

    Release subtracts exactly these amounts from the host and quota counters, whatever the spec says
    by then; but storage (what the volumes grew by) stays counted until the environment's delete
    (`Environment.storage_bytes_held`). An environment has at most one active allocation.
    """

    __tablename__ = "allocations"
    __table_args__ = (
        Index(
            "uq_allocations_environment_id_active",
            "environment_id",
            unique=True,
            postgresql_where=text("released_at IS NULL"),
        ),
        CheckConstraint(
            "gpu_count >= 0 AND cpu_millis >= 0 AND memory_bytes >= 0 AND storage_bytes >= 0",
            name="not_negative",
        ),
    )

    id: Mapped[UuidPk]
    environment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("environments.id", ondelete="RESTRICT"))
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="RESTRICT"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="RESTRICT"), index=True)
    generation: Mapped[int] = mapped_column(BigInteger)
    """The environment generation this allocation was made for."""
    gpu_model: Mapped[str | None] = mapped_column(String(64))
    gpu_count: Mapped[int]
    cpu_millis: Mapped[int] = mapped_column(BigInteger)
    memory_bytes: Mapped[int] = mapped_column(BigInteger)
    storage_bytes: Mapped[int] = mapped_column(BigInteger)
    allocated_at: Mapped[dt.datetime] = mapped_column(server_default=func.clock_timestamp())
    released_at: Mapped[dt.datetime | None]


class GpuClaim(WriterStamped, Base):
    """One GPU held by one environment."""

    __tablename__ = "gpu_claims"
    __table_args__ = (
        Index(
            "uq_gpu_claims_gpu_id_active", "gpu_id", unique=True, postgresql_where=text("released_at IS NULL")
        ),
        # a release reads one environment's active claims on the hosts it locked (migration 0020)
        Index(
            "ix_gpu_claims_environment_id_active",
            "environment_id",
            "host_id",
            postgresql_where=text("released_at IS NULL"),
        ),
        CheckConstraint("released_at IS NULL OR released_at >= claimed_at", name="release_after_claim"),
    )

    id: Mapped[UuidPk]
    gpu_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("gpus.id", ondelete="RESTRICT"))
    environment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("environments.id", ondelete="RESTRICT"), index=True
    )
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="RESTRICT"), index=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(server_default=func.clock_timestamp())
    released_at: Mapped[dt.datetime | None]


class PortMapping(WriterStamped, Base):
    """A host port claimed for one container port of an environment."""

    __tablename__ = "port_mappings"
    __table_args__ = (
        Index(
            "uq_port_mappings_host_port_active",
            "host_id",
            "host_port",
            "protocol",
            unique=True,
            postgresql_where=text("released_at IS NULL"),
        ),
        Index(
            "uq_port_mappings_container_port_active",
            "environment_id",
            "container_port",
            "protocol",
            unique=True,
            postgresql_where=text("released_at IS NULL"),
        ),
        CheckConstraint(f"container_port {_PORT_RANGE} AND host_port {_PORT_RANGE}", name="ports_valid"),
        CheckConstraint("released_at IS NULL OR released_at >= claimed_at", name="release_after_claim"),
    )

    id: Mapped[UuidPk]
    environment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("environments.id", ondelete="RESTRICT"), index=True
    )
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="RESTRICT"))
    container_port: Mapped[int]
    host_port: Mapped[int]
    protocol: Mapped[Protocol] = mapped_column(
        enum_type(Protocol, "protocol"), default=Protocol.TCP, server_default=Protocol.TCP.value
    )
    purpose: Mapped[PortPurpose] = mapped_column(enum_type(PortPurpose, "purpose"))
    name: Mapped[str | None] = mapped_column(String(63))
    claimed_at: Mapped[dt.datetime] = mapped_column(server_default=func.clock_timestamp())
    released_at: Mapped[dt.datetime | None]


class ClaimHistory(WriterStamped, Base):
    """Append-only log of every claim and release (a trigger refuses UPDATE and DELETE).

    `at` is the wall clock inside the writing transaction and `seq` the insertion order; together with
    the advisory locks they let a checker replay who held what, and when.
    """

    __tablename__ = "claim_history"
    __table_args__ = (
        CheckConstraint(
            "(kind = 'gpu' AND gpu_id IS NOT NULL AND gpu_model IS NOT NULL"
            " AND host_port IS NULL AND protocol IS NULL)"
            " OR (kind = 'port' AND gpu_id IS NULL AND host_port IS NOT NULL AND protocol IS NOT NULL)",
            name="kind_fields",
        ),
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    kind: Mapped[ClaimKind] = mapped_column(enum_type(ClaimKind, "kind"))
    action: Mapped[ClaimAction] = mapped_column(enum_type(ClaimAction, "action"))
    # No foreign keys (migration 0020): each row is written with the claim it records, from rows that
    # statement just checked; a key lookup per column and row was a tenth of a claim's write.
    environment_id: Mapped[uuid.UUID] = mapped_column(index=True)
    workspace_id: Mapped[uuid.UUID]
    user_id: Mapped[uuid.UUID]
    host_id: Mapped[uuid.UUID]
    gpu_id: Mapped[uuid.UUID | None]
    gpu_model: Mapped[str | None] = mapped_column(String(64))
    host_port: Mapped[int | None]
    protocol: Mapped[Protocol | None] = mapped_column(enum_type(Protocol, "protocol"))
    at: Mapped[dt.datetime] = mapped_column(server_default=func.clock_timestamp())
    txid: Mapped[int] = mapped_column(BigInteger, server_default=func.txid_current())
    """Transaction that wrote the row; claims committed together share it."""
