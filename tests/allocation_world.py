"""Building blocks for allocation tests: users, workspaces, hosts and environments as real rows."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence

import msgspec
from sqlalchemy import Connection, text

from remotegpu.core.capacity.requests import AllocationRequest, PortRequest
from remotegpu.core.environments.spec import spec_to_dict
from remotegpu.core.inventory.sync import GpuDevice, register_host
from remotegpu.tests.specs import environment_spec

_names = itertools.count(1)
GIB = 1 << 30


def make_user(connection: Connection, name: str | None = None) -> uuid.UUID:
    """A user row; returns its id."""
    name = name or f"user{next(_names)}"
    user_id: uuid.UUID = connection.execute(
        text("INSERT INTO users (email, username, password_hash) VALUES (:e, :u, 'x') RETURNING id"),
        {"e": f"{name}@example.org", "u": name},
    ).scalar_one()
    return user_id


def make_workspace(connection: Connection, owner: uuid.UUID, name: str | None = None) -> uuid.UUID:
    """A live workspace; returns its id."""
    workspace_id: uuid.UUID = connection.execute(
        text("INSERT INTO workspaces (name, owner_id) VALUES (:n, :o) RETURNING id"),
        {"n": name or f"ws{next(_names)}", "o": owner},
    ).scalar_one()
    return workspace_id


def make_host(
    connection: Connection,
    gpus: int = 8,
    model: str = "H100",
    *,
    cpu_millis: int = 128_000,
    memory_bytes: int = 1024 * GIB,
    port_range: tuple[int, int] = (30000, 30099),
    name: str | None = None,
) -> uuid.UUID:
    """A ready host with `gpus` GPUs of `model`; returns its id."""
    return register_host(
        connection,
        name or f"node-{next(_names):04d}",
        [GpuDevice(model, 80 * GIB) for _ in range(gpus)],
        cpu_millis=cpu_millis,
        memory_bytes=memory_bytes,
        port_range=port_range,
    )


def make_environment(
    connection: Connection,
    workspace_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    gpus: int = 1,
    model: str | None = None,
    cpu_millis: int = 1000,
    memory_bytes: int = GIB,
    storage_bytes: int = 0,
    ports: Sequence[PortRequest] = (),
    priority: int = 0,
) -> AllocationRequest:
    """An admitted environment row and the allocation request for it.

    Its columns hold what the arguments say; its stored spec is a minimal valid one (an image), since
    these tests claim by the request, not by what the spec asks."""
    name = f"env{next(_names)}"
    environment_id = connection.execute(
        text(
            "INSERT INTO environments (workspace_id, user_id, name, spec, gpu_count, gpu_model, cpu_millis,"
            " memory_bytes, storage_bytes, phase, priority)"
            " VALUES (:ws, :u, :n, CAST(:spec AS jsonb), :g, :m, :c, :mem, :s, 'admitted', :p) RETURNING id"
        ),
        {
            "ws": workspace_id,
            "u": user_id,
            "n": name,
            "spec": msgspec.json.encode(spec_to_dict(environment_spec(name))).decode(),
            "g": gpus,
            "m": model,
            "c": cpu_millis,
            "mem": memory_bytes,
            "s": storage_bytes,
            "p": priority,
        },
    ).scalar_one()
    return AllocationRequest(
        environment_id=environment_id,
        workspace_id=workspace_id,
        user_id=user_id,
        generation=1,
        gpu_count=gpus,
        gpu_model=model,
        cpu_millis=cpu_millis,
        memory_bytes=memory_bytes,
        storage_bytes=storage_bytes,
        ports=tuple(ports),
    )
