"""Which gateway an environment uses and what it needs to know: read in one short query.

The gateway is the workspace's choice (its `gateway` setting) where the deployment lets workspaces
choose, else the deployment's `gateway` setting. Who may use the connection follows the same rule as who
may log in with a key (`core.accounts.ssh_keys.AUTHORIZED_KEYS_SQL`): the owner, and the workspace's admins
and owners where its `admin_keys_in_member_environments` setting is on; disabled users never.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, text

from remotegpu.core.environments.states import AccessKind
from remotegpu.core.gateways.gateway import GatewayUser
from remotegpu.core.inventory.addresses import EFFECTIVE_ADDRESS_SQL
from remotegpu.core.platform.settings import Settings

_PLAN_SQL = text(
    f"""
    SELECT w.settings ->> 'gateway' AS workspace_gateway, {EFFECTIVE_ADDRESS_SQL} AS address,
           coalesce((SELECT json_agg(json_build_array(u.username, u.email) ORDER BY u.username)
                       FROM users u
                      WHERE NOT u.disabled
                        AND (u.id = e.user_id
                             OR (u.id IN (SELECT m.user_id FROM workspace_members m
                                           WHERE m.workspace_id = e.workspace_id AND m.role IN ('admin', 'owner'))
                                 AND (w.settings ->> 'admin_keys_in_member_environments') = 'true'))),
                    '[]') AS users
      FROM environments e
      JOIN workspaces w ON w.id = e.workspace_id
      LEFT JOIN allocations a ON a.environment_id = e.id AND a.released_at IS NULL
      LEFT JOIN hosts h ON h.id = a.host_id
     WHERE e.id = :id
    """
)


@dataclass(frozen=True)
class GatewayPlan:
    """The gateway an environment's SSH is published through, with who may use it and where sshd is."""

    kind: AccessKind
    address: str
    users: tuple[GatewayUser, ...]


def chosen_gateway(settings: Settings, workspace_choice: str | None) -> AccessKind | None:
    """The gateway for a workspace (None: direct); a choice the deployment no longer offers falls back to
    the deployment's own."""
    choice: str = settings.gateway
    if settings.workspace_gateways and workspace_choice in settings.configured_gateways():
        choice = str(workspace_choice)
    return None if choice == "direct" else AccessKind(choice)


def gateway_plan(connection: Connection, settings: Settings, environment_id: uuid.UUID) -> GatewayPlan | None:
    """The gateway plan of a placed environment; None when it uses direct access only."""
    row = connection.execute(_PLAN_SQL, {"id": environment_id}).first()
    if row is None or row.address is None:
        return None
    kind = chosen_gateway(settings, row.workspace_gateway)
    if kind is None:
        return None
    users = tuple(GatewayUser(username, email, username) for username, email in row.users)
    return GatewayPlan(kind, row.address, users)
