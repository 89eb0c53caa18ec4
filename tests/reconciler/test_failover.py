"""Several reconcilers at once, leaders killed, terminated and paused: one acts, another takes over, the
old one's writes are refused by fencing, and work converges even with every notification lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.capacity.audit import audit
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import FencedOutError, LeaderElector, fence
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.ops.processes import Output
from remotegpu.tests.polling import poll_until
from remotegpu.tests.reconciler.world import World, build_world

FAST = Settings(heartbeat_seconds=0.2, resync_seconds=1.0, lease_seconds=5.0)


WAIT_S = 20.0
"""How long a failover test waits for what the replicas do on their own (threads, leases, takeovers)."""


class Replicas:
    """Reconcilers running in threads against one database and one in-memory cluster."""

    def __init__(self, world: World, count: int, *, listen: bool = True, settings: Settings = FAST) -> None:
        self.world = world
        self.stop = threading.Event()
        self.members = [
            Reconciler(
                world.url,
                world.cluster,
                settings,
                identity=f"replica-{i}",
                listen=listen,
                secrets=world.secrets,
            )
            for i in range(count)
        ]
        self.threads = [threading.Thread(target=r.run, args=(self.stop,), daemon=True) for r in self.members]
        for thread in self.threads:
            thread.start()

    def leaders(self) -> list[Reconciler]:
        return [member for member in self.members if member.is_leader]

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    made = build_world(engine, database_url, hosts=2)
    made.reconciler.close()  # these tests run their own replicas
    yield made
    with engine.connect() as connection:
        assert audit(connection) == []


def _phases(world: World, envs: list[uuid.UUID]) -> Callable[[], list[str]]:
    return lambda: [world.phase(env) for env in envs]


def _all_running(phases: list[str]) -> bool:
    return all(phase == "running" for phase in phases)


def test_with_three_replicas_exactly_one_acts(world: World) -> None:
    replicas = Replicas(world, 3)
    try:
        poll_until(lambda: len(replicas.leaders()), WAIT_S, "exactly one leader", until=lambda n: n == 1)
        envs = [world.submit(f"env-{i}") for i in range(5)]
        samples: list[int] = []

        def phases_sampling_leaders() -> list[str]:
            samples.append(len(replicas.leaders()))
            return _phases(world, envs)()

        poll_until(phases_sampling_leaders, WAIT_S, "every environment running", until=_all_running)
        assert set(samples) == {1}, "never zero or two leaders while work was done"
        (leader,) = replicas.leaders()
        assert leader.steps_done > 0
        assert [m.steps_done for m in replicas.members if m is not leader] == [0, 0]
    finally:
        replicas.close()


def test_singleton_jobs_run_only_on_the_leader(world: World) -> None:
    ran: dict[str, int] = {}

    def job(ctx: ReconcilerContext) -> None:
        ran[ctx.identity] = ran.get(ctx.identity, 0) + 1

    stop = threading.Event()
    members = [
        Reconciler(world.url, world.cluster, FAST, identity=f"jobs-{i}", listen=False, secrets=world.secrets)
        for i in range(2)
    ]
    for member in members:
        member.add_job(job, 0.1, "count")
    threads = [threading.Thread(target=m.run, args=(stop,), daemon=True) for m in members]
    for thread in threads:
        thread.start()
    try:
        poll_until(lambda: sum(ran.values()) >= 3, WAIT_S, "the job to run")
        (leader,) = [m for m in members if m.is_leader]
        assert set(ran) == {leader.identity}
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)


def test_a_terminated_leader_is_replaced_and_its_epoch_fenced(world: World, engine: Engine) -> None:
    replicas = Replicas(world, 2)
    try:
        poll_until(lambda: len(replicas.leaders()), WAIT_S, "exactly one leader", until=lambda n: n == 1)
        (old,) = replicas.leaders()
        old_epoch = old.elector.epoch
        assert old_epoch is not None
        with engine.connect() as admin:
            terminated = admin.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE pid = :pid AND datname = current_database()"
                ),
                {"pid": old.elector.backend_pid()},
            ).scalar_one()
        assert terminated
        poll_until(
            lambda: any(m.is_leader and m is not old for m in replicas.members), WAIT_S, "a new leader"
        )
        with pytest.raises(FencedOutError), engine.begin() as connection:
            fence(connection, 0, old_epoch)
        env = world.submit("after-failover")
        poll_until(_phases(world, [env]), WAIT_S, "work after the failover", until=_all_running)
    finally:
        replicas.close()


def test_every_environment_converges_with_every_notification_lost(world: World) -> None:
    replicas = Replicas(world, 1, listen=False, settings=FAST)
    try:
        envs = [world.submit(f"quiet-{i}") for i in range(4)]
        poll_until(_phases(world, envs), 3 * FAST.resync_seconds + 5, "convergence", until=_all_running)
    finally:
        replicas.close()


def _child(database_url: URL) -> tuple[subprocess.Popen[str], Output]:
    rendered = database_url.render_as_string(hide_password=False)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from remotegpu.tests.reconciler.leader_child import main; main({rendered!r})",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, Output(process)


def _expect(output: Output, prefix: str, timeout_s: float = WAIT_S) -> None:
    assert output.wait_for(prefix, timeout_s), f"the child never printed {prefix!r}: {output.seen}"


def _campaign_until_leading(elector: LeaderElector, timeout_s: float = 20) -> float:
    started = time.monotonic()
    poll_until(elector.campaign, timeout_s, "the takeover", interval_s=0.05)
    return time.monotonic() - started


def test_a_killed_leader_process_is_replaced(database_url: URL, sessions: object) -> None:
    process, output = _child(database_url)
    successor = LeaderElector(database_url, identity="successor")
    try:
        _expect(output, "leading")
        assert not successor.campaign()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        _campaign_until_leading(successor)
        assert successor.epoch == 2
    finally:
        process.kill()
        successor.close()


def test_a_paused_leader_is_replaced_and_its_writes_are_fenced_when_it_resumes(
    database_url: URL, engine: Engine, sessions: object
) -> None:
    process, output = _child(database_url)
    successor = LeaderElector(database_url, identity="successor")
    try:
        _expect(output, "leading")
        _expect(output, "write ok")
        process.send_signal(signal.SIGSTOP)
        _campaign_until_leading(successor)  # the server ends the paused leader's idle session
        with engine.connect() as connection:
            writes_at_takeover = connection.execute(
                text("SELECT count(*) FROM events WHERE reason = 'ChildWrite'")
            ).scalar_one()
        process.send_signal(signal.SIGCONT)
        _expect(output, "write fenced")
        with engine.connect() as connection:
            writes_after = connection.execute(
                text("SELECT count(*) FROM events WHERE reason = 'ChildWrite'")
            ).scalar_one()
        assert writes_after == writes_at_takeover, "no write of the old leader may commit after the takeover"
    finally:
        process.kill()
        successor.close()


def drop_connections(engine: Engine, application_name: str, *, keep: int) -> int:
    """Terminate the connections of one application to this test's database, all but `keep` (a backend
    pid); how many. Only this database's: parallel test runs and a dev stack share the server, and their
    reconcilers carry the same application names."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = :name AND pid <> :keep"
                ),
                {"name": application_name, "keep": keep},
            ).scalar_one()
        )


def test_dropping_connections_spares_other_databases_on_the_server(
    engine: Engine, postgres_server_url: URL
) -> None:
    assert postgres_server_url.database != engine.url.database
    bystander = make_engine(postgres_server_url, pool_size=1, application_name="remotegpu-reconciler-0")
    try:
        with bystander.connect() as connection:
            connection.execute(text("SELECT 1"))
            drop_connections(engine, "remotegpu-reconciler-0", keep=0)
            assert connection.execute(text("SELECT 1")).scalar_one() == 1, "another run's reconciler"
    finally:
        bystander.dispose()


def test_the_leader_loop_survives_its_database_connections_being_dropped(
    world: World, engine: Engine
) -> None:
    replicas = Replicas(world, 1)
    try:
        leader = replicas.members[0]
        before = world.submit("before")
        poll_until(_phases(world, [before]), WAIT_S, "the first environment", until=_all_running)
        lock = leader.elector.backend_pid()
        assert lock is not None
        # what a Postgres restart or a proxy timeout does to the pool
        assert drop_connections(engine, "remotegpu-reconciler-0", keep=lock) >= 1
        after = world.submit("after")
        poll_until(
            _phases(world, [after]), WAIT_S, "an environment submitted after the drop", until=_all_running
        )
        assert leader.is_leader
        assert all(thread.is_alive() for thread in replicas.threads)
    finally:
        replicas.close()
