"""What a platform admin may do to hosts and GPUs: cordon, uncordon, drain, set a host's public
address, and set a GPU's health.

Only platform admins act on the inventory (ForbiddenError for anyone else, before anything is looked
up); a host or GPU that does not exist is NotFoundError. Each action records who asked as an audit event
(kind `api`) beside the host's own event that `core.inventory.hosts` writes (kind `host`, which the
capacity audit replays), in the caller's transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection

from remotegpu.core.accounts.users import Principal
from remotegpu.core.environments.states import GpuHealth
from remotegpu.core.inventory import hosts
from remotegpu.core.inventory.addresses import parse_public_address
from remotegpu.core.inventory.views import get_gpu, get_host
from remotegpu.core.platform.events import record_mutation


def cordon(connection: Connection, principal: Principal, host_id: uuid.UUID, reason: str) -> Any:
    """No new placements on the host; what runs there keeps running. Returns the host as it now is."""
    get_host(connection, principal, host_id)
    hosts.cordon_host(connection, host_id, reason)
    record_mutation(connection, principal.user_id, "HostCordoned", reason or "cordoned", host_id=host_id)
    return get_host(connection, principal, host_id)


def uncordon(connection: Connection, principal: Principal, host_id: uuid.UUID) -> Any:
    """Allow placements on the host again (also ends a drain). Returns the host as it now is."""
    get_host(connection, principal, host_id)
    hosts.uncordon_host(connection, host_id)
    record_mutation(connection, principal.user_id, "HostUncordoned", "uncordoned", host_id=host_id)
    return get_host(connection, principal, host_id)


def drain(
    connection: Connection, principal: Principal, host_id: uuid.UUID, reason: str
) -> tuple[Any, list[uuid.UUID]]:
    """Cordon the host and ask every environment on it to stop: the host as it now is, and those
    environments."""
    get_host(connection, principal, host_id)
    stopping = hosts.drain_host(connection, host_id, reason)
    record_mutation(connection, principal.user_id, "HostDrained", reason or "drained", host_id=host_id)
    return get_host(connection, principal, host_id), stopping


def set_public_address(
    connection: Connection, principal: Principal, host_id: uuid.UUID, address: str | None
) -> Any:
    """Override the address users reach the host by (None clears it, so the node's own address
    counts again). InvalidInputError names `public_address` for anything but a hostname or IP literal.
    Returns the host as it now is."""
    get_host(connection, principal, host_id)
    parsed = parse_public_address(address)
    if hosts.set_public_address(connection, host_id, parsed):
        record_mutation(
            connection,
            principal.user_id,
            "HostAddressSet" if parsed else "HostAddressCleared",
            f"public address {parsed}" if parsed else "public address override cleared",
            host_id=host_id,
            data={"public_address": parsed},
        )
    return get_host(connection, principal, host_id)


def set_health(
    connection: Connection, principal: Principal, gpu_id: uuid.UUID, health: GpuHealth, reason: str
) -> Any:
    """Mark a GPU unhealthy (never allocated again until healthy) or healthy. Returns the GPU as it
    now is."""
    gpu = get_gpu(connection, principal, gpu_id)
    hosts.set_gpu_health(connection, gpu_id, health, reason)
    record_mutation(
        connection, principal.user_id, "GpuHealthSet", f"GPU {gpu.index} {health.value}", host_id=gpu.host_id
    )
    return get_gpu(connection, principal, gpu_id)
