"""Who may do what inside a workspace: one table from role to allowed actions.

Roles are ordered owner > admin > member > viewer and each has every right of the roles below it.
Members manage the environments they created; admins and owners manage everyone's. Platform
administrators act as owners of every workspace (the caller decides that; this table knows only
workspace roles). Being a member at all is the right to know the workspace exists: the API answers 404,
not 403, to non-members.
"""

from __future__ import annotations

import enum

ROLE_RANK = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}


class Action(enum.StrEnum):
    """Things a workspace member may be allowed to do."""

    READ = "read"
    """See the workspace, its members, environments, events, logs, quotas and images."""
    CREATE_ENVIRONMENT = "create_environment"
    OPERATE_OWN_ENVIRONMENT = "operate_own_environment"
    """Change, start, stop, restart, delete an environment one created, and read its access details."""
    OPERATE_ANY_ENVIRONMENT = "operate_any_environment"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_IMAGES = "manage_images"
    READ_BILLING = "read_billing"
    UPDATE_WORKSPACE = "update_workspace"
    SET_SPENDING_LIMIT = "set_spending_limit"
    """Set or clear the workspace's spending limit (owners; platform admins act as owners)."""
    DELETE_WORKSPACE = "delete_workspace"
    GRANT_OWNER = "grant_owner"


MINIMUM_ROLE = {
    Action.READ: "viewer",
    Action.CREATE_ENVIRONMENT: "member",
    Action.OPERATE_OWN_ENVIRONMENT: "member",
    Action.OPERATE_ANY_ENVIRONMENT: "admin",
    Action.MANAGE_MEMBERS: "admin",
    Action.MANAGE_IMAGES: "admin",
    Action.READ_BILLING: "admin",
    Action.UPDATE_WORKSPACE: "admin",
    Action.SET_SPENDING_LIMIT: "owner",
    Action.DELETE_WORKSPACE: "owner",
    Action.GRANT_OWNER: "owner",
}


def allows(role: str, action: Action) -> bool:
    """Whether `role` (owner, admin, member or viewer) may do `action`."""
    return ROLE_RANK[role] >= ROLE_RANK[MINIMUM_ROLE[action]]


def may_operate_environment(role: str, *, is_creator: bool) -> bool:
    """Whether a member with `role` may change or control an environment (their own, or anyone's)."""
    if allows(role, Action.OPERATE_ANY_ENVIRONMENT):
        return True
    return is_creator and allows(role, Action.OPERATE_OWN_ENVIRONMENT)


def may_assign_role(actor_role: str, target_current: str | None, target_new: str | None) -> bool:
    """Whether `actor_role` may move a member from `target_current` to `target_new` (None: not a member).

    Admins manage members below owner; only owners create, demote or remove owners.
    """
    if not allows(actor_role, Action.MANAGE_MEMBERS):
        return False
    touches_owner = "owner" in (target_current, target_new)
    return allows(actor_role, Action.GRANT_OWNER) or not touches_owner
