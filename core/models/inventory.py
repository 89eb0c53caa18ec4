"""Hosts (Kubernetes nodes) and their GPUs: the inventory allocation draws from."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments.states import GpuHealth, HostHealth
from remotegpu.core.models.base import (
    Base,
    Bytes,
    CreatedAt,
    GpuModel,
    Millis,
    UpdatedAt,
    UuidPk,
    WriterStamped,
    enum_type,
)


class Host(WriterStamped, Base):
    """A GPU node of the cluster.

    `cordoned` and `draining` are desired state set by admins (no new placements; drain also stops what
    runs); `health` is observed from the node's Ready condition and heartbeats. They are kept apart so a
    host that recovers keeps its cordon. The `*_claimed` counters are kept up to date by allocation under
    the host's advisory lock; `*_foreign` is what pods that are not ours use.
    """

    __tablename__ = "hosts"
    __table_args__ = (
        CheckConstraint(
            "port_range_start >= 1 AND port_range_start <= port_range_end AND port_range_end <= 65535",
            name="port_range_valid",
        ),
        CheckConstraint(
            "cpu_millis_allocatable >= 0 AND memory_bytes_allocatable >= 0"
            " AND cpu_millis_foreign >= 0 AND memory_bytes_foreign >= 0"
            " AND cpu_millis_claimed >= 0 AND memory_bytes_claimed >= 0 AND gpus_claimed >= 0"
            " AND ports_claimed >= 0",
            name="capacity_not_negative",
        ),
    )

    id: Mapped[UuidPk]
    name: Mapped[str] = mapped_column(String(253), unique=True)
    """The Kubernetes node name."""
    address: Mapped[str | None] = mapped_column(String(253))
    """The address the node reports users can reach it by (annotation > ExternalIP > InternalIP > Hostname),
    written by inventory sync only; see `core.inventory.addresses`."""
    address_source: Mapped[str | None] = mapped_column(String(32))
    """Where `address` came from: `annotation`, `ExternalIP`, `InternalIP` or `Hostname` (a guess)."""
    public_address: Mapped[str | None] = mapped_column(String(253))
    """An admin's override of `address` (a hostname or IP literal); never touched by inventory sync."""
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    cpu_millis_allocatable: Mapped[Millis] = mapped_column(default=0, server_default="0")
    memory_bytes_allocatable: Mapped[Bytes] = mapped_column(default=0, server_default="0")
    foreign_ports: Mapped[list[dict[str, Any]]] = mapped_column(default=list, server_default="[]")
    """Host ports used by pods that are not ours, as `{"port": 22, "protocol": "tcp"}`; never allocated."""
    cpu_millis_foreign: Mapped[Millis] = mapped_column(default=0, server_default="0")
    memory_bytes_foreign: Mapped[Bytes] = mapped_column(default=0, server_default="0")
    cpu_millis_claimed: Mapped[Millis] = mapped_column(default=0, server_default="0")
    memory_bytes_claimed: Mapped[Bytes] = mapped_column(default=0, server_default="0")
    gpus_claimed: Mapped[int] = mapped_column(default=0, server_default="0")
    ports_claimed: Mapped[int] = mapped_column(default=0, server_default="0")
    """Active port mappings on this host (all protocols)."""
    port_range_start: Mapped[int] = mapped_column(default=30000, server_default="30000")
    port_range_end: Mapped[int] = mapped_column(default=32767, server_default="32767")
    cordoned: Mapped[bool] = mapped_column(default=False, server_default="false")
    draining: Mapped[bool] = mapped_column(default=False, server_default="false")
    cordon_reason: Mapped[str | None] = mapped_column(Text)
    health: Mapped[HostHealth] = mapped_column(
        enum_type(HostHealth, "health"), default=HostHealth.UNKNOWN, server_default=HostHealth.UNKNOWN.value
    )
    last_heartbeat_at: Mapped[dt.datetime | None]
    removed_at: Mapped[dt.datetime | None]
    """When the node left the cluster; the row stays for history."""
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class Gpu(WriterStamped, Base):
    """One GPU device of a host; allocated to at most one environment at a time (see `GpuClaim`)."""

    __tablename__ = "gpus"
    __table_args__ = (
        UniqueConstraint("host_id", "index"),
        CheckConstraint('"index" >= 0', name="index_not_negative"),
    )

    id: Mapped[UuidPk]
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="RESTRICT"))
    index: Mapped[int]
    """Device index on the host (0-based)."""
    device_uuid: Mapped[str | None] = mapped_column(String(64), unique=True)
    """The NVIDIA device UUID when the node reports it."""
    model: Mapped[GpuModel]
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    health: Mapped[GpuHealth] = mapped_column(
        enum_type(GpuHealth, "health"), default=GpuHealth.HEALTHY, server_default=GpuHealth.HEALTHY.value
    )
    health_reason: Mapped[str | None] = mapped_column(Text)
    foreign_use: Mapped[bool] = mapped_column(default=False, server_default="false")
    """Used by a pod that is not ours; never allocated while set."""
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class GpuPool(Base):
    """How many GPUs of one model on one host are free to allocate, kept up to date under the host lock.

    `free` counts healthy GPUs not used by foreign pods and without an active claim; placement reads it
    instead of counting claims on every request.
    """

    __tablename__ = "gpu_pools"
    __table_args__ = (
        UniqueConstraint("host_id", "model"),
        CheckConstraint("free >= 0 AND free <= total", name="free_within_total"),
        Index("ix_gpu_pools_model_free", "model", "free"),
    )

    id: Mapped[UuidPk]
    host_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("hosts.id", ondelete="RESTRICT"))
    model: Mapped[GpuModel]
    total: Mapped[int] = mapped_column(default=0, server_default="0")
    """Healthy GPUs of this model not used by foreign pods."""
    free: Mapped[int] = mapped_column(default=0, server_default="0")
