"""Policy stops through the reconciler: a workspace's spending limit warns once at 80 % and, at 100 %,
stops its running environments once (one `BudgetExceeded` event each, under kill points) and keeps new
ones waiting with `budget exhausted` until the limit is raised; `policies.max_duration` stops a run once
at its deadline; a user's racing change wins; nothing restarts by itself."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.billing.audit import audit_billing
from remotegpu.core.billing.budget import BudgetState, workspace_budget
from remotegpu.core.environments.desired import set_desired_state
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform import clock
from remotegpu.reconciler.context import SimulatedCrashError
from remotegpu.reconciler.leader import FencedOutError
from remotegpu.reconciler.metering import meter_tick
from remotegpu.reconciler.policies import policy_tick
from remotegpu.tests.reconciler.test_kill_points import KillOnce
from remotegpu.tests.reconciler.test_metering import set_prices
from remotegpu.tests.reconciler.world import SPEC, World, build_world

START = dt.datetime(2026, 11, 10, 0, 0, tzinfo=dt.UTC)
PRICES = {("gpu", "H100"): "1.00", ("storage", None): "0.73"}
"""World's SPEC (2 H100, a 100 GiB volume): 2.00 an hour of GPUs while running, and 0.10 an hour of
storage (100 GiB × 0.73 per 730-hour month) running or not."""
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    with clock.frozen_at(START):
        made = build_world(engine, database_url)
        set_prices(engine, PRICES, START - dt.timedelta(days=30))
        yield made
        made.reconciler.close()
    with engine.connect() as connection:
        assert audit_billing(connection, "month", "USD") == []


def set_limit(world: World, limit: str | None) -> None:
    with world.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE workspaces SET settings = settings || jsonb_build_object('spending_limit', CAST(:v AS text))"
                " WHERE id = :id"
            ),
            {"v": limit, "id": world.workspace},
        )


def events(world: World, reason: str, environment: uuid.UUID | None = None) -> list[Any]:
    with world.engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT actor_kind, actor_user_id, kind, reason, message, data FROM events"
                    " WHERE workspace_id = :ws AND reason = :reason"
                    " AND (CAST(:env AS uuid) IS NULL OR environment_id = :env) ORDER BY seq"
                ),
                {"ws": world.workspace, "reason": reason, "env": environment},
            )
        )


def desired_and_conditions(world: World, environment: uuid.UUID) -> tuple[str, list[dict[str, Any]]]:
    with world.engine.connect() as connection:
        row = connection.execute(
            text("SELECT desired_state, conditions FROM environments WHERE id = :id"), {"id": environment}
        ).one()
    return str(row.desired_state), row.conditions


def budget_state(world: World) -> BudgetState | None:
    with world.engine.connect() as connection:
        found = workspace_budget(connection, world.workspace, clock.now(), "month")
    return None if found is None else found.state


def user_desire(world: World, environment: uuid.UUID, state: DesiredState) -> None:
    with world.engine.begin() as connection:
        set_desired_state(connection, environment, state, actor=world.user)


def test_a_spent_budget_warns_once_stops_once_and_holds_new_environments_until_raised(world: World) -> None:
    set_limit(world, "10")
    with clock.frozen_at(START) as advance:
        env = world.submit("train")
        world.reconciler.run_until_idle()
        advance(3 * HOUR)
        meter_tick(world.reconciler.ctx)  # the closed part and the open tail both count
        assert policy_tick(world.reconciler.ctx).warned == [], "6.30 of 10: nothing yet"
        assert budget_state(world) is BudgetState.OK
        advance(HOUR)  # 8.40: past 80 %
        assert policy_tick(world.reconciler.ctx).warned == [world.workspace]
        assert policy_tick(world.reconciler.ctx).warned == [], "once per period"
        assert budget_state(world) is BudgetState.WARNING
        (warning,) = events(world, "BudgetWarning")
        assert (warning.actor_kind, warning.data["percent"]) == ("system", "84.0")
        assert world.phase(env) == "running", "a warning stops nothing"

        advance(HOUR)  # 10.50: spent
        report = policy_tick(world.reconciler.ctx)
        assert report.stopped == [env]
        assert policy_tick(world.reconciler.ctx).stopped == [], "once"
        world.reconciler.run_until_idle()
        assert world.phase(env) == "stopped"
        (stop,) = events(world, "BudgetExceeded", env)
        assert (stop.actor_kind, stop.actor_user_id, stop.kind) == ("system", None, "policy")
        assert "10" in stop.message
        assert "spending limit" in stop.message
        desired, conditions = desired_and_conditions(world, env)
        assert desired == "stopped"
        assert [(c["type"], c["reason"]) for c in conditions] == [("PolicyStopped", "BudgetExceeded")]

        # the volume keeps its data and keeps accruing past the limit; nothing restarts by itself
        with world.engine.connect() as connection:
            before = workspace_budget(connection, world.workspace, clock.now(), "month")
        advance(10 * HOUR)
        meter_tick(world.reconciler.ctx)
        assert policy_tick(world.reconciler.ctx).stopped == []
        world.reconciler.run_until_idle()
        assert world.phase(env) == "stopped"
        with world.engine.connect() as connection:
            after = workspace_budget(connection, world.workspace, clock.now(), "month")
        assert before is not None
        assert after is not None
        assert after.spent - before.spent == pytest.approx(Decimal("1.0")), "ten hours of storage"
        assert after.overrun == pytest.approx(after.spent - 10)

        # a new environment waits, and so does a start: accepted, waiting with the reason
        second = world.submit("second")
        user_desire(world, env, DesiredState.RUNNING)
        world.reconciler.run_until_idle()
        for waiting in (second, env):
            row = world.row(waiting)
            assert (str(row.phase), row.queue_reason) == ("admitted", "budget exhausted")
        assert desired_and_conditions(world, env)[1] == [], "a user's start clears the policy stop"
        assert policy_tick(world.reconciler.ctx).stopped == [], "waiting holds nothing: not stopped"
        assert world.active_gpu_claims() == 0

        set_limit(world, "100")  # raised: both start
        world.reconciler.run_until_idle()
        assert (world.phase(env), world.phase(second)) == ("running", "running")
        assert world.row(second).queue_reason is None
        assert policy_tick(world.reconciler.ctx).stopped == []
    assert len(events(world, "BudgetExceeded")) == 1
    assert len(events(world, "BudgetWarning")) == 1


def test_a_limit_removed_or_absent_stops_nothing(world: World) -> None:
    with clock.frozen_at(START) as advance:
        env = world.submit("train")
        world.reconciler.run_until_idle()
        advance(100 * HOUR)
        assert budget_state(world) is None
        assert policy_tick(world.reconciler.ctx).stopped == []
        set_limit(world, "0")
        assert budget_state(world) is BudgetState.EXHAUSTED
        set_limit(world, None)
        assert policy_tick(world.reconciler.ctx).stopped == []
        assert world.phase(env) == "running"


@pytest.mark.parametrize("point", ["policy-planned", "policy-stopped"])
@pytest.mark.parametrize("cause", ["BudgetExceeded", "MaxDurationReached"])
def test_a_killed_policy_run_stops_once_with_one_event(
    engine: Engine, database_url: URL, sessions: object, point: str, cause: str
) -> None:
    with clock.frozen_at(START) as advance:
        world = build_world(engine, database_url, kill_point=KillOnce(point))
        try:
            set_prices(engine, PRICES, START - dt.timedelta(days=30))
            spec = SPEC if cause == "BudgetExceeded" else {**SPEC, "policies": {"max_duration": "2h"}}
            env = world.submit("train", spec)
            world.reconciler.run_until_idle()
            if cause == "BudgetExceeded":
                set_limit(world, "1")
            advance(3 * HOUR)
            with pytest.raises(SimulatedCrashError):
                policy_tick(world.reconciler.ctx)
            again = policy_tick(world.reconciler.ctx)
            assert again.stopped == ([env] if point == "policy-planned" else [])
            assert policy_tick(world.reconciler.ctx).stopped == []
            world.reconciler.run_until_idle()
            assert world.phase(env) == "stopped"
            assert len(events(world, cause, env)) == 1
            assert len(events(world, "DesiredStopped", env)) == 0
        finally:
            world.reconciler.close()


def test_max_duration_stops_the_run_at_its_deadline_and_a_new_run_counts_again(world: World) -> None:
    with clock.frozen_at(START) as advance:
        env = world.submit("short", {**SPEC, "policies": {"max_duration": "2m"}})
        world.reconciler.run_until_idle()
        assert world.phase(env) == "running"
        advance(dt.timedelta(seconds=119))
        assert policy_tick(world.reconciler.ctx).stopped == []
        advance(dt.timedelta(seconds=1))
        assert policy_tick(world.reconciler.ctx).stopped == [env]
        assert policy_tick(world.reconciler.ctx).stopped == []
        world.reconciler.run_until_idle()
        assert world.phase(env) == "stopped"
        (stop,) = events(world, "MaxDurationReached", env)
        assert stop.data["max_duration"] == "2m"
        assert stop.data["deadline"].startswith("2026-11-10 00:02:00")
        assert "max_duration of 2m" in stop.message
        advance(HOUR)
        assert policy_tick(world.reconciler.ctx).stopped == [], "nothing restarts by itself"
        user_desire(world, env, DesiredState.RUNNING)
        world.reconciler.run_until_idle()
        assert world.phase(env) == "running"
        assert desired_and_conditions(world, env)[1] == []
        advance(dt.timedelta(minutes=1))
        assert policy_tick(world.reconciler.ctx).stopped == [], "a new run: a new deadline"
        advance(dt.timedelta(minutes=1))
        assert policy_tick(world.reconciler.ctx).stopped == [env]
    assert len(events(world, "MaxDurationReached", env)) == 2


def test_a_racing_user_change_wins_over_a_policy_stop(world: World) -> None:
    """The user stops the environment between the policy job's read and its write: the policy changes
    nothing, records nothing and leaves no `PolicyStopped` on it."""
    ctx = world.reconciler.ctx
    with clock.frozen_at(START) as advance:
        env = world.submit("short", {**SPEC, "policies": {"max_duration": "1m"}})
        world.reconciler.run_until_idle()
        advance(dt.timedelta(minutes=5))

        def user_stops_first(point: str) -> None:
            if point == "policy-planned":
                user_desire(world, env, DesiredState.STOPPED)

        assert policy_tick(dataclasses.replace(ctx, kill_point=user_stops_first)).stopped == []
        desired, conditions = desired_and_conditions(world, env)
        assert (desired, conditions) == ("stopped", [])
        assert events(world, "MaxDurationReached") == []
        (by_user,) = events(world, "DesiredStopped", env)
        assert by_user.actor_user_id == world.user


def test_a_fenced_out_leader_stops_nothing(world: World) -> None:
    with clock.frozen_at(START) as advance:
        env = world.submit("short", {**SPEC, "policies": {"max_duration": "1m"}})
        world.reconciler.run_until_idle()
        advance(dt.timedelta(minutes=5))
        stale = dataclasses.replace(world.reconciler.ctx, epoch=world.reconciler.ctx.epoch - 1)
        with pytest.raises(FencedOutError):
            policy_tick(stale)
        assert desired_and_conditions(world, env) == ("running", [])
        assert events(world, "MaxDurationReached") == []
        assert policy_tick(world.reconciler.ctx).stopped == [env]
