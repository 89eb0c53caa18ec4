"""The fenced-write audit: a reconciler's writes carry its shard and epoch, and a write that a replaced
leader got through after the newer term began is reported, while writes fenced in time never are.

The interleavings are reproduced with barriers on real Postgres sessions (a writer holding its fence
while a takeover waits, a writer fencing after a takeover), not by racing processes."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, TextClause, text
from sqlalchemy.engine import URL

from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.fencing_audit import late_writes, stamped_tables
from remotegpu.reconciler.leader import FencedOutError, LeaderElector, fence
from remotegpu.reconciler.scheduler import schedule_pass
from remotegpu.reconciler.writer_stamp import stamp_writes, writer_value
from remotegpu.tests.allocation_world import make_host
from remotegpu.tests.polling import poll_until
from remotegpu.tests.reconciler.world import SPEC, build_world


@pytest.fixture
def host(engine: Engine, sessions: object) -> uuid.UUID:
    with engine.begin() as connection:
        return make_host(connection, gpus=1, name="audited")


@pytest.fixture
def electors(database_url: URL) -> Iterator[tuple[LeaderElector, LeaderElector]]:
    old = LeaderElector(database_url, identity=f"old-{uuid.uuid4().hex[:6]}")
    new = LeaderElector(database_url, identity=f"new-{uuid.uuid4().hex[:6]}")
    yield old, new
    old.close()
    new.close()


@dataclass
class Term:
    """`old` leads shard 0 at `epoch` and `writer` writes as its reconciler would; `new` waits to take over."""

    old: LeaderElector
    new: LeaderElector
    epoch: int
    writer: Engine


@pytest.fixture
def term(database_url: URL, electors: tuple[LeaderElector, LeaderElector]) -> Iterator[Term]:
    old, new = electors
    assert old.campaign()
    assert old.epoch is not None
    writer = _writer_engine(database_url, 0, old.epoch)
    yield Term(old, new, old.epoch, writer)
    writer.dispose()


def _writer_engine(database_url: URL, shard: int, epoch: int) -> Engine:
    """An engine whose connections stamp like a reconciler leading `shard` at `epoch`."""
    engine = make_engine(database_url, pool_size=1, application_name="remotegpu-tests-writer")
    stamp_writes(engine, lambda: writer_value(shard, epoch))
    return engine


def _touch(host: uuid.UUID) -> TextClause:
    return text(f"UPDATE hosts SET labels = labels || '{{\"touched\": \"yes\"}}' WHERE id = '{host}'")


def test_a_reconcilers_writes_carry_its_shard_and_epoch_and_api_writes_keep_them(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    world = build_world(engine, database_url)
    try:
        env = world.submit("stamped")
        world.reconciler.run_until_idle()
        epoch = world.reconciler.elector.epoch
        assert epoch is not None
        stamp = text("SELECT writer_shard, writer_epoch, written_at FROM environments WHERE id = :id")
        with engine.connect() as connection:
            before = connection.execute(stamp, {"id": env}).one()
            assert (before.writer_shard, before.writer_epoch) == (0, epoch)
            assert (
                connection.execute(
                    text("SELECT count(*) FROM claim_history WHERE writer_epoch = :epoch"), {"epoch": epoch}
                ).scalar_one()
                > 0
            )
            assert (
                connection.execute(
                    text("SELECT leader_id FROM leader_terms WHERE shard = 0 AND epoch = :epoch"),
                    {"epoch": epoch},
                ).scalar_one()
                == "test-reconciler"
            )
        world.desire(env, DesiredState.STOPPED)  # the test's engine writes as the API does: no stamp
        with engine.connect() as connection:
            assert tuple(connection.execute(stamp, {"id": env}).one()) == tuple(before)
            assert late_writes(connection) == []
    finally:
        world.reconciler.close()


def test_the_tables_the_reconciler_writes_are_all_stamped() -> None:
    assert {
        "environments",
        "claim_history",
        "gpu_claims",
        "port_mappings",
        "billing_intervals",
        "meters",
        "queue_buckets",
    } <= set(stamped_tables())


def test_a_write_that_bypasses_the_fence_after_a_takeover_is_reported(
    engine: Engine, host: uuid.UUID, term: Term
) -> None:
    term.old.step_down("replaced")  # its session ends, as when a paused leader's connection is cut
    assert term.new.campaign()
    assert term.new.epoch == term.epoch + 1
    with pytest.raises(FencedOutError), term.writer.begin() as connection:  # the fenced write: refused
        connection.execute(_touch(host))
        fence(connection, 0, term.epoch)
    with engine.connect() as connection:
        assert late_writes(connection) == []
    with term.writer.begin() as connection:  # the same write without its fence: it lands, and is seen
        connection.execute(_touch(host))
    with engine.connect() as connection:
        found = late_writes(connection)
    assert len(found) == 1
    assert found[0].startswith(f"hosts: a write of shard 0 epoch {term.epoch} at")
    assert f"after epoch {term.epoch + 1} began" in found[0]


def test_a_write_fenced_before_a_takeover_commits_before_the_new_term_begins(
    engine: Engine, host: uuid.UUID, term: Term
) -> None:
    took_over = threading.Event()

    def take_over() -> None:
        if term.new.campaign():
            took_over.set()

    with term.writer.begin() as connection:
        connection.execute(_touch(host))
        fence(connection, 0, term.epoch)  # holds the shard row FOR SHARE until this transaction ends
        term.old.step_down("replaced")
        campaign = threading.Thread(target=take_over)
        campaign.start()
        poll_until(
            lambda: _waiting_for_a_lock(engine, term.new.identity), what="the takeover to wait for the fence"
        )
        assert not took_over.is_set()
    campaign.join(timeout=10)
    assert took_over.is_set()
    assert term.new.epoch == term.epoch + 1
    with engine.connect() as connection:
        written_at = connection.execute(
            text("SELECT written_at FROM hosts WHERE id = :id AND writer_epoch = :epoch"),
            {"id": host, "epoch": term.epoch},
        ).scalar_one()
        began_at = connection.execute(
            text("SELECT began_at FROM leader_terms WHERE shard = 0 AND epoch = :epoch"),
            {"epoch": term.epoch + 1},
        ).scalar_one()
        assert written_at < began_at
        assert late_writes(connection) == []


def test_a_write_fenced_after_a_takeover_is_rolled_back_and_leaves_nothing_to_report(
    engine: Engine, host: uuid.UUID, term: Term
) -> None:
    with pytest.raises(FencedOutError), term.writer.begin() as connection:
        connection.execute(_touch(host))  # written before the takeover, not yet fenced
        term.old.step_down("replaced")
        assert term.new.campaign()  # nothing holds the shard row: the takeover commits at once
        fence(connection, 0, term.epoch)
    with engine.connect() as connection:
        touched = connection.execute(
            text("SELECT labels ? 'touched' FROM hosts WHERE id = :id"), {"id": host}
        ).scalar_one()
        assert touched is False
        assert late_writes(connection) == []


def _waiting_for_a_lock(engine: Engine, identity: str) -> bool:
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
                    " AND wait_event_type = 'Lock' AND datname = current_database()"
                ),
                {"name": f"remotegpu-leader-{identity}"[:63]},
            ).scalar_one()
        )


def test_a_replaced_leaders_scheduling_pass_writes_no_queue_position(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    """Found by a 30-minute chaos run: a leader paused past its lease woke up mid-pass and wrote the
    queue's positions after its successor began (the pass fenced its claims, not its positions)."""
    world = build_world(engine, database_url)
    successor = LeaderElector(database_url, identity="successor")
    try:
        big = {**SPEC, "resources": {"gpus": {"count": 8, "model": "H100"}}}
        world.submit("runs", big)
        waits = world.submit("waits", big)
        world.reconciler.run_until_idle()
        assert world.row(waits).queue_reason == "waiting for 8×H100"
        with engine.begin() as connection:  # as if the queue were not published yet
            connection.execute(text("DELETE FROM queue_buckets"))
        stale = world.reconciler.ctx
        world.reconciler.elector.step_down("paused past its lease")
        assert successor.campaign()
        with pytest.raises(FencedOutError):
            schedule_pass(stale)
        assert (world.row(waits).queue_position, world.row(waits).queue_reason) == (None, None)
        with engine.connect() as connection:
            assert late_writes(connection) == []
    finally:
        successor.close()
        world.reconciler.close()
