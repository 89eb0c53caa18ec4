"""Metering against a model of the timeline: random starts, stops, restarts, deletes, price changes (now
or later), clock moves (across month boundaries), ticks, ticks killed between statements, two meters
racing, and leader changes — through the real reconciler on a frozen clock, with every meter closed
at every tick or each running meter at its own close points (`meter_close_seconds`).

After every step the billing audit finds nothing, every meter's intervals tile [started_at,
metered_until) exactly, and none crosses a price change or a month boundary or carries another price
than the model's in force at its start. At the end, with everything deleted and metered, each
environment's sum per resource equals quantity × price in force × observed running (or provisioned)
time, computed by the model alone, within the per-interval rounding (n × 0.5·10⁻¹² for n intervals).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.billing.audit import audit_billing
from remotegpu.core.billing.metering import CLOSE_POINT_DUE
from remotegpu.core.environments.states import DesiredState
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler import metering
from remotegpu.reconciler.context import SimulatedCrashError
from remotegpu.reconciler.leader import FencedOutError
from remotegpu.reconciler.loop import Reconciler
from remotegpu.reconciler.metering import TickReport, meter_tick
from remotegpu.tests.properties.harness import reset
from remotegpu.tests.properties.metering_model import (
    MODEL,
    SHAPES,
    PriceKey,
    Timeline,
    billed,
    table_findings,
    total_findings,
)
from remotegpu.tests.reconciler.test_kill_points import KillOnce
from remotegpu.tests.reconciler.world import World, build_world

START = dt.datetime(2026, 11, 30, 21, 0, tzinfo=dt.UTC)  # three hours before a month boundary
PRICE_KEYS: tuple[PriceKey, ...] = (("gpu", MODEL), ("cpu", None), ("memory", None), ("storage", None))
PRICES = st.decimals(min_value=0, max_value=50, places=6)
MOVE = st.one_of(st.just(0), st.integers(1, 4 * 3600))
"""How far a tick rule moves the clock first (so ticks find usage even where `wait` is left out)."""
CLOSE_SECONDS = st.sampled_from([0, 600, 1800])
"""`meter_close_seconds`: every tick closes every meter, or each running meter at its own close points."""
SHARDS = st.sampled_from([1, 2])
"""`reconciler_shards`: with 2, each shard's leader meters its own environments."""
SLOTS = st.integers(0, len(SHAPES) - 1)
"""Each slot holds one environment at a time (a new one after a delete), of that slot's shape."""


@dataclasses.dataclass
class Slot:
    environment: uuid.UUID | None = None
    phase: str = "absent"  # absent, running, stopped, deleted
    runs: int = 0


def _no_kill(_point: str) -> None:
    return None


def run_machine(engine: Engine, url: URL) -> None:
    class MeteringMachine(RuleBasedStateMachine):
        @initialize(close=CLOSE_SECONDS, shards=SHARDS)
        def build(self, close: int, shards: int) -> None:
            reset(engine)
            self.settings = Settings(meter_close_seconds=close, reconciler_shards=shards)
            self.exits = contextlib.ExitStack()
            self.advance = self.exits.enter_context(clock.frozen_at(START))
            self.world: World = build_world(engine, url, settings=self.settings)
            self.exits.callback(self._close_current)  # the leader changes: close the last one
            self.others = [  # the leaders of the other shards (shard 0's is the world's, and changes)
                Reconciler(
                    url,
                    self.world.cluster,
                    self.settings,
                    identity=f"shard-{shard}",
                    shard=shard,
                    listen=False,
                    secrets=self.world.secrets,
                )
                for shard in range(1, shards)
            ]
            self._settle()  # each leads from here on
            self.timeline = Timeline()
            self.slots = [Slot() for _ in SHAPES]
            self.successors = 0
            for key in PRICE_KEYS:
                self._price(key, Decimal("1.25"), START - dt.timedelta(days=1))
            self.start(0)  # something accrues even where hypothesis leaves `start` out (swarm testing)

        def teardown(self) -> None:
            if not hasattr(self, "exits"):
                return
            with self.exits:
                for index in range(len(self.slots)):
                    self.delete(index)
                self.advance(dt.timedelta(seconds=1))
                for leader in self._leaders():
                    meter_tick(leader.ctx)
                now = clock.now()
                with engine.connect() as connection:
                    due = connection.execute(
                        text("SELECT count(*) FROM meters WHERE ended_at IS NULL OR metered_until < ended_at")
                    ).scalar_one()
                    totals = billed(connection)
                assert due == 0, "everything deleted and metered"
                assert total_findings(totals, self.timeline.expected(now)) == []

        # -- helpers ---------------------------------------------------------------------------
        def _close_current(self) -> None:
            for leader in self._leaders():
                leader.close()

        def _leaders(self) -> list[Reconciler]:
            return [self.world.reconciler, *getattr(self, "others", [])]

        def _settle(self) -> None:
            """Every shard's leader works until none has anything left (shard 0 admits and places
            for all; each shard's leader then runs the steps of its own environments)."""
            for _ in range(20):
                if sum(leader.run_until_idle() for leader in self._leaders()) == 0:
                    return
            raise AssertionError("the shards' leaders did not settle")

        def _price(self, key: PriceKey, price: Decimal, since: dt.datetime) -> None:
            with engine.begin() as connection:
                connection.execute(
                    text(
                        "INSERT INTO prices (resource, gpu_model, unit_price, effective_from)"
                        " VALUES (:r, :m, :p, :t)"
                    ),
                    {"r": key[0], "m": key[1], "p": price, "t": since},
                )
            self.timeline.set_price(key, price, since)

        def _observe(self, index: int, desired: DesiredState, phase: str) -> uuid.UUID:
            slot = self.slots[index]
            assert slot.environment is not None
            self.world.desire(slot.environment, desired)
            self._settle()
            observed = self.world.row(slot.environment)
            assert observed.phase == phase, observed
            return slot.environment

        def _snapshot(self) -> tuple[int, list[tuple[object, ...]]]:
            with engine.connect() as connection:
                count = connection.execute(text("SELECT count(*) FROM billing_intervals")).scalar_one()
                cursors = connection.execute(text("SELECT id, metered_until FROM meters ORDER BY id")).all()
            return int(count), [tuple(row) for row in cursors]

        def _due(self, shard: int) -> int:
            """Meters of `shard`'s environments due now (what its leader's tick would write)."""
            with engine.connect() as connection:
                return int(
                    connection.execute(
                        text(
                            "SELECT count(*) FROM meters m JOIN environments e ON e.id = m.environment_id"
                            " WHERE (m.ended_at IS NULL OR m.metered_until < m.ended_at) AND e.shard = :shard"
                            f" AND {CLOSE_POINT_DUE}"
                        ),
                        {
                            "now": clock.now(),
                            "close_s": round(self.settings.meter_close_seconds),
                            "shard": shard,
                        },
                    ).scalar_one()
                )

        # -- what users and the cluster do ----------------------------------------------------
        @rule(index=SLOTS)
        def start(self, index: int) -> None:
            slot, shape = self.slots[index], SHAPES[index]
            now = clock.now()
            if slot.phase in {"absent", "deleted"}:
                slot.runs += 1
                slot.environment = self.world.submit(f"env-{index}-{slot.runs}", shape.spec())
                self._settle()
                assert self.world.phase(slot.environment) == "running"
                self.timeline.open(slot.environment, shape, now, storage=True)
            elif slot.phase == "stopped":
                environment = self._observe(index, DesiredState.RUNNING, "running")
                self.timeline.open(environment, shape, now, storage=False)
            slot.phase = "running"

        @rule(index=SLOTS)
        def stop(self, index: int) -> None:
            if self.slots[index].phase != "running":
                return
            environment = self._observe(index, DesiredState.STOPPED, "stopped")
            self.timeline.close(environment, clock.now(), storage=False)
            self.slots[index].phase = "stopped"

        @rule(index=SLOTS)
        def restart(self, index: int) -> None:
            """Stop and start at one instant: the spell that ended then is continued, not duplicated."""
            if self.slots[index].phase == "running":
                self.stop(index)
                self.start(index)

        @rule(index=SLOTS)
        def delete(self, index: int) -> None:
            slot = self.slots[index]
            if slot.phase not in {"running", "stopped"}:
                return
            environment = self._observe(index, DesiredState.DELETED, "deleted")
            self.timeline.close(environment, clock.now(), storage=True)
            slot.phase = "deleted"

        # -- what admins and time do ----------------------------------------------------------
        @rule(
            key=st.sampled_from(PRICE_KEYS),
            price=PRICES,
            later=st.one_of(st.just(0), st.integers(1, 3 * 86_400)),
        )
        def set_price(self, key: PriceKey, price: Decimal, later: int) -> None:
            since = clock.now() + dt.timedelta(seconds=later)
            if since not in self.timeline.prices.get(key, {}):
                self._price(key, price, since)

        @rule(seconds=st.integers(1, 12 * 3600), micros=st.integers(0, 999_999))
        def wait(self, seconds: int, micros: int) -> None:
            self.advance(dt.timedelta(seconds=seconds, microseconds=micros))

        @rule(offset=st.integers(-90, 90))
        def to_the_month_boundary(self, offset: int) -> None:
            now = clock.now()
            first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            boundary = (
                first.replace(year=first.year + 1, month=1)
                if first.month == 12
                else first.replace(month=first.month + 1)
            )
            target = boundary + dt.timedelta(seconds=offset)
            if target > now:
                self.advance(target - now)

        # -- the meter ------------------------------------------------------------------------
        @rule(seconds=MOVE)
        def tick(self, seconds: int) -> None:
            self.advance(dt.timedelta(seconds=seconds))
            for leader in self._leaders():
                report = meter_tick(leader.ctx)
                assert report.advanced == report.meters

        @rule(
            point=st.sampled_from(["meter-planned", "meter-chunk-written"]),
            nth=st.integers(1, 3),
            seconds=MOVE,
        )
        def killed_tick(self, point: str, nth: int, seconds: int) -> None:
            self.advance(dt.timedelta(seconds=seconds))
            killed = dataclasses.replace(self.world.reconciler.ctx, kill_point=KillOnce(point, nth))
            try:
                meter_tick(killed)
            except SimulatedCrashError:
                event(f"tick killed at {point}")
            else:
                event("tick with fewer chunks than the kill's nth")

        @rule(later=st.integers(0, 600), seconds=MOVE)
        def raced_tick(self, later: int, seconds: int) -> None:
            """A second meter runs a whole tick (at the same or a later moment) between the first's read
            and its writes: every span is written once, by whichever got there first."""
            self.advance(dt.timedelta(seconds=seconds))
            ctx = self.world.reconciler.ctx
            inner: list[TickReport] = []

            def the_other_meter_goes_first(point: str) -> None:
                if point == "meter-planned" and not inner:
                    self.advance(dt.timedelta(seconds=later))
                    inner.append(meter_tick(dataclasses.replace(ctx, kill_point=_no_kill)))

            outer = meter_tick(dataclasses.replace(ctx, kill_point=the_other_meter_goes_first))
            event(f"raced: the first meter wrote {'nothing' if inner[0].meters == 0 else 'everything'}")
            assert outer.advanced == 0 or inner[0].meters == 0, (outer, inner)

        @rule()
        def leader_change(self) -> None:
            """A successor takes over; the old leader's tick (it still has its connections) is fenced
            out and writes nothing; the successor meters on from the cursors."""
            old = self.world.reconciler
            stale = old.ctx
            old.close()
            self.successors += 1
            successor = Reconciler(
                url,
                self.world.cluster,
                self.settings,
                identity=f"successor-{self.successors}",
                listen=False,
                secrets=self.world.secrets,
            )
            self.world.reconciler = successor
            successor.run_until_idle()
            assert successor.ctx.epoch > stale.epoch
            before, due = self._snapshot(), self._due(stale.shard)
            try:
                report = meter_tick(stale)
            except FencedOutError:
                event("stale tick fenced out")
            else:
                assert (due, report.advanced) == (0, 0), "a stale leader wrote"
            assert self._snapshot() == before, "a stale leader's tick changed nothing"
            stale.engine.dispose()  # the connections its tick opened

        # -- invariants -----------------------------------------------------------------------
        @invariant()
        def billing_audits_clean_and_matches_the_model(self) -> None:
            if not hasattr(self, "timeline"):
                return
            with engine.connect() as connection:
                assert audit_billing(connection, "month", "USD") == []
                assert table_findings(connection, self.timeline) == []

    run_state_machine_as_test(
        MeteringMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=35,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_metering_agrees_with_a_model_of_the_timeline(
    engine: Engine, database_url: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metering, "CHUNK", 2)  # several chunks per tick, so a kill can fall between them
    try:
        run_machine(engine, database_url)
    finally:
        reset(engine)
