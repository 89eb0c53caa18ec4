"""Gateway connections made and removed by the reconciler, against each product's contract fake: one
connection per running environment, reaching its sshd with its platform key, open to its owner (and the
workspace's admins where the workspace says so), gone on stop; an outage is a retry, never a failure; a
step killed between the gateway's create and the record converges to one connection; the collector
removes connections of environments that do not run."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.environments.access_keys import PlatformKeys
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.gateways.gateway import GatewayTarget, GatewayUser
from remotegpu.core.platform import clock
from remotegpu.reconciler.gc import collect_garbage
from remotegpu.tests.allocation_world import make_user
from remotegpu.tests.reconciler.gateway_world import GATEWAYS, GatewayView, gateway_world, live_endpoints
from remotegpu.tests.reconciler.test_kill_points import KillOnce
from remotegpu.tests.reconciler.world import SPEC, World

START = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
SSH_ONLY = {**SPEC, "access": ["ssh"]}


@pytest.fixture(params=sorted(GATEWAYS))
def view(request: pytest.FixtureRequest) -> Iterator[GatewayView]:
    with GATEWAYS[request.param]() as started:
        yield started


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object, view: GatewayView) -> Iterator[World]:
    with clock.frozen_at(START):
        made = gateway_world(engine, database_url, view)
        yield made
        made.reconciler.close()


def _username(world: World, user: uuid.UUID) -> str:
    with world.engine.connect() as connection:
        return str(
            connection.execute(text("SELECT username FROM users WHERE id = :id"), {"id": user}).scalar_one()
        )


def _ssh_port(world: World, environment: uuid.UUID) -> int:
    with world.engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT host_port FROM port_mappings WHERE environment_id = :id AND purpose = 'ssh'"
                    " AND released_at IS NULL"
                ),
                {"id": environment},
            ).scalar_one()
        )


def test_a_running_environment_has_one_connection_for_its_owner_gone_on_stop(
    world: World, view: GatewayView
) -> None:
    env = world.submit("box", SSH_ONLY)
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    assert view.count(env) == 1
    host, port, username, key = view.target_of(env)
    assert (host, port, username) == ("node-0", _ssh_port(world, env), "root")
    assert key == PlatformKeys(world.secrets).private_key(world.workspace, env)
    assert view.entitled(env) == {_username(world, world.user)}, "its owner only"
    [(kind, url)] = live_endpoints(world.engine, env)
    assert kind == view.kind
    assert url.startswith(view.fake.url)

    with clock.frozen_at(START + dt.timedelta(seconds=11)):
        world.reconciler.run_until_idle()  # a resync of a running environment makes nothing new
    assert view.count(env) == 1

    world.desire(env, DesiredState.STOPPED)
    world.reconciler.run_until_idle()
    assert world.phase(env) == "stopped"
    assert view.connections() == []
    assert live_endpoints(world.engine, env) == []

    world.desire(env, DesiredState.RUNNING)
    world.reconciler.run_until_idle()
    assert view.count(env) == 1
    assert len(live_endpoints(world.engine, env)) == 1


def test_workspace_admins_are_entitled_only_where_the_workspace_says_so(
    world: World, view: GatewayView
) -> None:
    with world.engine.begin() as connection:
        admin = make_user(connection)
        connection.execute(
            text("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (:w, :u, 'admin')"),
            {"w": world.workspace, "u": admin},
        )
    env = world.submit("closed", SSH_ONLY)
    world.reconciler.run_until_idle()
    assert view.entitled(env) == {_username(world, world.user)}

    with world.engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE workspaces SET settings = '{\"admin_keys_in_member_environments\": true}' WHERE id = :w"
            ),
            {"w": world.workspace},
        )
    shared = world.submit("shared", SSH_ONLY)
    world.reconciler.run_until_idle()
    assert view.entitled(shared) == {_username(world, world.user), _username(world, admin)}


def test_an_environment_without_ssh_gets_no_connection(world: World, view: GatewayView) -> None:
    env = world.submit("notebook", {**SPEC, "access": ["jupyter"]})
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    assert view.connections() == []
    assert live_endpoints(world.engine, env) == []


def test_a_gateway_outage_is_retried_on_start_and_on_stop(
    engine: Engine, database_url: URL, sessions: object, view: GatewayView
) -> None:
    with clock.frozen_at(START) as advance:
        world = gateway_world(engine, database_url, view)
        try:
            view.fake.fail_next(3)
            env = world.submit("box", SSH_ONLY)
            world.reconciler.run_until_idle()
            row = world.row(env)
            assert (row.phase, row.reason) == ("provisioning", "GatewayUnavailable")
            assert "503" in row.last_error
            assert "password" not in row.last_error.lower()
            for _ in range(6):
                advance(dt.timedelta(seconds=5))
                world.reconciler.run_until_idle()
            assert world.phase(env) == "running"
            assert view.count(env) == 1

            view.fake.fail_next(3)
            world.desire(env, DesiredState.STOPPED)
            world.reconciler.run_until_idle()
            row = world.row(env)
            assert (row.phase, row.reason) == ("stopping", "GatewayUnavailable")
            assert world.cluster.live_pods() != [], "the pod stays until its connection is gone"
            for _ in range(6):
                advance(dt.timedelta(seconds=5))
                world.reconciler.run_until_idle()
            assert world.phase(env) == "stopped"
            assert view.connections() == []
        finally:
            world.reconciler.close()


def test_a_step_killed_after_the_gateway_made_the_connection_converges_to_one(
    engine: Engine, database_url: URL, sessions: object, view: GatewayView
) -> None:
    kill = KillOnce("after-gateway-connection")
    with clock.frozen_at(START) as advance:
        world = gateway_world(engine, database_url, view, kill_point=kill)
        try:
            env = world.submit("box", SSH_ONLY)
            for _ in range(3):
                world.reconciler.run_until_idle()
                advance(dt.timedelta(seconds=31))  # the killed step's lease expires
            assert kill.fired
            assert world.phase(env) == "running"
            assert view.count(env) == 1
            assert len(live_endpoints(engine, env)) == 1
            world.desire(env, DesiredState.STOPPED)
            world.reconciler.run_until_idle()
            assert view.connections() == []
        finally:
            world.reconciler.close()


def test_the_collector_removes_connections_of_environments_that_do_not_run(
    world: World, view: GatewayView
) -> None:
    running = world.submit("running", SSH_ONLY)
    stopped = world.submit("stopped", SSH_ONLY)
    world.reconciler.run_until_idle()
    world.desire(stopped, DesiredState.STOPPED)
    world.reconciler.run_until_idle()
    ctx = world.reconciler.ctx
    assert ctx.gateways is not None
    gateway = ctx.gateways.get(ctx.gateways.kinds()[0])
    platform = PlatformKeys(world.secrets)
    for environment in (stopped, uuid.uuid4()):  # a crashed stop's leftover; one of an environment gone
        gateway.ensure_connection(
            GatewayTarget(
                environment_id=environment,
                environment_name="leftover",
                workspace_id=world.workspace,
                hostname="node-0",
                port=30022,
                username="root",
                private_key=platform.private_key(world.workspace, running),
                users=(GatewayUser(_username(world, world.user), "owner@example.org", "owner"),),
            )
        )
    assert len(view.connections()) == 3

    cleaned = collect_garbage(ctx)
    assert cleaned["gateway_connections"] == 2
    assert view.connections() == [f"remotegpu-{running}"]
    assert collect_garbage(ctx)["gateway_connections"] == 0


def test_who_may_open_the_connection_follows_the_workspace_within_one_resync(
    world: World, view: GatewayView
) -> None:
    with world.engine.begin() as connection:
        admin = make_user(connection)
        connection.execute(
            text("INSERT INTO workspace_members (workspace_id, user_id, role) VALUES (:w, :u, 'admin')"),
            {"w": world.workspace, "u": admin},
        )
        connection.execute(
            text(
                "UPDATE workspaces SET settings = '{\"admin_keys_in_member_environments\": true}' WHERE id = :w"
            ),
            {"w": world.workspace},
        )
    env = world.submit("shared", SSH_ONLY)
    world.reconciler.run_until_idle()
    owner, colleague = _username(world, world.user), _username(world, admin)
    assert view.entitled(env) == {owner, colleague}
    calls = len(view.fake.requests)
    with clock.frozen_at(START + dt.timedelta(seconds=11)):
        world.reconciler.run_until_idle()
    assert len(view.fake.requests) == calls, "an unchanged plan costs no gateway call"

    with world.engine.begin() as connection:  # the admin leaves the workspace
        connection.execute(
            text("DELETE FROM workspace_members WHERE workspace_id = :w AND user_id = :u"),
            {"w": world.workspace, "u": admin},
        )
    with clock.frozen_at(START + dt.timedelta(seconds=22)):
        world.reconciler.run_until_idle()
    assert view.entitled(env) == {owner}, "a removed member loses the connection within one resync"
    assert view.count(env) == 1


def test_a_workspace_moving_to_direct_access_loses_its_gateway_connections(
    engine: Engine, database_url: URL, sessions: object, view: GatewayView
) -> None:
    with clock.frozen_at(START) as advance:
        world = gateway_world(engine, database_url, view, workspace_gateways=True)
        try:
            env = world.submit("box", SSH_ONLY)
            world.reconciler.run_until_idle()
            assert view.count(env) == 1
            with engine.begin() as connection:
                connection.execute(
                    text('UPDATE workspaces SET settings = \'{"gateway": "direct"}\' WHERE id = :w'),
                    {"w": world.workspace},
                )
            advance(dt.timedelta(seconds=11))
            world.reconciler.run_until_idle()
            assert world.phase(env) == "running"
            assert view.connections() == []
            assert live_endpoints(engine, env) == []
        finally:
            world.reconciler.close()
