"""Home volumes: with the workspace's `home_volume_size` set, a user's environments mount one persistent
volume at /home/<username>, made with the first of them and kept when they are deleted; it is metered as
storage from the moment it was made, once, whatever number of environments use it, and shows in usage
as the user's home."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.accounts.users import Principal
from remotegpu.core.billing.audit import audit_billing
from remotegpu.core.billing.usage import usage
from remotegpu.core.environments.states import DesiredState, UserRole
from remotegpu.core.platform import clock
from remotegpu.reconciler.metering import meter_tick
from remotegpu.tests.reconciler.test_metering import PRICES, START, set_prices
from remotegpu.tests.reconciler.world import World, build_world


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    with clock.frozen_at(START):
        made = build_world(engine, database_url)
        with engine.begin() as connection:
            connection.execute(
                text(
                    'UPDATE workspaces SET settings = settings || \'{"home_volume_size": "20Gi"}\' WHERE id = :w'
                ),
                {"w": made.workspace},
            )
        yield made
        made.reconciler.close()
    with engine.connect() as connection:
        assert audit_billing(connection, "month", "USD") == []


def _username(world: World) -> str:
    with world.engine.connect() as connection:
        return str(
            connection.execute(
                text("SELECT username FROM users WHERE id = :u"), {"u": world.user}
            ).scalar_one()
        )


def test_a_users_home_is_mounted_in_each_environment_outlives_them_and_is_metered_once(world: World) -> None:
    set_prices(world.engine, PRICES, START - dt.timedelta(days=1))
    claim = f"home-{world.workspace}-{world.user}"
    with clock.frozen_at(START) as advance:
        first = world.submit("first")
        world.reconciler.run_until_idle()
        assert world.phase(first) == "running"
        home = world.cluster.pods[f"env-{first}"].spec.home
        assert home is not None
        assert (home.claim, home.mount, home.size_bytes) == (claim, f"/home/{_username(world)}", 20 << 30)
        assert world.cluster.homes == {claim}
        world.desire(first, DesiredState.DELETED)
        world.reconciler.run_until_idle()
        assert world.cluster.homes == {claim}, "deleting the environment keeps its user's home"
        advance(dt.timedelta(hours=1))
        second = world.submit("second")
        world.reconciler.run_until_idle()
        assert world.cluster.pods[f"env-{second}"].spec.home == home
        advance(dt.timedelta(hours=1))
        meter_tick(world.reconciler.ctx)
        with world.engine.connect() as connection:
            homes = connection.execute(text("SELECT count(*) FROM home_volumes")).scalar_one()
            amount = connection.execute(
                text("SELECT sum(amount) FROM billing_intervals WHERE home_volume_id IS NOT NULL")
            ).scalar_one()
            principal = Principal(world.user, "u", "u@example.org", UserRole.ADMIN)
            answer = usage(
                connection,
                principal,
                str(world.workspace),
                START,
                START + dt.timedelta(hours=3),
                clock.now(),
                "month",
                currency="USD",
            )
    assert homes == 1
    assert amount == pytest.approx(
        Decimal(20) * Decimal("0.10") * 2 / 730
    )  # 20 GiB for 2 hours, per GiB-month
    home_lines = [line for line in answer.lines if line.environment_id is None]
    assert [(line.environment, line.subject) for line in home_lines] == [(f"home:{_username(world)}", "home")]


def test_without_the_setting_no_home_is_made(world: World) -> None:
    with world.engine.begin() as connection:
        connection.execute(
            text("UPDATE workspaces SET settings = settings - 'home_volume_size' WHERE id = :w"),
            {"w": world.workspace},
        )
    with clock.frozen_at(START):
        env = world.submit("plain")
        world.reconciler.run_until_idle()
    assert world.cluster.pods[f"env-{env}"].spec.home is None
    assert world.cluster.homes == set()
