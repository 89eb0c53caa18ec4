"""Membership writes act with the caller's role as it is under the members lock, not as it was read
before: an owner demoted or removed a moment earlier, by another transaction, can no longer act."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text

from remotegpu.core.accounts.membership import (
    add_member,
    create_workspace,
    remove_member,
    remove_workspace,
    set_member_role,
    update_workspace,
    workspace_access,
)
from remotegpu.core.accounts.users import Principal
from remotegpu.core.environments.states import UserRole, WorkspaceRole
from remotegpu.core.platform.errors import ForbiddenError, NotFoundError
from remotegpu.tests.allocation_world import make_user


def _users_and_workspace(db: Engine) -> tuple[dict[str, Principal], uuid.UUID]:
    """alice and bob own `research`; carol is a member; dave is not in it."""
    with db.begin() as connection:
        users = {
            name: Principal(make_user(connection, name), name, f"{name}@example.org", UserRole.USER)
            for name in ("alice", "bob", "carol", "dave")
        }
        workspace = create_workspace(connection, users["alice"], "research", "").id
        access = workspace_access(connection, users["alice"], workspace)
        add_member(connection, users["alice"], access, "bob", WorkspaceRole.OWNER)
        add_member(connection, users["alice"], access, "carol", WorkspaceRole.MEMBER)
    return users, workspace


def _roles(db: Engine, workspace: uuid.UUID) -> dict[str, str]:
    with db.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT u.username, m.role FROM workspace_members m JOIN users u ON u.id = m.user_id"
                " WHERE m.workspace_id = :w"
            ),
            {"w": workspace},
        )
        return {row.username: str(row.role) for row in rows}


Attempt = Callable[[Any, Principal, Any, dict[str, Principal]], object]

ATTEMPTS: dict[str, Attempt] = {
    "promote a member": lambda c, p, a, u: set_member_role(c, p, a, u["carol"].user_id, WorkspaceRole.ADMIN),
    "demote the other owner": lambda c, p, a, u: set_member_role(
        c, p, a, u["bob"].user_id, WorkspaceRole.MEMBER
    ),
    "remove the other owner": lambda c, p, a, u: remove_member(c, p, a, u["bob"].user_id),
    "add a user": lambda c, p, a, u: add_member(c, p, a, "dave", WorkspaceRole.VIEWER),
    "rename the workspace": lambda c, p, a, u: update_workspace(c, p, a, "Hijacked"),
    "delete the workspace": lambda c, p, a, u: remove_workspace(c, p, a),
}


@pytest.mark.parametrize(
    ("change", "refusal"),
    [("demoted to viewer", ForbiddenError), ("removed", NotFoundError)],
)
def test_an_owner_changed_a_moment_earlier_cannot_act(
    db: Engine, change: str, refusal: type[Exception]
) -> None:
    users, workspace = _users_and_workspace(db)
    before = _roles(db, workspace)
    with db.connect() as stale:
        stale.begin()
        # alice's request has read her role (owner) before any lock…
        access = workspace_access(stale, users["alice"], workspace)
        assert access.role is WorkspaceRole.OWNER
        # …when bob's request, committed first, takes it away.
        with db.begin() as other:
            bob = workspace_access(other, users["bob"], workspace)
            if change == "removed":
                remove_member(other, users["bob"], bob, users["alice"].user_id)
            else:
                set_member_role(other, users["bob"], bob, users["alice"].user_id, WorkspaceRole.VIEWER)
        for attempt in ATTEMPTS.values():  # refusals raise before writing: the transaction stays usable
            with pytest.raises(refusal):
                attempt(stale, users["alice"], access, users)
        stale.commit()
    expected = {name: role for name, role in before.items() if name != "alice"}
    if change != "removed":
        expected["alice"] = "viewer"
    assert _roles(db, workspace) == expected
    with db.connect() as connection:
        assert connection.execute(
            text("SELECT display_name, deleted_at FROM workspaces WHERE id = :w"), {"w": workspace}
        ).one() == ("", None)
