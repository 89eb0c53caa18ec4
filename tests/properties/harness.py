"""Several processes, each with its own database connection, running allocation operations.

Operations are plain tuples so they cross process boundaries and print readably when hypothesis shrinks
a failing schedule. A *schedule* is a list of steps; in each step every worker runs its operation after
a shared barrier, so the interleaving is forced at step granularity and a failing schedule replays.
Inside a step, an operation may pause at a named point of the allocation protocol (`quota-checked`,
`gpus-chosen`, …), either sleeping or meeting the other workers at a barrier, to widen race windows.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.accounts.workspaces import delete_workspace
from remotegpu.core.capacity.allocate import AllocationOptions, allocate
from remotegpu.core.capacity.batch import PlannedAllocation, allocate_planned
from remotegpu.core.capacity.quotas import QuotaLimits, set_quota
from remotegpu.core.capacity.release import release
from remotegpu.core.capacity.requests import AllocationRequest
from remotegpu.core.environments.derived import access_port_request
from remotegpu.core.environments.states import GpuHealth
from remotegpu.core.inventory.hosts import cordon_host, set_gpu_health, uncordon_host
from remotegpu.core.models import Base
from remotegpu.core.platform.db import make_engine
from remotegpu.tests.allocation_world import make_environment, make_host, make_user, make_workspace

Operation = tuple[Any, ...]
"""("allocate", env, pause_point, pause_ms) | ("allocate_batch", [env…], [host…]) | ("release", env) | ("cordon", host) | ("uncordon", host)
| ("gpu", host, index, healthy) | ("quota", workspace, max_gpus) | ("delete_workspace", workspace) | ("noop",)"""

ENVIRONMENT_SIZES = (1, 2, 1, 4, 2, 1, 3, 2)
HOST_MODELS = ("H100", "A100")
PORTS = (access_port_request("ssh"), access_port_request("jupyter"))


@dataclass(frozen=True)
class World:
    """Ids of a small, contended inventory; picklable so workers can receive it."""

    hosts: tuple[uuid.UUID, ...]
    gpus: tuple[tuple[uuid.UUID, ...], ...]
    workspaces: tuple[uuid.UUID, ...]
    requests: tuple[AllocationRequest, ...]


def reset(engine: Engine) -> None:
    """Empty every table."""
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def seed(engine: Engine, workspace_gpu_limit: int | None = 6) -> World:
    """Two hosts of 4 GPUs (H100 and A100) with 3 host ports each, two workspaces, eight environments."""
    reset(engine)
    with engine.begin() as connection:
        hosts = (
            make_host(connection, gpus=4, model=HOST_MODELS[0], port_range=(30000, 30002), name="node-a"),
            make_host(connection, gpus=4, model=HOST_MODELS[1], port_range=(30000, 30002), name="node-b"),
        )
        gpus = tuple(
            tuple(
                connection.execute(
                    text("SELECT id FROM gpus WHERE host_id = :h ORDER BY index"), {"h": host}
                ).scalars()
            )
            for host in hosts
        )
        tenants = []
        for _ in range(2):
            user = make_user(connection)
            workspace = make_workspace(connection, user)
            set_quota(connection, "workspace", workspace, QuotaLimits(max_gpus=workspace_gpu_limit))
            tenants.append((workspace, user))
        requests = tuple(
            make_environment(
                connection,
                *tenants[index % 2],
                gpus=size,
                ports=PORTS[: index % 3],
            )
            for index, size in enumerate(ENVIRONMENT_SIZES)
        )
    return World(hosts, gpus, tuple(w for w, _ in tenants), requests)


def run_operation(
    connection: Connection,
    world: World,
    operation: Operation,
    pause: Callable[[str], None],
    unsafe: dict[str, bool],
) -> str:
    """Run one operation in the caller's transaction; returns its outcome in words.

    `unsafe` holds the allocator's `unsafe_*` switches, and `prefer_first_host`: every allocation tries
    the world's first host first, so that racers meet on one host (equally good hosts otherwise come
    in an order of each environment's own)."""
    kind = str(operation[0])
    options = AllocationOptions(
        pause=pause,
        unsafe_skip_quota_lock=unsafe.get("unsafe_skip_quota_lock", False),
        unsafe_skip_host_lock=unsafe.get("unsafe_skip_host_lock", False),
        preferred_host=world.hosts[0] if unsafe.get("prefer_first_host", False) else None,
    )
    if kind == "allocate":
        request = world.requests[operation[1]]
        return allocate(connection, request, options).outcome.value
    if kind == "allocate_batch":
        # as the scheduling pass plans: each environment on a host, GPUs of that host's model
        planned = [
            PlannedAllocation(world.requests[env], world.hosts[host], HOST_MODELS[host])
            for env, host in zip(operation[1], operation[2], strict=False)
        ]
        results = allocate_planned(connection, planned)
        return ",".join(result.outcome.value for result in results.values())
    if kind == "retry-allocate":
        # CONTENDED (every fitting host busy) is requeued, as the reconciler does
        return allocate(connection, world.requests[operation[1]], options).outcome.value
    if kind == "release":
        return f"released {release(connection, world.requests[operation[1]].environment_id).gpus}"
    if kind == "cordon":
        cordon_host(connection, world.hosts[operation[1]])
    elif kind == "uncordon":
        uncordon_host(connection, world.hosts[operation[1]])
    elif kind == "gpu":
        health = GpuHealth.HEALTHY if operation[3] else GpuHealth.UNHEALTHY
        set_gpu_health(connection, world.gpus[operation[1]][operation[2]], health)
    elif kind == "quota":
        set_quota(connection, "workspace", world.workspaces[operation[1]], QuotaLimits(max_gpus=operation[2]))
    elif kind == "delete_workspace":
        delete_workspace(connection, world.workspaces[operation[1]])
    return kind


def _worker_main(
    index: int, url: str, commands: Any, results: Any, step_barrier: Any, point_barrier: Any
) -> None:
    engine = make_engine(url, pool_size=1, application_name="remotegpu-property-worker")
    while True:
        command = commands.get()
        if command is None:
            break
        world, operations, synchronised, unsafe = command
        outcomes: list[str] = []
        try:
            for operation in operations:
                if synchronised:
                    step_barrier.wait(timeout=60)
                pause = _pause_for(operation, point_barrier)
                with engine.begin() as connection:
                    outcome = run_operation(connection, world, operation, pause, unsafe)
                for _ in range(100):
                    if outcome != "contended" or operation[0] != "allocate":
                        break
                    # Real time: the contending worker is another process holding the host lock.
                    time.sleep(0.005)
                    with engine.begin() as connection:
                        outcome = run_operation(
                            connection, world, ("retry-allocate", operation[1]), _no_pause, unsafe
                        )
                outcomes.append(outcome)
            results.put((index, "ok", outcomes))
        except Exception:
            results.put((index, "error", traceback.format_exc()))
            if synchronised:
                step_barrier.abort()
    engine.dispose()


def _no_pause(_point: str) -> None:
    return None


def _pause_for(operation: Operation, point_barrier: Any) -> Callable[[str], None]:
    if operation[0] != "allocate" or len(operation) < 4 or operation[2] is None:
        return _no_pause
    point, milliseconds = operation[2], operation[3]

    def pause(reached: str) -> None:
        if reached != point:
            return
        if milliseconds == "barrier":
            point_barrier.wait(timeout=30)
        else:
            time.sleep(milliseconds / 1000)  # real time: widens a race window other processes run in

    return pause


class WorkerPool:
    """`size` long-lived worker processes with their own connections."""

    def __init__(self, url: URL, size: int) -> None:
        context = multiprocessing.get_context("fork")
        self.size = size
        self._step_barrier = context.Barrier(size)
        self._point_barrier = context.Barrier(size)
        self._commands = [context.Queue() for _ in range(size)]
        self._results = context.Queue()
        rendered = url.render_as_string(hide_password=False)
        self._processes = [
            context.Process(
                target=_worker_main,
                args=(index, rendered, queue, self._results, self._step_barrier, self._point_barrier),
                daemon=True,
            )
            for index, queue in enumerate(self._commands)
        ]
        for process in self._processes:
            process.start()

    def run(
        self,
        world: World,
        per_worker: Sequence[Sequence[Operation]],
        *,
        synchronised: bool = True,
        unsafe: dict[str, bool] | None = None,
        timeout_s: float = 120,
    ) -> list[list[str]]:
        """Run each worker's operations (in lock step when `synchronised`); raise if any worker failed.

        A worker that does not finish within `timeout_s` means a deadlock or a lost wake-up.
        """
        self._step_barrier.reset()
        self._point_barrier.reset()
        for queue, operations in zip(self._commands, per_worker, strict=True):
            queue.put((world, list(operations), synchronised, unsafe or {}))
        replies = sorted(self._results.get(timeout=timeout_s) for _ in per_worker)
        errors = [detail for _, status, detail in replies if status == "error"]
        if errors:
            raise AssertionError("a worker failed:\n" + "\n".join(errors))
        return [detail for _, _, detail in replies]

    def close(self) -> None:
        """Stop every worker."""
        for queue in self._commands:
            queue.put(None)
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def steps_to_workers(steps: Sequence[Sequence[Operation]], size: int) -> list[list[Operation]]:
    """Turn [step][worker] into [worker][step], padding short steps with no-ops."""
    return [[step[worker] if worker < len(step) else ("noop",) for step in steps] for worker in range(size)]
