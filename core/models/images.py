"""The image catalog, synced from Harbor or any OCI registry, or added by hand."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.environments.states import ImageVisibility
from remotegpu.core.models.base import Base, CreatedAt, UpdatedAt, UuidPk, WriterStamped, enum_type


class Image(WriterStamped, Base):
    """A catalog entry; an environment may only use an image its workspace can see.

    A reference is unique within one namespace: the public catalog, or one workspace's private entries.
    Two workspaces may each hold the same private reference, and neither learns of the other's.
    """

    __tablename__ = "images"
    __table_args__ = (
        Index(
            "uq_images_public_reference",
            "registry_host",
            "repository",
            "tag",
            unique=True,
            postgresql_where=text("visibility = 'public'"),
        ),
        Index(
            "uq_images_owner_workspace_id_reference",
            "owner_workspace_id",
            "registry_host",
            "repository",
            "tag",
            unique=True,
            postgresql_where=text("visibility = 'private'"),
        ),
        CheckConstraint("visibility = 'public' OR owner_workspace_id IS NOT NULL", name="private_has_owner"),
        CheckConstraint("digest IS NULL OR digest ~ '^[a-z0-9]+:[a-f0-9]{32,}$'", name="digest_format"),
        CheckConstraint("coalesce(size_bytes, 0) >= 0", name="size_not_negative"),
    )

    id: Mapped[UuidPk]
    name: Mapped[str] = mapped_column(String(128), index=True)
    """Short catalog name users may write in a spec instead of the full reference."""
    registry_host: Mapped[str] = mapped_column(String(253))
    """Registry host, e.g. `harbor.example.org`."""
    repository: Mapped[str] = mapped_column(String(255))
    tag: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(80))
    framework: Mapped[str | None] = mapped_column(String(64))
    cuda_version: Mapped[str | None] = mapped_column(String(16))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    visibility: Mapped[ImageVisibility] = mapped_column(
        enum_type(ImageVisibility, "visibility"),
        default=ImageVisibility.PUBLIC,
        server_default=ImageVisibility.PUBLIC.value,
    )
    owner_workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="RESTRICT"), index=True
    )
    source: Mapped[str] = mapped_column(String(32), default="manual", server_default="manual")
    """Where the entry came from: `manual`, `harbor` or `oci`."""
    registry_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("registries.id", ondelete="SET NULL"), index=True
    )
    """The configured registry a sync took it from (NULL: added by hand, or its registry was removed)."""
    labels: Mapped[list[str]] = mapped_column(JSONB, default=list, server_default="[]")
    """Labels the registry gives the artifact (Harbor's labels)."""
    pushed_at: Mapped[dt.datetime | None]
    """When the artifact was last pushed, as the registry says."""
    synced_at: Mapped[dt.datetime | None]
    """The last sync that found it at its registry."""
    gone_at: Mapped[dt.datetime | None]
    """When a sync found it gone from its registry: environments using it keep running, new ones are
    refused. A later sync that finds it again clears it."""
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]
