"""A reconciler killed at any named point inside a step resumes to the same end state: no double
allocation, no duplicate cluster object, a clean claim history."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core import clock
from remotegpu.core.claim_audit import audit
from remotegpu.core.states import DesiredState
from remotegpu.reconciler.context import SimulatedCrashError
from remotegpu.tests.reconciler.world import build_world

START = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
KILLS = [
    ("after-allocation", 1),
    ("after-pod-created", 1),
    ("after-pod-deleted", 1),
    # every apply of the run-then-stop lifecycle: admit, provision, running, stop, finish_stop
    *[("mid-apply", nth) for nth in range(1, 6)],
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
