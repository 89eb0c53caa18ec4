"""A reconciler killed at any named point inside a step resumes to the same end state: no double
allocation, no duplicate cluster object, a clean claim history."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.audit import audit
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.environments.desired import set_desired_state, submit_environment
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.inventory.sync import sync_inventory
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.ops.simcluster.store import BY_PATH
from remotegpu.reconciler.context import SimulatedCrashError
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.allocation_world import make_user, make_workspace
from remotegpu.tests.polling import poll_until
from remotegpu.tests.reconciler.world import SPEC, build_world
from remotegpu.tests.secrets_world import builtin_store
from remotegpu.tests.specs import environment_spec

START = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
KILLS = [
    ("after-allocation", 1),
    ("after-pod-created", 1),
    ("after-pod-deleted", 1),
    # the applies of the run-then-stop lifecycle (provision, running, stop, finish_stop, …)
    *[("mid-apply", nth) for nth in range(1, 5)],
]


class KillOnce:
    """Raises at the `nth` time `point` is reached, then never again."""

    def __init__(self, point: str, nth: int = 1) -> None:
        self.point, self.remaining, self.fired = point, nth, False

    def __call__(self, reached: str) -> None:
        if reached != self.point or self.fired:
            return
        self.remaining -= 1
        if self.remaining == 0:
            self.fired = True
            raise SimulatedCrashError(reached)


@pytest.mark.parametrize(("point", "nth"), KILLS)
def test_killed_step_resumes_to_the_same_end_state(
    engine: Engine, database_url: URL, sessions: object, point: str, nth: int
) -> None:
    kill = KillOnce(point, nth)
    with clock.frozen_at(START) as advance:
        world = build_world(engine, database_url, kill_point=kill)
        try:
            env = world.submit("train")
            for _ in range(4):  # run, and after a crash let the lease expire and run again
                world.reconciler.run_until_idle()
                advance(dt.timedelta(seconds=31))
            assert world.phase(env) == "running"
            assert world.active_gpu_claims() == 2
            world.desire(env, DesiredState.STOPPED)
            for _ in range(4):
                world.reconciler.run_until_idle()
                advance(dt.timedelta(seconds=31))
            assert kill.fired, f"the scenario never reached {point} #{nth}"
            assert world.phase(env) == "stopped"
            assert world.active_gpu_claims() == 0
            assert world.cluster.live_pods() == []
            assert world.cluster.creates[f"env-{env}"] == 1, "a repeated create must find the existing pod"
            with engine.connect() as connection:
                assert audit(connection) == []
                allocations = connection.execute(text("SELECT count(*) FROM allocations")).scalar_one()
            assert allocations == 1, "the environment was allocated exactly once"
        finally:
            world.reconciler.close()


@pytest.mark.parametrize(("point", "nth"), KILLS)
def test_killed_step_resumes_against_the_simulated_cluster(
    engine: Engine, database_url: URL, sessions: object, tmp_path: Path, point: str, nth: int
) -> None:
    """The same kills, with the Kubernetes driver talking HTTP to the simulated cluster."""
    kill = KillOnce(point, nth)
    with SimulatedCluster(NodeTemplate(count=2, gpus=8), start_delay=dt.timedelta(0)) as sim:
        driver = KubernetesCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        with engine.begin() as connection:
            sync_inventory(connection, driver.list_nodes())
            user = make_user(connection)
            workspace = make_workspace(connection, user)
        with clock.frozen_at(START) as advance:
            reconciler = Reconciler(
                database_url,
                driver,
                Settings(),
                identity="kill-sim",
                kill_point=kill,
                listen=False,
                secrets=builtin_store(engine),
            )
            try:
                with engine.begin() as connection:
                    env = submit_environment(
                        connection, workspace_id=workspace, user_id=user, spec=environment_spec("train", SPEC)
                    )

                def settle(phase: str) -> None:
                    def step() -> str:
                        reconciler.run_until_idle()
                        reached = _phase(engine, env)
                        if reached != phase:
                            advance(dt.timedelta(seconds=31))  # a killed step's lease expires
                        return reached

                    # Poll: the simulated kubelet works in real time, which the clock cannot move.
                    poll_until(step, 20, f"phase {phase}", until=lambda reached: reached == phase)

                settle("running")
                with engine.begin() as connection:
                    set_desired_state(connection, env, DesiredState.STOPPED)
                settle("stopped")
            finally:
                reconciler.close()
        assert kill.fired, f"the scenario never reached {point} #{nth}"
        pods = sim.store.list(BY_PATH[("", "v1", "pods")], None, lambda _obj: True)[0]
        claims = sim.store.list(BY_PATH[("", "v1", "persistentvolumeclaims")], None, lambda _obj: True)[0]
        assert pods == []
        assert [c["metadata"]["name"] for c in claims] == [f"env-{env}-data"], "one volume, kept on stop"
    with engine.connect() as connection:
        assert audit(connection) == []
        assert connection.execute(text("SELECT count(*) FROM allocations")).scalar_one() == 1


def _phase(engine: Engine, env: uuid.UUID) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(text("SELECT phase FROM environments WHERE id = :e"), {"e": env}).scalar_one()
        )
