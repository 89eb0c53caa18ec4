"""Environments as users read them: lists with filters, one environment in full, its events and access.

Each read is one query that joins the caller's membership, so an environment of another workspace is
indistinguishable from one that does not exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
from psycopg import AsyncConnection
from sqlalchemy import Connection, text

from remotegpu.core.accounts.users import Principal
from remotegpu.core.capacity.queue_places import PLACE_JOIN
from remotegpu.core.cluster.driver import NoContainerError
from remotegpu.core.environments.jupyter import read_jupyter_token
from remotegpu.core.environments.run_limits import RUN_STARTED_SQL
from remotegpu.core.environments.states import AccessKind, Phase, PortPurpose
from remotegpu.core.inventory.addresses import EFFECTIVE_ADDRESS_SQL, url_host
from remotegpu.core.platform.db import fetch_all, fetch_one
from remotegpu.core.platform.errors import NotFoundError
from remotegpu.core.platform.pagination import decode_cursor, page
from remotegpu.core.secrets.store import SecretStore
from remotegpu.policies.roles import may_operate_environment

_VISIBLE = (
    "(:admin OR EXISTS (SELECT 1 FROM workspace_members m"
    " WHERE m.workspace_id = e.workspace_id AND m.user_id = :user))"
)

_COLUMNS = """
    e.id, e.name, e.workspace_id, w.name AS workspace, e.user_id, u.username AS owner, e.spec, e.generation,
    e.observed_generation, e.desired_state, e.phase, e.reason, e.last_error, e.conditions, e.retry_count,
    e.next_attempt_at, qp.position AS queue_position, qp.reason AS queue_reason, h.name AS host, e.gpu_count, e.gpu_model,
    e.created_at, e.updated_at, e.phase_entered_at, e.image_digest, e.image_pinned_reference, e.image_pinned_at
"""

_FROM = """
      FROM environments e
      JOIN workspaces w ON w.id = e.workspace_id AND w.deleted_at IS NULL
      JOIN users u ON u.id = e.user_id
      LEFT JOIN hosts h ON h.id = e.host_id
"""


_LIST_SQL = text(
    f"SELECT {_COLUMNS} {_FROM} {PLACE_JOIN} WHERE e.deleted_at IS NULL AND {_VISIBLE}"
    " AND (CAST(:workspace AS uuid) IS NULL OR e.workspace_id = :workspace)"
    " AND (CAST(:phase AS text) IS NULL OR e.phase::text = :phase)"
    " AND (CAST(:name AS text) IS NULL OR e.name = :name)"
    " AND (CAST(:owner AS uuid) IS NULL OR e.user_id = :owner)"
    " AND (CAST(:after_at AS timestamptz) IS NULL"
    "      OR (e.created_at, e.id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid)))"
    " ORDER BY e.created_at DESC, e.id DESC LIMIT :limit"
)


_GET_SQL = text(
    f"SELECT {_COLUMNS},"
    " CASE WHEN :admin THEN 'owner' ELSE (SELECT m.role::text FROM workspace_members m"
    "   WHERE m.workspace_id = e.workspace_id AND m.user_id = :user) END AS caller_role,"
    " ARRAY(SELECT g.index FROM gpu_claims c JOIN gpus g ON g.id = c.gpu_id"
    "       WHERE c.environment_id = e.id AND c.released_at IS NULL ORDER BY g.index) AS gpu_indexes,"
    f" {RUN_STARTED_SQL} AS run_started_at, w.settings->>'spending_limit' AS spending_limit"
    f" {_FROM} {PLACE_JOIN} WHERE e.id = :id AND e.deleted_at IS NULL AND {_VISIBLE}"
)


@dataclass(frozen=True)
class EnvironmentFilter:
    """What `list_environments` narrows to; None means no filter."""

    workspace_id: uuid.UUID | None = None
    phase: Phase | None = None
    name: str | None = None
    owner_id: uuid.UUID | None = None


def _list_params(
    principal: Principal, filters: EnvironmentFilter, limit: int, cursor: str | None
) -> dict[str, Any]:
    after = decode_cursor(cursor, (datetime, uuid.UUID))
    return {
        "user": principal.user_id,
        "admin": principal.is_admin,
        "workspace": filters.workspace_id,
        "phase": filters.phase.value if filters.phase else None,
        "name": filters.name,
        "owner": filters.owner_id,
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
        "limit": limit + 1,
    }


def _page(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    return page(rows, limit, lambda row: (row.created_at.isoformat(), row.id))


def list_environments(
    connection: Connection,
    principal: Principal,
    filters: EnvironmentFilter,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """Visible live environments, newest first, one page and the next page's cursor."""
    rows = list(connection.execute(_LIST_SQL, _list_params(principal, filters, limit, cursor)))
    return _page(rows, limit)


async def list_environments_async(
    connection: AsyncConnection[Any],
    principal: Principal,
    filters: EnvironmentFilter,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """`list_environments` on the event loop."""
    return _page(
        await fetch_all(connection, _LIST_SQL, _list_params(principal, filters, limit, cursor)), limit
    )


def _found(row: Any, environment_id: uuid.UUID) -> Any:
    if row is None:
        raise NotFoundError(f"environment {environment_id} not found")
    return row


def get_environment(connection: Connection, principal: Principal, environment_id: uuid.UUID) -> Any:
    """One visible live environment with the caller's role, its claimed GPU indexes, when its current run
    started (`run_started_at`, for its max-duration deadline) and its workspace's `spending_limit`
    (None: no budget to read); else NotFoundError."""
    params = {"id": environment_id, "user": principal.user_id, "admin": principal.is_admin}
    return _found(connection.execute(_GET_SQL, params).one_or_none(), environment_id)


async def get_environment_async(
    connection: AsyncConnection[Any], principal: Principal, environment_id: uuid.UUID
) -> Any:
    """`get_environment` on the event loop."""
    params = {"id": environment_id, "user": principal.user_id, "admin": principal.is_admin}
    return _found(await fetch_one(connection, _GET_SQL, params), environment_id)


def list_events(
    connection: Connection, environment_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """The environment's events, oldest first (the caller has been checked)."""
    after = decode_cursor(cursor, (int,))
    rows = list(
        connection.execute(
            text(
                "SELECT seq, created_at, actor_kind, kind, reason, message FROM events"
                " WHERE environment_id = :id AND seq > :after ORDER BY seq LIMIT :limit"
            ),
            {"id": environment_id, "after": after[0] if after else 0, "limit": limit + 1},
        )
    )
    return page(rows, limit, lambda row: (row.seq,))


# Only in these phases can the pod run a container; in the others it has no pod or is about to get one.
_CONTAINER_PHASES = frozenset({Phase.PROVISIONING, Phase.RUNNING, Phase.STOPPING})

_NO_CONTAINER_HINTS = {
    Phase.PENDING: "it waits for GPUs",
    Phase.ADMITTED: "it waits for GPUs",
    Phase.SCHEDULED: "its container is about to be created; try again in a moment",
    Phase.STOPPED: "start it first",
    Phase.FAILED: "its events say why it failed; start it to try again",
}


def require_container(environment: Any) -> None:
    """Raise `NoContainerError` unless the environment is in a phase whose pod may run a container, so a
    log request is refused before anything streams (the cluster may still find no container)."""
    phase = Phase(str(environment.phase))
    if phase in _CONTAINER_PHASES:
        return
    hint = _NO_CONTAINER_HINTS.get(phase)
    raise NoContainerError(
        f"the environment has no running container (it is {phase.value}{'; ' + hint if hint else ''})"
    )


class AccessDetail(msgspec.Struct, frozen=True):
    """How to reach one published port of a running environment (also the API's answer, as is)."""

    kind: str
    name: str | None
    host: str
    port: int
    container_port: int
    url: str
    command: str | None


def environment_access(
    connection: Connection, principal: Principal, environment_id: uuid.UUID, secrets: SecretStore | None
) -> list[AccessDetail]:
    """How to reach a visible environment while it runs. Everyone who may see it sees its direct endpoints;
    only those who may operate it (its owner, the workspace's admins and owners, platform admins) get the
    SSH command and the Jupyter URL with its token. A gateway link goes to those the gateway lets in: the
    owner, and the workspace's admins and owners where `admin_keys_in_member_environments` is on."""
    environment = get_environment(connection, principal, environment_id)
    details = access_details(connection, environment)
    is_owner = environment.user_id == principal.user_id
    entitled = may_operate_environment(environment.caller_role, is_creator=is_owner)
    if not _may_open_gateway(connection, environment, is_owner):
        details = [detail for detail in details if detail.kind not in _GATEWAYS]
    if not entitled:
        return [msgspec.structs.replace(detail, command=None) for detail in details]
    if secrets is None or not any(detail.kind == PortPurpose.JUPYTER.value for detail in details):
        return details
    token = read_jupyter_token(secrets, environment.workspace_id, environment.id)
    return [_with_token(detail, token) for detail in details]


def _may_open_gateway(connection: Connection, environment: Any, is_owner: bool) -> bool:
    """The gateway grants the owner, and the workspace's admins and owners when the workspace says so
    (`core.gateways.targets`); the link is shown to exactly them."""
    if is_owner:
        return True
    if environment.caller_role not in ("admin", "owner"):
        return False
    return bool(
        connection.execute(
            text(
                "SELECT (settings ->> 'admin_keys_in_member_environments') = 'true' FROM workspaces WHERE id = :id"
            ),
            {"id": environment.workspace_id},
        ).scalar()
    )


def _with_token(detail: AccessDetail, token: str | None) -> AccessDetail:
    if detail.kind != PortPurpose.JUPYTER.value or token is None:
        return detail
    return msgspec.structs.replace(detail, url=f"{detail.url}?token={token}")


def access_details(connection: Connection, environment: Any) -> list[AccessDetail]:
    """Endpoints of a running environment, from its active port mappings (none unless it runs)."""
    if environment.phase != Phase.RUNNING.value:
        return []
    rows = connection.execute(
        text(
            "SELECT p.purpose, p.name, p.host_port, p.container_port, p.protocol,"
            f" {EFFECTIVE_ADDRESS_SQL} AS host"
            " FROM port_mappings p JOIN hosts h ON h.id = p.host_id"
            " WHERE p.environment_id = :id AND p.released_at IS NULL ORDER BY p.container_port"
        ),
        {"id": environment.id},
    )
    return [_detail(row) for row in rows] + _gateway_details(connection, environment.id)


_GATEWAYS = frozenset({AccessKind.GUACAMOLE.value, AccessKind.JUMPSERVER.value})
_GATEWAY_ENDPOINTS_SQL = text(
    "SELECT x.kind, x.url, p.container_port FROM access_endpoints x"
    " LEFT JOIN port_mappings p ON p.environment_id = x.environment_id AND p.released_at IS NULL"
    f" AND p.purpose = '{PortPurpose.SSH}'"
    " WHERE x.environment_id = :id AND x.removed_at IS NULL ORDER BY x.kind"
)


def _gateway_details(connection: Connection, environment_id: uuid.UUID) -> list[AccessDetail]:
    """The environment's gateway connections: the gateway's address, and the container port it reaches."""
    details = []
    for row in connection.execute(_GATEWAY_ENDPOINTS_SQL, {"id": environment_id}):
        if row.kind not in _GATEWAYS:
            continue
        where = urlsplit(row.url)
        port = where.port or (443 if where.scheme == "https" else 80)
        details.append(
            AccessDetail(row.kind, "ssh", where.hostname or "", port, row.container_port or 22, row.url, None)
        )
    return details


def _detail(row: Any) -> AccessDetail:
    # `row.host` is the host's effective address (admin override > node's own > node name)
    host, port = url_host(row.host), row.host_port
    if row.purpose == PortPurpose.SSH.value:
        return AccessDetail(
            "ssh",
            row.name,
            row.host,
            port,
            row.container_port,
            f"ssh://root@{host}:{port}",
            f"ssh -p {port} root@{row.host}",  # ssh takes an IPv6 literal bare, URLs bracket it
        )
    scheme = "http" if row.protocol == "tcp" else row.protocol
    return AccessDetail(
        row.purpose, row.name, row.host, port, row.container_port, f"{scheme}://{host}:{port}/", None
    )
