"""Hosts and GPUs, for platform admins: inventory, cordon, drain, public address, GPU health."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Router, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.environments.states import GpuHealth
from remotegpu.core.inventory import control
from remotegpu.core.inventory.views import get_host, list_gpus, list_hosts
from remotegpu.core.platform.pagination import MAX_PAGE_SIZE

Reason = Annotated[str, msgspec.Meta(max_length=500)]


class HostOut(msgspec.Struct):
    """A GPU node: capacity, what is claimed, and its cordon and health."""

    id: uuid.UUID
    name: str
    address: str
    """The address users reach the host by (SSH commands and URLs use it): `public_address` when set,
    else what the node reports (its annotation, ExternalIP, InternalIP), else the node name."""
    observed_address: str | None
    """What the node reports, before any admin override."""
    address_source: str | None
    """Where `observed_address` came from: `annotation`, `ExternalIP`, `InternalIP` or `Hostname`."""
    public_address: str | None
    """The admin's override, if any."""
    health: str
    cordoned: bool
    draining: bool
    cordon_reason: str | None
    last_heartbeat_at: dt.datetime | None
    gpu_models: str | None
    gpus_total: int
    gpus_claimed: int
    gpus_free: int
    cpu_millis_allocatable: int
    cpu_millis_claimed: int
    memory_bytes_allocatable: int
    memory_bytes_claimed: int
    ports_claimed: int
    labels: dict[str, Any]


class HostList(msgspec.Struct):
    """A page of hosts."""

    items: list[HostOut]
    next_cursor: str | None = None


class GpuOut(msgspec.Struct):
    """One GPU and who holds it."""

    id: uuid.UUID
    host_id: uuid.UUID
    host: str
    index: int
    model: str
    health: str
    device_uuid: str | None
    memory_bytes: int | None
    health_reason: str | None
    foreign_use: bool
    environment_id: uuid.UUID | None


class CordonIn(msgspec.Struct, forbid_unknown_fields=True):
    """Why (shown to admins and in events)."""

    reason: Reason = ""


class HostUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Fields of a host an admin may change; a field left out stays as it is."""

    public_address: Annotated[str, msgspec.Meta(max_length=253)] | msgspec.UnsetType | None = msgspec.UNSET
    """The address users reach the host by (a hostname or an IPv4/IPv6 address); null clears it."""


class GpuHealthIn(msgspec.Struct, forbid_unknown_fields=True):
    """A GPU's new health."""

    health: GpuHealth
    reason: Reason = ""


class DrainOut(msgspec.Struct):
    """The host after the drain, and the environments asked to stop."""

    host: HostOut
    stopping: list[uuid.UUID]


def host_out(row: Any) -> HostOut:
    """A host row as the API shows it."""
    return HostOut(
        row.id,
        row.name,
        row.effective_address,
        row.address,
        row.address_source,
        row.public_address,
        str(row.health),
        row.cordoned,
        row.draining,
        row.cordon_reason,
        row.last_heartbeat_at,
        row.gpu_models,
        int(row.gpus_total),
        int(row.gpus_claimed),
        int(row.gpus_free),
        row.cpu_millis_allocatable,
        row.cpu_millis_claimed,
        row.memory_bytes_allocatable,
        row.memory_bytes_claimed,
        row.ports_claimed,
        row.labels,
    )


def gpu_out(row: Any) -> GpuOut:
    """A GPU row as the API shows it."""
    return GpuOut(
        row.id,
        row.host_id,
        row.host,
        row.index,
        row.model,
        str(row.health),
        row.device_uuid,
        row.memory_bytes,
        row.health_reason,
        row.foreign_use,
        row.environment_id,
    )


@get("/hosts", sync_to_thread=True, opt=answers(403))
def hosts(
    request: AnyRequest,
    api: Api,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: FromQuery[str | None] = None,
) -> HostList:
    """Hosts by name."""
    with api.acting(request) as (connection, principal):
        rows, following = list_hosts(connection, principal, limit=limit, cursor=cursor)
    return HostList([host_out(r) for r in rows], following)


@get("/hosts/{host_id:uuid}", sync_to_thread=True, opt=answers(403))
def host(host_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> HostOut:
    """One host."""
    with api.acting(request) as (connection, principal):
        return host_out(get_host(connection, principal, host_id))


@put("/hosts/{host_id:uuid}", sync_to_thread=True, opt=answers(403))
def update_host(
    host_id: FromPath[uuid.UUID], data: JSONBody[HostUpdate], request: AnyRequest, api: Api
) -> HostOut:
    """Change a host: its public address (platform admins)."""
    with api.acting(request) as (connection, principal):
        if data.public_address is msgspec.UNSET:
            return host_out(get_host(connection, principal, host_id))
        return host_out(control.set_public_address(connection, principal, host_id, data.public_address))


@get("/hosts/{host_id:uuid}/gpus", sync_to_thread=True, opt=answers(403))
def host_gpus(host_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> list[GpuOut]:
    """One host's GPUs by index."""
    with api.acting(request) as (connection, principal):
        return [gpu_out(r) for r in list_gpus(connection, principal, host_id)]


@post("/hosts/{host_id:uuid}/cordon", status_code=200, sync_to_thread=True, opt=answers(403))
def cordon(host_id: FromPath[uuid.UUID], data: JSONBody[CordonIn], request: AnyRequest, api: Api) -> HostOut:
    """No new placements on the host; what runs there keeps running."""
    with api.acting(request) as (connection, principal):
        return host_out(control.cordon(connection, principal, host_id, data.reason))


@post("/hosts/{host_id:uuid}/uncordon", status_code=200, sync_to_thread=True, opt=answers(403))
def uncordon(host_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> HostOut:
    """Allow placements again (also ends a drain)."""
    with api.acting(request) as (connection, principal):
        return host_out(control.uncordon(connection, principal, host_id))


@post("/hosts/{host_id:uuid}/drain", status_code=200, sync_to_thread=True, opt=answers(403))
def drain(host_id: FromPath[uuid.UUID], data: JSONBody[CordonIn], request: AnyRequest, api: Api) -> DrainOut:
    """Cordon the host and stop every environment on it."""
    with api.acting(request) as (connection, principal):
        row, stopping = control.drain(connection, principal, host_id, data.reason)
        return DrainOut(host_out(row), stopping)


@get("/gpus", sync_to_thread=True, opt=answers(403))
def gpus(request: AnyRequest, api: Api) -> list[GpuOut]:
    """Every GPU, by host and index."""
    with api.acting(request) as (connection, principal):
        return [gpu_out(r) for r in list_gpus(connection, principal)]


@post("/gpus/{gpu_id:uuid}/health", status_code=200, sync_to_thread=True, opt=answers(403))
def gpu_health(
    gpu_id: FromPath[uuid.UUID], data: JSONBody[GpuHealthIn], request: AnyRequest, api: Api
) -> GpuOut:
    """Mark a GPU unhealthy (never allocated again until healthy) or healthy."""
    with api.acting(request) as (connection, principal):
        return gpu_out(control.set_health(connection, principal, gpu_id, data.health, data.reason))


router = Router(
    "/",
    route_handlers=[hosts, host, update_host, host_gpus, cordon, uncordon, drain, gpus, gpu_health],
    tags=["hosts"],
)
