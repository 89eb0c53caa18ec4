"""Workspaces as their members see them: creating, finding, renaming, and managing members and roles.

Every lookup goes through `workspace_access`, which answers NotFoundError both when the workspace does
not exist and when the caller is not a member: a user cannot probe other teams' names or ids. Platform
administrators are treated as owners everywhere.

Every change to a workspace's members, and its deletion, first takes the workspace's members lock
(`LockNamespace.WORKSPACE_MEMBERS`, the first in the global lock order) and then re-reads the caller's
role under it. So these changes run one after another per workspace: no two lock member rows in
opposite orders (two owners demoting themselves at once used to deadlock), the last-owner check counts
every change committed before it (Read Committed: each statement sees the latest commits), and a caller
demoted or removed a moment earlier acts with the role they have now. Member answers never carry
e-mail addresses: a member sees the others' usernames, not how to reach them outside the platform.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from remotegpu.core.accounts.users import Principal, find_user_id
from remotegpu.core.accounts.workspaces import delete_workspace
from remotegpu.core.environments.states import WorkspaceRole
from remotegpu.core.platform.db import fetch_one
from remotegpu.core.platform.errors import ConflictError, ForbiddenError, NotFoundError
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock
from remotegpu.core.platform.pagination import decode_cursor, page
from remotegpu.policies.roles import MINIMUM_ROLE, Action, allows, may_assign_role


@dataclass(frozen=True)
class WorkspaceAccess:
    """A workspace and the caller's role in it."""

    id: uuid.UUID
    name: str
    role: WorkspaceRole

    def require(self, action: Action) -> None:
        """Raise ForbiddenError unless the caller's role allows `action`."""
        if not allows(self.role.value, action):
            needed = MINIMUM_ROLE[action]
            raise ForbiddenError(
                f"your role in workspace {self.name!r} is {self.role.value}; {action.value.replace('_', ' ')}"
                f" needs the role {needed} or higher (ask a workspace {needed})"
            )


_ACCESS_SQL = text(
    """
    SELECT w.id, w.name, m.role
      FROM workspaces w
      LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = :user
     WHERE w.deleted_at IS NULL AND (w.id = :id OR (CAST(:id AS uuid) IS NULL AND w.name = :name))
    """
)


def workspace_access(
    connection: Connection, principal: Principal, reference: uuid.UUID | str
) -> WorkspaceAccess:
    """The caller's view of a workspace named by id or name; NotFoundError if it is not theirs to see."""
    row = connection.execute(_ACCESS_SQL, _access_params(principal, reference)).one_or_none()
    return _access(row, principal, reference)


async def workspace_access_async(
    connection: AsyncConnection[Any], principal: Principal, reference: uuid.UUID | str
) -> WorkspaceAccess:
    """`workspace_access` on the event loop."""
    row = await fetch_one(connection, _ACCESS_SQL, _access_params(principal, reference))
    return _access(row, principal, reference)


def _access_params(principal: Principal, reference: uuid.UUID | str) -> dict[str, Any]:
    as_id = reference if isinstance(reference, uuid.UUID) else _as_uuid(reference)
    return {"user": principal.user_id, "id": as_id, "name": str(reference)}


def _access(row: Any, principal: Principal, reference: uuid.UUID | str) -> WorkspaceAccess:
    if row is None or (row.role is None and not principal.is_admin):
        raise NotFoundError(f"workspace {reference!s} not found")
    role = WorkspaceRole(row.role) if row.role and not principal.is_admin else WorkspaceRole.OWNER
    return WorkspaceAccess(row.id, row.name, role)


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


_WORKSPACE_COLUMNS = "w.id, w.name, w.display_name, w.owner_id, w.created_at, w.updated_at"


def create_workspace(connection: Connection, principal: Principal, name: str, display_name: str) -> Any:
    """Create a workspace owned by the caller (who becomes its first owner member)."""
    # No savepoint: a refused INSERT aborts the transaction, which the raise below ends anyway.
    try:
        row = connection.execute(
            text(
                "INSERT INTO workspaces AS w (name, display_name, owner_id) VALUES (:name, :display, :owner)"
                f" RETURNING {_WORKSPACE_COLUMNS}"
            ),
            {"name": name, "display": display_name, "owner": principal.user_id},
        ).one()
    except IntegrityError:
        raise ConflictError(
            f"workspace {name!r} already exists; choose another name (if it is yours, make it the default with"
            f" `remotegpu workspaces use {name}`)",
            "$.name",
        ) from None
    connection.execute(
        text("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (:w, :u, 'owner')"),
        {"w": row.id, "u": principal.user_id},
    )
    record_mutation(
        connection, principal.user_id, "WorkspaceCreated", f"workspace {name} created", workspace_id=row.id
    )
    return row


def list_workspaces(
    connection: Connection, principal: Principal, *, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """The caller's workspaces (every live one for administrators), by name, with the caller's role:
    one page and the next page's cursor."""
    after = decode_cursor(cursor, (str,))
    rows = list(
        connection.execute(
            text(
                f"SELECT {_WORKSPACE_COLUMNS}, CASE WHEN :admin THEN 'owner' ELSE m.role::text END AS role"
                " FROM workspaces w LEFT JOIN workspace_members m ON m.workspace_id = w.id AND m.user_id = :user"
                " WHERE w.deleted_at IS NULL AND (:admin OR m.user_id IS NOT NULL)"
                " AND (CAST(:after AS text) IS NULL OR w.name > :after) ORDER BY w.name LIMIT :limit"
            ),
            {
                "user": principal.user_id,
                "admin": principal.is_admin,
                "after": after[0] if after else None,
                "limit": limit + 1,
            },
        )
    )
    return page(rows, limit, lambda row: (row.name,))


def get_workspace(connection: Connection, access: WorkspaceAccess) -> Any:
    """The workspace's fields (the caller has already been checked)."""
    return connection.execute(
        text(f"SELECT {_WORKSPACE_COLUMNS} FROM workspaces w WHERE w.id = :id"), {"id": access.id}
    ).one()


def update_workspace(
    connection: Connection, principal: Principal, access: WorkspaceAccess, display_name: str
) -> Any:
    """Change the display name (admins and owners, as they are under the members lock)."""
    access = _lock_members(connection, principal, access)
    access.require(Action.UPDATE_WORKSPACE)
    row = connection.execute(
        text(
            "UPDATE workspaces w SET display_name = :display, updated_at = now() WHERE w.id = :id"
            f" RETURNING {_WORKSPACE_COLUMNS}"
        ),
        {"id": access.id, "display": display_name},
    ).one()
    record_mutation(
        connection, principal.user_id, "WorkspaceUpdated", "display name changed", workspace_id=access.id
    )
    return row


def remove_workspace(
    connection: Connection, principal: Principal, access: WorkspaceAccess
) -> list[uuid.UUID]:
    """Soft-delete the workspace (owners, as they are under the members lock): its environments are
    stopped and deleted, history kept."""
    access = _lock_members(connection, principal, access)
    access.require(Action.DELETE_WORKSPACE)
    environments = delete_workspace(connection, access.id, actor=principal.user_id)
    record_mutation(
        connection,
        principal.user_id,
        "WorkspaceDeleted",
        f"workspace {access.name} deleted; {len(environments)} environments asked to go",
        workspace_id=access.id,
    )
    return environments


# No e-mail: members see each other's usernames only (see the module docstring).
_MEMBER_COLUMNS = "m.user_id, u.username, m.role, m.created_at"


def list_members(connection: Connection, access: WorkspaceAccess) -> list[Any]:
    """Members with their roles, by username."""
    return list(
        connection.execute(
            text(
                f"SELECT {_MEMBER_COLUMNS} FROM workspace_members m JOIN users u ON u.id = m.user_id"
                " WHERE m.workspace_id = :w ORDER BY u.username"
            ),
            {"w": access.id},
        )
    )


def _lock_members(connection: Connection, principal: Principal, access: WorkspaceAccess) -> WorkspaceAccess:
    """Take the workspace's members lock for the transaction and return the caller's access as it is
    now: NotFoundError if the workspace was deleted or the caller removed meanwhile."""
    xact_lock(connection, lock_key(LockNamespace.WORKSPACE_MEMBERS, access.id))
    return workspace_access(connection, principal, access.id)


def _member_role(connection: Connection, workspace_id: uuid.UUID, user_id: uuid.UUID) -> str | None:
    role = connection.execute(
        text("SELECT role FROM workspace_members WHERE workspace_id = :w AND user_id = :u"),
        {"w": workspace_id, "u": user_id},
    ).scalar()
    return None if role is None else str(role)


def _check_assignment(access: WorkspaceAccess, current: str | None, new: str | None) -> None:
    if not may_assign_role(access.role.value, current, new):
        raise ForbiddenError(
            f"your role in workspace {access.name!r} is {access.role.value}; only owners manage owners,"
            " and admins manage the other members"
        )


def _refuse_losing_last_owner(connection: Connection, workspace_id: uuid.UUID, current: str | None) -> None:
    if current != WorkspaceRole.OWNER.value:
        return
    # Under the members lock, so two owners leaving at once cannot both pass this check.
    owners = connection.execute(
        text("SELECT count(*) FROM workspace_members WHERE workspace_id = :w AND role = 'owner'"),
        {"w": workspace_id},
    ).scalar_one()
    if owners <= 1:
        raise ConflictError("a workspace needs at least one owner; make someone else owner first")


def add_member(
    connection: Connection, principal: Principal, access: WorkspaceAccess, user: str, role: WorkspaceRole
) -> Any:
    """Add a user (by id, e-mail or username) with `role`; an existing member is a conflict."""
    access = _lock_members(connection, principal, access)
    user_id = find_user_id(connection, user)
    current = _member_role(connection, access.id, user_id)
    _check_assignment(access, current, role.value)
    if current is not None:
        raise ConflictError(
            f"user {user!r} is already a member ({current}); change their role instead", "$.user"
        )
    connection.execute(
        text(
            "INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (:w, :u, :role)"
            " ON CONFLICT (workspace_id, user_id) DO NOTHING"
        ),
        {"w": access.id, "u": user_id, "role": role.value},
    )
    record_mutation(
        connection,
        principal.user_id,
        "MemberAdded",
        f"{user} added as {role.value}",
        workspace_id=access.id,
        data={"user_id": str(user_id), "role": role.value},
    )
    return _member(connection, access.id, user_id)


def set_member_role(
    connection: Connection,
    principal: Principal,
    access: WorkspaceAccess,
    user_id: uuid.UUID,
    role: WorkspaceRole,
) -> Any:
    """Change a member's role; the last owner cannot be demoted."""
    access = _lock_members(connection, principal, access)
    current = _member_role(connection, access.id, user_id)
    if current is None:
        raise NotFoundError(f"user {user_id} is not a member of workspace {access.name!r}")
    _check_assignment(access, current, role.value)
    if role.value != current:
        _refuse_losing_last_owner(connection, access.id, current)
    connection.execute(
        text("UPDATE workspace_members SET role = :role WHERE workspace_id = :w AND user_id = :u"),
        {"w": access.id, "u": user_id, "role": role.value},
    )
    record_mutation(
        connection,
        principal.user_id,
        "MemberRoleChanged",
        f"role {current} → {role.value}",
        workspace_id=access.id,
        data={"user_id": str(user_id), "role": role.value},
    )
    return _member(connection, access.id, user_id)


def remove_member(
    connection: Connection, principal: Principal, access: WorkspaceAccess, user_id: uuid.UUID
) -> None:
    """Remove a member (anyone may leave; removing others needs admin, owners need an owner)."""
    access = _lock_members(connection, principal, access)
    current = _member_role(connection, access.id, user_id)
    if current is None:
        raise NotFoundError(f"user {user_id} is not a member of workspace {access.name!r}")
    if user_id != principal.user_id:
        _check_assignment(access, current, None)
    _refuse_losing_last_owner(connection, access.id, current)
    connection.execute(
        text("DELETE FROM workspace_members WHERE workspace_id = :w AND user_id = :u"),
        {"w": access.id, "u": user_id},
    )
    record_mutation(
        connection,
        principal.user_id,
        "MemberRemoved",
        f"member removed ({current})",
        workspace_id=access.id,
        data={"user_id": str(user_id)},
    )


def _member(connection: Connection, workspace_id: uuid.UUID, user_id: uuid.UUID) -> Any:
    return connection.execute(
        text(
            f"SELECT {_MEMBER_COLUMNS} FROM workspace_members m"
            " JOIN users u ON u.id = m.user_id WHERE m.workspace_id = :w AND m.user_id = :u"
        ),
        {"w": workspace_id, "u": user_id},
    ).one()
