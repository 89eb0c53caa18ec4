"""`remotegpu chaos --quick`: every kind of fault under churn, and nothing lost, doubled or left behind;
and the run's checks do see an environment that did not settle."""

from __future__ import annotations

import io
import json

from rich.console import Console
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.ops.chaos.checks import unsettled
from remotegpu.ops.chaos.faults import FAULTS, schedule
from remotegpu.ops.chaos.run import QUICK, run
from remotegpu.tests.reconciler.world import build_world


def test_the_quick_run_strikes_every_fault_and_finds_no_violation() -> None:
    output = io.StringIO()
    figures = run(QUICK, seed=7, console=Console(file=output, width=160))
    printed = output.getvalue()
    assert figures["violations"] == 0, printed
    assert figures["api_500"] == 0, printed
    assert figures["faults"] >= 5
    assert figures["faults_not_struck"] == 0, printed
    assert figures["envs"] >= 20, "enough churn to have something to break"
    assert figures["requests"] > figures["envs"]
    assert figures["leader_terms"] >= 3, "the killed and the paused leader were each replaced"
    assert figures["stamped_rows"] > figures["envs"], "the fencing audit had the reconcilers' writes to check"
    for kind in (
        "kill -9 leader",
        "SIGSTOP leader",
        "pg_terminate_backend",
        "Postgres restarted",
        "cluster:",
        "deleted with its",
    ):
        assert kind in printed, f"{kind} struck"
    json.dumps(figures)


def test_the_schedule_is_seeded_and_strikes_each_kind_before_repeating() -> None:
    first = schedule(3, 60, len(FAULTS) + 2)
    assert first == schedule(3, 60, len(FAULTS) + 2)
    assert {fault.kind for fault in first[: len(FAULTS)]} == set(FAULTS)
    assert all(0 < fault.at_s < 60 for fault in first)
    assert [fault.at_s for fault in first] == sorted(fault.at_s for fault in first)


def test_an_environment_stuck_short_of_its_desired_state_is_reported(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    world = build_world(engine, database_url)
    try:
        stuck = world.submit("stuck")
        world.reconciler.run_until_idle()
        assert unsettled(engine) == []
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE environments SET phase = 'provisioning' WHERE id = :id"), {"id": stuck}
            )
        assert unsettled(engine) == ["stuck: desired running, still provisioning (no reason)"]
    finally:
        world.reconciler.close()
