"""Datasets; `core.datasets.control` is the only writer of these rows."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from remotegpu.core.datasets.states import DatasetSource, DatasetStatus, StorageKind
from remotegpu.core.models.base import DNS_LABEL_SQL, Base, CreatedAt, Name, UpdatedAt, UuidPk, enum_type


class Dataset(Base):
    """Named data of one workspace: its source, where its bytes are, what the client declared and how far
    the upload got. Its declared size counts against the workspace's storage quota from creation until
    the row is deleted (the charge and the row go together, so it is given back exactly once)."""

    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint(f"name {DNS_LABEL_SQL}", name="name_dns_label"),
        CheckConstraint(
            "size_bytes >= 0 AND received_bytes >= 0 AND received_bytes <= size_bytes", name="sizes"
        ),
    )

    id: Mapped[UuidPk]
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[Name]
    """DNS label, unique in the workspace: what specs name under `datasets:`."""
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    source: Mapped[DatasetSource] = mapped_column(enum_type(DatasetSource, "source"))
    storage: Mapped[StorageKind | None] = mapped_column(enum_type(StorageKind, "storage"))
    """The backend holding an uploaded dataset's bytes (NULL for S3-URL and volume sources)."""
    source_url: Mapped[str | None] = mapped_column(Text)
    """`s3://bucket/prefix` of an S3 source."""
    volume: Mapped[str | None] = mapped_column(String(253))
    """The PersistentVolumeClaim of a volume source."""
    file_name: Mapped[str | None] = mapped_column(String(255))
    """An upload's file name: the file environments see under the dataset's mount."""
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    """Declared by the client (upload, volume) or listed at creation (S3 source); the quota charge."""
    checksum: Mapped[str | None] = mapped_column(String(80))
    """`sha256:<hex>` the client declared for an upload (the content must match it to be ready)."""
    status: Mapped[DatasetStatus] = mapped_column(enum_type(DatasetStatus, "status"))
    reason: Mapped[str | None] = mapped_column(Text)
    """Why it failed, in words the user can act on."""
    retryable: Mapped[bool] = mapped_column(default=False, server_default="false")
    received_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """How much of a local upload arrived, in order: the offset a resumed upload continues from."""
    upload_id: Mapped[str | None] = mapped_column(Text)
    """The S3 multipart upload in progress."""
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]
    ready_at: Mapped[dt.datetime | None]


class HomeVolume(Base):
    """One user's persistent home in one workspace (`/home/<user>` in each of their environments there),
    made when their first environment is provisioned while the workspace has home volumes on. It
    outlives environments; its storage is metered from its creation (a meter with no environment)."""

    __tablename__ = "home_volumes"
    __table_args__ = (UniqueConstraint("workspace_id", "user_id"),)

    id: Mapped[UuidPk]
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="RESTRICT"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    """The size it was made with (the workspace's `home_volume_size` then)."""
    created_at: Mapped[CreatedAt]
