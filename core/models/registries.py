"""Registries the catalog is synced from, and which of their repositories each workspace sees.

A registry row names the product (`oci` or `harbor`), where to reach it and the host its image
references name. Its credentials are not here: they live in the secrets store (`core.registry.credentials`).
Each `RegistryProject` maps a project (Harbor's, or a plain registry's first path segment) or a whole
repository path to one workspace, or to every workspace when `workspace_id` is NULL; repositories no
mapping covers are not synced.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.models.base import DNS_LABEL_SQL, Base, CreatedAt, Name, UpdatedAt, UuidPk


class Registry(Base):
    """A registry whose repositories become catalog images."""

    __tablename__ = "registries"
    __table_args__ = (
        CheckConstraint(f"name {DNS_LABEL_SQL}", name="name_dns_label"),
        CheckConstraint("kind IN ('oci', 'harbor')", name="kind_known"),
    )

    id: Mapped[UuidPk]
    name: Mapped[Name] = mapped_column(unique=True)
    """The admin's handle for it (`remotegpu registry add NAME`)."""
    kind: Mapped[str] = mapped_column(String(16))
    """`oci` (any OCI Distribution registry) or `harbor` (Harbor's API v2.0)."""
    url: Mapped[str] = mapped_column(String(512))
    """Base URL of its API, e.g. `https://harbor.example.org`."""
    host: Mapped[str] = mapped_column(String(253), unique=True)
    """host[:port] as image references name it (from `url` unless given)."""
    last_synced_at: Mapped[dt.datetime | None]
    """When a catalog sync last read it completely."""
    last_sync_error: Mapped[str | None] = mapped_column(Text)
    """Why the last sync failed (NULL after a complete one); never a credential."""
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class RegistryProject(Base):
    """A project or repository path of a registry, visible to one workspace or to all of them."""

    __tablename__ = "registry_projects"
    __table_args__ = (UniqueConstraint("registry_id", "path"),)

    id: Mapped[UuidPk]
    registry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("registries.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(255))
    """A project (`ml`) or a repository path (`ml/pytorch`); the longest path that covers a repository wins."""
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("workspaces.id", ondelete="RESTRICT"), index=True
    )
    """The workspace whose private catalog its images join; NULL: the public catalog."""
