"""Declarative base, naming convention and the column types every model shares.

The naming convention makes every constraint name deterministic, so migrations can name what they drop
and `alembic check` finds no difference between the models and a migrated database.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Annotated, Any

from sqlalchemy import BigInteger, DateTime, Enum, MetaData, SmallInteger, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class of every RemoteGPU table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        list[dict[str, Any]]: JSONB,
    }


def enum_type(enum_cls: type[enum.StrEnum], name: str) -> Enum:
    """A VARCHAR column holding `enum_cls` values, with a CHECK constraint named `name`."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(member.value) for member in enum_cls) + 8,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


UuidPk = Annotated[
    uuid.UUID,
    mapped_column(primary_key=True, default=uuid.uuid4, server_default=func.gen_random_uuid()),
]
CreatedAt = Annotated[dt.datetime, mapped_column(server_default=func.now())]
UpdatedAt = Annotated[dt.datetime, mapped_column(server_default=func.now(), onupdate=func.now())]
Name = Annotated[str, mapped_column(String(63))]
GpuModel = Annotated[str, mapped_column(String(64))]
Bytes = Annotated[int, mapped_column(BigInteger)]
Millis = Annotated[int, mapped_column(BigInteger)]

DNS_LABEL_SQL = "~ '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'"
"""SQL suffix checking a column holds a DNS-1123 label (names that become Kubernetes object names)."""


class WriterStamped:
    """Which reconciler leader (shard and fencing epoch) last wrote the row, and when: the evidence of
    the fenced-write audit (`core.platform.fencing_audit`).

    The `stamp_writer` trigger fills these from the session setting `remotegpu.writer` ("shard:epoch"),
    which only a reconciler's connections carry (`reconciler.writer_stamp`); a row the API writes keeps
    the stamp it had, so code never sets these columns itself.
    """

    writer_shard: Mapped[int | None] = mapped_column(SmallInteger)
    writer_epoch: Mapped[int | None] = mapped_column(BigInteger)
    written_at: Mapped[dt.datetime | None]
