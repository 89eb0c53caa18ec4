"""Who may read and change quotas: a user reads their own, a workspace's members read the workspace's,
and platform admins read and set anyone's.

A user id the caller may not look at reads as one that does not exist (NotFoundError), as a workspace
does to non-members. Setting a quota records its event in `set_quota`, in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from remotegpu.core.accounts.membership import workspace_access
from remotegpu.core.accounts.users import Principal
from remotegpu.core.capacity.quotas import QuotaLimits, read_quota, set_quota
from remotegpu.core.platform.errors import InvalidInputError, NotFoundError
from remotegpu.core.platform.quantities import parse_bytes, parse_cpu_millis
from remotegpu.policies.admission import QuotaState


@dataclass(frozen=True)
class RequestedLimits:
    """New limits as a caller writes them (None: unlimited): CPU and sizes in Kubernetes notation, parsed
    only once the caller may set them, so a non-admin learns nothing from a malformed value."""

    gpus: int | None = None
    gpus_by_model: Mapping[str, int | None] = field(default_factory=dict)
    cpu: str | int | None = None
    memory: str | None = None
    storage: str | None = None
    running_environments: int | None = None

    def parsed(self) -> QuotaLimits:
        """The limits in base units; InvalidInputError names the field (`$.cpu`) that does not parse."""
        return QuotaLimits(
            max_gpus=self.gpus,
            max_cpu_millis=_parsed("cpu", parse_cpu_millis, self.cpu),
            max_memory_bytes=_parsed("memory", parse_bytes, self.memory),
            max_storage_bytes=_parsed("storage", parse_bytes, self.storage),
            max_running_environments=self.running_environments,
            max_gpus_by_model=dict(self.gpus_by_model),
        )


def _parsed(name: str, parse: Callable[[str | int], int], value: str | int | None) -> int | None:
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as error:
        raise InvalidInputError(f"$.{name}", str(error)) from None


def user_quota(connection: Connection, principal: Principal, user_id: uuid.UUID) -> QuotaState:
    """A user's limits and usage: the caller's own, or anyone's for platform admins."""
    _require_visible_user(connection, principal, user_id)
    return read_quota(connection, "user", user_id)


def workspace_quota(connection: Connection, principal: Principal, workspace_id: uuid.UUID) -> QuotaState:
    """A workspace's limits and usage, for its members and platform admins."""
    access = workspace_access(connection, principal, workspace_id)
    return read_quota(connection, "workspace", access.id)


def set_user_quota(
    connection: Connection, principal: Principal, user_id: uuid.UUID, limits: RequestedLimits
) -> QuotaState:
    """Replace a user's limits (platform admins); returns the quota as it now is."""
    principal.require_admin()
    _require_visible_user(connection, principal, user_id)
    set_quota(connection, "user", user_id, limits.parsed(), actor_user_id=principal.user_id)
    return read_quota(connection, "user", user_id)


def set_workspace_quota(
    connection: Connection, principal: Principal, workspace_id: uuid.UUID, limits: RequestedLimits
) -> QuotaState:
    """Replace a workspace's limits (platform admins); returns the quota as it now is."""
    principal.require_admin()
    access = workspace_access(connection, principal, workspace_id)
    set_quota(connection, "workspace", access.id, limits.parsed(), actor_user_id=principal.user_id)
    return read_quota(connection, "workspace", access.id)


def _require_visible_user(connection: Connection, principal: Principal, user_id: uuid.UUID) -> None:
    if principal.user_id == user_id:
        return
    exists = (
        principal.is_admin
        and connection.execute(text("SELECT 1 FROM users WHERE id = :id"), {"id": user_id}).scalar()
    )
    if not exists:
        raise NotFoundError(f"user {user_id} not found")
