"""Metering through the reconciler: an environment observed running accrues GPU, CPU and memory until it
is observed stopped, its volume accrues storage until it is deleted, every interval priced with the
price in force at its start, cut at price changes and period boundaries; a killed or raced tick counts
nothing twice and loses nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.billing.audit import audit_billing
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.context import SimulatedCrashError
from remotegpu.reconciler.leader import FencedOutError
from remotegpu.reconciler.metering import TickReport, meter_tick
from remotegpu.tests.reconciler.test_kill_points import KillOnce
from remotegpu.tests.reconciler.world import World, build_world

START = dt.datetime(2026, 11, 30, 22, 0, tzinfo=dt.UTC)  # two hours before a month boundary
PRICES = {
    ("gpu", "H100"): "2.49",
    ("cpu", None): "0.02",
    ("memory", None): "0.005",
    ("storage", None): "0.10",
}


def set_prices(engine: Engine, prices: dict[tuple[str, str | None], str], since: dt.datetime) -> None:
    with engine.begin() as connection:
        for (resource, model), price in prices.items():
            connection.execute(
                text(
                    "INSERT INTO prices (resource, gpu_model, unit_price, effective_from) VALUES (:r, :m, :p, :t)"
                ),
                {"r": resource, "m": model, "p": Decimal(price), "t": since},
            )


def totals(engine: Engine, environment: uuid.UUID) -> dict[str, Decimal]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT resource, sum(amount) AS amount FROM billing_intervals WHERE environment_id = :id"
                " GROUP BY resource"
            ),
            {"id": environment},
        )
        return {row.resource: row.amount for row in rows}


def expected(hours: dict[str, Decimal]) -> dict[str, Decimal]:
    """SPEC's environment (2 H100, 8 cores, 64 GiB, a 100 GiB volume) over `hours` per resource."""
    quantity = {"gpu": Decimal(2), "cpu": Decimal(8), "memory": Decimal(64), "storage": Decimal(100)}
    per = {"gpu": Decimal(1), "cpu": Decimal(1), "memory": Decimal(1), "storage": Decimal(730)}
    prices = {resource: Decimal(price) for (resource, _), price in PRICES.items()}
    return {r: quantity[r] * prices[r] * h / per[r] for r, h in hours.items()}


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    with clock.frozen_at(START):
        made = build_world(engine, database_url)
        yield made
        made.reconciler.close()
    with engine.connect() as connection:
        assert audit_billing(connection, "month", "USD") == []


def test_a_run_accrues_compute_while_running_and_storage_until_deleted(world: World) -> None:
    set_prices(world.engine, PRICES, START - dt.timedelta(days=1))
    with clock.frozen_at(START) as advance:
        env = world.submit("train")
        world.reconciler.run_until_idle()
        assert world.phase(env) == "running"
        advance(dt.timedelta(minutes=90))
        meter_tick(world.reconciler.ctx)
        assert totals(world.engine, env) == pytest.approx(expected(dict.fromkeys(PRICES_R, Decimal("1.5"))))
        world.desire(env, DesiredState.STOPPED)
        world.reconciler.run_until_idle()
        advance(dt.timedelta(hours=1))  # stopped: only the volume accrues
        meter_tick(world.reconciler.ctx)
        hours = {
            "gpu": Decimal("1.5"),
            "cpu": Decimal("1.5"),
            "memory": Decimal("1.5"),
            "storage": Decimal("2.5"),
        }
        assert totals(world.engine, env) == pytest.approx(expected(hours))
        world.desire(env, DesiredState.DELETED)
        world.reconciler.run_until_idle()
        advance(dt.timedelta(hours=1))
        meter_tick(world.reconciler.ctx)
        assert totals(world.engine, env) == pytest.approx(expected(hours)), "deleted: nothing more"
        with world.engine.connect() as connection:
            crossing = connection.execute(
                text("SELECT count(*) FROM billing_intervals WHERE started_at < :b AND ended_at > :b"),
                {"b": dt.datetime(2026, 12, 1, tzinfo=dt.UTC)},
            ).scalar_one()
        assert crossing == 0, "no interval crosses the month boundary"


PRICES_R = ("gpu", "cpu", "memory", "storage")


def test_running_meters_close_at_moments_of_their_own_and_each_once_per_close_period(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    """With `meter_close_seconds` 1800 and a tick every 5 minutes, each running meter has exactly one
    close point in any half hour: six ticks close each once, spread over the ticks rather than all at
    one, and the intervals still tile each meter up to its cursor."""
    with clock.frozen_at(START) as advance:
        world = build_world(engine, database_url, hosts=4, settings=Settings(meter_close_seconds=1800))
        try:
            set_prices(engine, PRICES, START - dt.timedelta(days=1))
            for index in range(8):
                world.submit(f"train-{index}")
            world.reconciler.run_until_idle()
            closed = []
            for _ in range(6):
                advance(dt.timedelta(minutes=5))
                closed.append(meter_tick(world.reconciler.ctx).advanced)
        finally:
            world.reconciler.close()
    with engine.connect() as connection:
        meters = connection.execute(text("SELECT count(*) FROM meters WHERE ended_at IS NULL")).scalar_one()
        per_meter = (
            connection.execute(text("SELECT count(*) FROM billing_intervals GROUP BY meter_id"))
            .scalars()
            .all()
        )
        assert audit_billing(connection, "month", "USD") == []
    assert meters == 32, "8 environments, each with GPU, CPU, memory and a volume"
    assert sum(closed) == meters
    assert per_meter == [1] * meters
    assert max(closed) < meters, f"spread over the ticks: {closed}"


def test_a_price_change_mid_run_cuts_the_interval_and_is_never_retroactive(world: World) -> None:
    set_prices(world.engine, {("gpu", "H100"): "2.00"}, START - dt.timedelta(days=1))
    with clock.frozen_at(START) as advance:
        env = world.submit("train")
        world.reconciler.run_until_idle()
        set_prices(world.engine, {("gpu", "H100"): "3.00"}, START + dt.timedelta(minutes=30))
        advance(dt.timedelta(hours=1))
        meter_tick(world.reconciler.ctx)
    with world.engine.connect() as connection:
        gpu = connection.execute(
            text(
                "SELECT unit_price, amount, ended_at - started_at AS length FROM billing_intervals"
                " WHERE environment_id = :id AND resource = 'gpu' ORDER BY started_at"
            ),
            {"id": env},
        ).all()
    assert [(row.unit_price, row.length) for row in gpu] == [
        (Decimal("2.00"), dt.timedelta(minutes=30)),
        (Decimal("3.00"), dt.timedelta(minutes=30)),
    ]
    assert (
        sum(row.amount for row in gpu)
        == Decimal("2") * Decimal("0.5") * 2 + Decimal("2") * Decimal("0.5") * 3
    )
    assert totals(world.engine, env)["cpu"] == 0, "no CPU price: it costs nothing, and stays so"


@pytest.mark.parametrize("point", ["meter-planned", "meter-chunk-written"])
def test_a_killed_tick_loses_nothing_and_counts_nothing_twice(
    engine: Engine, database_url: URL, sessions: object, point: str
) -> None:
    kill = KillOnce(point)
    with clock.frozen_at(START) as advance:
        world = build_world(engine, database_url, kill_point=kill)
        try:
            set_prices(engine, PRICES, START - dt.timedelta(days=1))
            env = world.submit("train")
            world.reconciler.run_until_idle()
            advance(dt.timedelta(hours=1))
            with pytest.raises(SimulatedCrashError):
                meter_tick(world.reconciler.ctx)
            meter_tick(world.reconciler.ctx)
            meter_tick(world.reconciler.ctx)  # nothing left: no interval twice
            assert totals(engine, env) == pytest.approx(expected(dict.fromkeys(PRICES_R, Decimal(1))))
            with engine.connect() as connection:
                assert audit_billing(connection, "month", "USD") == []
        finally:
            world.reconciler.close()


def test_two_meters_from_the_same_read_write_each_span_once(world: World) -> None:
    """The second meter reads and plans the same spans, then the first writes everything before it."""
    set_prices(world.engine, PRICES, START - dt.timedelta(days=1))
    ctx = world.reconciler.ctx
    with clock.frozen_at(START) as advance:
        env = world.submit("train")
        world.reconciler.run_until_idle()
        advance(dt.timedelta(hours=1))
        first: list[TickReport] = []

        def the_other_meter_goes_first(point: str) -> None:
            if point == "meter-planned" and not first:
                first.append(meter_tick(dataclasses.replace(ctx, kill_point=lambda _: None)))

        second = meter_tick(dataclasses.replace(ctx, kill_point=the_other_meter_goes_first))
    assert (first[0].intervals, first[0].advanced) == (4, 4)
    assert (second.meters, second.advanced, second.intervals) == (4, 0, 0)
    assert totals(world.engine, env) == pytest.approx(expected(dict.fromkeys(PRICES_R, Decimal(1))))


def test_a_fenced_out_leader_meters_nothing(world: World) -> None:
    set_prices(world.engine, PRICES, START - dt.timedelta(days=1))
    with clock.frozen_at(START) as advance:
        env = world.submit("train")
        world.reconciler.run_until_idle()
        advance(dt.timedelta(hours=1))
        stale = dataclasses.replace(world.reconciler.ctx, epoch=world.reconciler.ctx.epoch - 1)
        with pytest.raises(FencedOutError):
            meter_tick(stale)
        assert totals(world.engine, env) == {}
        meter_tick(world.reconciler.ctx)
    assert totals(world.engine, env) == pytest.approx(expected(dict.fromkeys(PRICES_R, Decimal(1))))
