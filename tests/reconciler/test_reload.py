"""A running replica takes reloaded settings: its worker pool and leader-job intervals change at the
next tick; what it cannot change while running is left for a restart."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from remotegpu.core.platform.settings import Settings
from remotegpu.tests.reconciler.world import build_world


def test_workers_and_job_intervals_change_at_the_next_tick(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    world = build_world(engine, database_url)
    try:
        reconciler = world.reconciler
        reconciler.run_until_idle()  # leads, with its jobs scheduled
        new = Settings(reconcile_workers=3, meter_seconds=42, policy_seconds=7, api_port=9999)
        taken = reconciler.apply_settings(new)
        assert taken == {"reconcile_workers", "meter_seconds", "policy_seconds"}, "api_port needs a restart"
        assert reconciler.ctx.settings.reconcile_workers == 8, (
            "applied by the loop's thread, not the caller's"
        )
        reconciler.tick()
        assert reconciler.ctx.settings.reconcile_workers == 3
        assert reconciler._workers._max_workers == 3
        assert reconciler.ctx.settings.api_port == 8080
        jobs = reconciler._jobs
        assert jobs is not None
        assert jobs.get_job("metering").trigger.interval == dt.timedelta(seconds=42)
        assert jobs.get_job("policies").trigger.interval == dt.timedelta(seconds=7)
        assert reconciler.apply_settings(new) == set(), "nothing left to change"
    finally:
        world.reconciler.close()


def test_a_reload_taken_back_before_it_was_applied_leaves_nothing_to_apply(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    """A standby applies settings only when it leads: a reload and its revert in between must not leave
    the reloaded values waiting for its first tick."""
    world = build_world(engine, database_url)
    try:
        reconciler = world.reconciler
        running = reconciler.ctx.settings
        short = Settings(reconcile_workers=running.reconcile_workers, resync_seconds=1)
        assert reconciler.apply_settings(short) == {"resync_seconds"}
        assert reconciler.apply_settings(running) == {"resync_seconds"}, "changed back"
        reconciler.run_until_idle()  # leads and ticks
        reconciler.tick()
        assert reconciler.ctx.settings.resync_seconds == running.resync_seconds
    finally:
        world.reconciler.close()
