"""A stateful model test of the allocation API: every outcome agrees with a simple model of the world.

Invariants: an allocation succeeds exactly when the model says some schedulable host has enough free,
healthy GPUs of one model (and host ports) and the workspace quota has room; it returns only GPUs the
model holds free and healthy, on an uncordoned host; a repeated allocation is idempotent; release frees
exactly what was held; and after every step the claim history and counters audit clean.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import Engine, text

from remotegpu.core.capacity.allocate import allocate
from remotegpu.core.capacity.audit import audit
from remotegpu.core.capacity.quotas import QuotaLimits, set_quota
from remotegpu.core.capacity.release import release
from remotegpu.core.capacity.requests import AllocationOutcome, AllocationRequest, PortRequest
from remotegpu.core.environments.states import GpuHealth, PortPurpose
from remotegpu.core.inventory.hosts import cordon_host, set_gpu_health, uncordon_host
from remotegpu.tests.allocation_world import make_environment, make_host, make_user, make_workspace
from remotegpu.tests.properties.harness import reset

HOSTS = (("node-a", "H100", 4), ("node-b", "A100", 2))
PORT_RANGE = (30000, 30002)
ENVIRONMENTS = (
    (0, 1, None, 1),
    (0, 2, "H100", 0),
    (1, 2, None, 2),
    (1, 1, "A100", 1),
    (0, 4, None, 0),
    (1, 1, None, 0),
)
"""(workspace, GPUs, model, ports) of each environment."""


@dataclass
class Gpu:
    id: uuid.UUID
    host: int
    model: str
    healthy: bool = True
    holder: int | None = None


@dataclass
class Model:
    gpus: list[Gpu] = field(default_factory=list)
    cordoned: set[int] = field(default_factory=set)
    limits: dict[int, int | None] = field(default_factory=dict)
    held: dict[int, tuple[int, list[uuid.UUID], int]] = field(default_factory=dict)
    """environment -> (host, GPUs, ports)"""

    def used(self, workspace: int) -> int:
        return sum(len(gpus) for env, (_, gpus, _) in self.held.items() if ENVIRONMENTS[env][0] == workspace)

    def ports_used(self, host: int) -> int:
        return sum(ports for h, _, ports in self.held.values() if h == host)

    def could_place(self, env: int) -> bool:
        _, count, model, ports = ENVIRONMENTS[env]
        for host, (_, host_model, _) in enumerate(HOSTS):
            if host in self.cordoned or (model is not None and model != host_model):
                continue
            free = [g for g in self.gpus if g.host == host and g.healthy and g.holder is None]
            room = PORT_RANGE[1] - PORT_RANGE[0] + 1 - self.ports_used(host)
            if len(free) >= count and room >= ports:
                return True
        return False


def run_machine(engine: Engine) -> None:
    class AllocationMachine(RuleBasedStateMachine):
        @initialize()
        def build_world(self) -> None:
            reset(engine)
            self.model = Model()
            with engine.begin() as connection:
                self.hosts = [
                    make_host(connection, gpus=count, model=model, port_range=PORT_RANGE, name=name)
                    for name, model, count in HOSTS
                ]
                for index, host in enumerate(self.hosts):
                    ids = connection.execute(
                        text("SELECT id FROM gpus WHERE host_id = :h ORDER BY index"), {"h": host}
                    ).scalars()
                    self.model.gpus += [Gpu(gpu, index, HOSTS[index][1]) for gpu in ids]
                tenants = []
                for _ in range(2):
                    user = make_user(connection)
                    tenants.append((make_workspace(connection, user), user))
                self.workspaces = [workspace for workspace, _ in tenants]
                ssh = PortRequest(22, purpose=PortPurpose.SSH)
                self.requests: list[AllocationRequest] = [
                    make_environment(
                        connection,
                        *tenants[ws],
                        gpus=count,
                        model=model,
                        ports=[ssh, PortRequest(8888)][:ports],
                    )
                    for ws, count, model, ports in ENVIRONMENTS
                ]

        @rule(env=st.integers(0, len(ENVIRONMENTS) - 1))
        def allocate_environment(self, env: int) -> None:
            with engine.begin() as connection:
                result = allocate(connection, self.requests[env])
            workspace, count, _, ports = ENVIRONMENTS[env]
            limit = self.model.limits.get(workspace)
            if env in self.model.held:
                assert result.outcome is AllocationOutcome.ALREADY_ALLOCATED
                return
            if limit is not None and self.model.used(workspace) + count > limit:
                assert result.outcome is AllocationOutcome.OVER_QUOTA, result
                return
            if not self.model.could_place(env):
                assert result.outcome is AllocationOutcome.NO_CAPACITY, result
                return
            assert result.outcome is AllocationOutcome.ALLOCATED, result
            assert result.host_id is not None
            host = self.hosts.index(result.host_id)
            assert host not in self.model.cordoned
            by_id = {gpu.id: gpu for gpu in self.model.gpus}
            for gpu_id in result.gpu_ids:
                gpu = by_id[gpu_id]
                assert (gpu.host, gpu.healthy, gpu.holder) == (host, True, None)
                gpu.holder = env
            assert len(result.gpu_ids) == count
            self.model.held[env] = (host, list(result.gpu_ids), ports)

        @rule(env=st.integers(0, len(ENVIRONMENTS) - 1))
        def release_environment(self, env: int) -> None:
            with engine.begin() as connection:
                freed = release(connection, self.requests[env].environment_id)
            _, gpus, ports = self.model.held.pop(env, (None, [], 0))
            assert (freed.gpus, freed.ports) == (len(gpus), ports)
            for gpu in self.model.gpus:
                if gpu.holder == env:
                    gpu.holder = None

        @rule(host=st.integers(0, len(HOSTS) - 1), cordon=st.booleans())
        def cordon(self, host: int, cordon: bool) -> None:
            with engine.begin() as connection:
                (cordon_host if cordon else uncordon_host)(connection, self.hosts[host])
            (self.model.cordoned.add if cordon else self.model.cordoned.discard)(host)

        @rule(gpu=st.integers(0, sum(count for *_, count in HOSTS) - 1), healthy=st.booleans())
        def gpu_health(self, gpu: int, healthy: bool) -> None:
            target = self.model.gpus[gpu]
            with engine.begin() as connection:
                set_gpu_health(connection, target.id, GpuHealth.HEALTHY if healthy else GpuHealth.UNHEALTHY)
            target.healthy = healthy

        @rule(workspace=st.integers(0, 1), limit=st.one_of(st.none(), st.integers(0, 6)))
        def quota(self, workspace: int, limit: int | None) -> None:
            with engine.begin() as connection:
                set_quota(connection, "workspace", self.workspaces[workspace], QuotaLimits(max_gpus=limit))
            self.model.limits[workspace] = limit

        @invariant()
        def history_and_counters_are_clean(self) -> None:
            if not hasattr(self, "model"):
                return
            with engine.connect() as connection:
                assert audit(connection) == []

    run_state_machine_as_test(
        AllocationMachine, settings=settings(max_examples=40, stateful_step_count=25, deadline=None)
    )


def test_allocation_api_agrees_with_a_model_of_the_world(engine: Engine) -> None:
    try:
        run_machine(engine)
    finally:
        reset(engine)
