"""A kill -9 of the reconciler while it meters changes no total: a leader in a process of its own ticks
the meter over many meters, in many small writes, and is SIGKILLed at a random moment; a new leader
takes over and meters on from the cursors. Afterwards every environment's sum per resource equals
quantity × price in force × time (the model of `tests/properties/metering_model.py`, within its
per-interval rounding), and the billing audit finds nothing."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.billing.audit import audit_billing
from remotegpu.core.billing.meters import close_compute_meters
from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.ops.bench.billing import GPU_PRICE_CHANGE, PRICES, START, seed
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import LeaderElector
from remotegpu.reconciler.metering import meter_tick
from remotegpu.tests.ops.processes import Output
from remotegpu.tests.polling import poll_until
from remotegpu.tests.properties.metering_model import Span, Timeline, billed, total_findings

ENVS = 60
STEP = dt.timedelta(minutes=1)
END = START + dt.timedelta(hours=6)
"""Where the successor meters to: far past anything the child reaches before it is killed."""


def _timeline(engine: Engine) -> Timeline:
    """The charges the seeded meters must come to, by the model: the seed's prices, and each meter's
    spell as seeded (before any metering)."""
    timeline = Timeline()
    for (resource, model), price in PRICES.items():
        timeline.set_price((resource, model), Decimal(price), START - dt.timedelta(days=1))
    timeline.set_price(("gpu", "H100"), Decimal(GPU_PRICE_CHANGE[0]), GPU_PRICE_CHANGE[1])
    with engine.connect() as connection:
        for row in connection.execute(
            text(
                "SELECT environment_id, resource, subject, gpu_model, quantity, started_at, ended_at FROM meters"
            )
        ):
            timeline.spans.append(
                Span(
                    row.environment_id,
                    row.resource,
                    row.subject,
                    row.gpu_model,
                    row.quantity,
                    row.started_at,
                    row.ended_at,
                )
            )
    return timeline


def _child(database_url: URL, chunk: int) -> tuple[subprocess.Popen[str], Output]:
    rendered = database_url.render_as_string(hide_password=False)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remotegpu.tests.reconciler.meter_child",
            rendered,
            START.isoformat(),
            str(STEP.total_seconds()),
            str(chunk),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, Output(process)


@pytest.mark.parametrize("seed_value", [1, 2])
def test_a_kill_9_during_metering_changes_no_total(
    engine: Engine, database_url: URL, sessions: object, seed_value: int
) -> None:
    rng = random.Random(seed_value)
    workspace, _ = seed(engine, ENVS, START)
    with engine.begin() as connection:  # some runs were observed stopping along the way
        stopped = (
            connection.execute(
                text("SELECT id FROM environments WHERE workspace_id = :w ORDER BY id LIMIT :n"),
                {"w": workspace, "n": ENVS // 4},
            )
            .scalars()
            .all()
        )
        for index, environment in enumerate(stopped):
            connection.execute(
                *close_compute_meters(environment, START + dt.timedelta(minutes=1 + 2 * index, seconds=7))
            )
    timeline = _timeline(engine)
    process, output = _child(database_url, chunk=rng.choice([3, 7, 16]))
    successor = LeaderElector(database_url, identity="successor")
    try:
        assert output.wait_for("leading", 20), output.seen
        assert output.wait_for("tick", 20), output.seen
        delay = rng.uniform(0.0, 0.5)
        time.sleep(delay)  # real time: a random moment while the child meters
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        with engine.connect() as connection:
            before = connection.execute(text("SELECT count(*) FROM billing_intervals")).scalar_one()
        assert before > 0, "the child metered before it was killed"
        poll_until(successor.campaign, 20, "the takeover", interval_s=0.05)
        assert successor.epoch is not None
        assert successor.epoch >= 2
        ctx = ReconcilerContext(engine, InMemoryCluster(), Settings(), "successor", epoch=successor.epoch)
        with clock.frozen_at(END):
            meter_tick(ctx)
            assert meter_tick(ctx).meters == 0, "nothing left after one tick"
        with engine.connect() as connection:
            assert audit_billing(connection, "month", "USD") == []
            totals = billed(connection)
        assert total_findings(totals, timeline.expected(END)) == [], (delay, output.seen[-3:])
    finally:
        process.kill()
        successor.close()
