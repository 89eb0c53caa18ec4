"""The invoice job through the reconciler and the real meter: a draft while the period runs and through
its grace time, finalized once after it, never changed again; a killed, repeated or fenced-out run
yields one whole invoice; usage metered after finalization lands on the next invoice as an adjustment."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from remotegpu.core.billing.audit import audit_billing
from remotegpu.core.billing.invoices import draft_lines, lines_on_invoice, stored_lines, total_of
from remotegpu.core.platform import clock
from remotegpu.reconciler.context import SimulatedCrashError
from remotegpu.reconciler.invoicing import InvoiceReport, invoice_tick
from remotegpu.reconciler.leader import FencedOutError
from remotegpu.reconciler.loop import Reconciler
from remotegpu.reconciler.metering import meter_tick
from remotegpu.tests.reconciler.invoice_checks import check_finalized, marked, snapshot
from remotegpu.tests.reconciler.test_kill_points import KillOnce
from remotegpu.tests.reconciler.test_metering import PRICES, START, set_prices
from remotegpu.tests.reconciler.world import World, build_world

NOV = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
DEC = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
JAN = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def world(engine: Engine, database_url: URL, sessions: object) -> Iterator[World]:
    with clock.frozen_at(START):
        made = build_world(engine, database_url)
        set_prices(engine, PRICES, START - dt.timedelta(days=1))
        yield made
        made.reconciler.close()
    with engine.connect() as connection:
        assert audit_billing(connection, "month", "USD") == []


def _start(world: World) -> uuid.UUID:
    """SPEC's environment (2 H100, 8 cores, 64 GiB, a 100 GiB volume), running from START."""
    env = world.submit("train")
    world.reconciler.run_until_idle()
    assert world.phase(env) == "running"
    return env


def _invoice(engine: Engine, workspace: uuid.UUID, start: dt.datetime) -> tuple[uuid.UUID, str] | None:
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT id, status FROM invoices WHERE workspace_id = :w AND period_start = :s"),
            {"w": workspace, "s": start},
        ).first()
    return None if row is None else (row.id, str(row.status))


def _at(advance: object, now: dt.datetime) -> None:
    """Move the frozen clock to `now`."""
    assert callable(advance)
    advance(now - clock.now())


def test_a_period_is_a_draft_until_its_grace_has_passed_then_finalized_once(world: World) -> None:
    ctx = world.reconciler.ctx
    with clock.frozen_at(START) as advance:
        _start(world)
        _at(advance, START + dt.timedelta(hours=1))
        meter_tick(ctx)
        assert invoice_tick(ctx) == InvoiceReport(opened=1, finalized=0)
        _at(advance, DEC + dt.timedelta(minutes=30))  # November has ended; its grace has not
        meter_tick(ctx)
        assert invoice_tick(ctx) == InvoiceReport(opened=1, finalized=0), "December's draft opens"
        with world.engine.connect() as connection:
            november = draft_lines(connection, world.workspace, NOV, DEC, "month")
            december = draft_lines(connection, world.workspace, DEC, JAN, "month")
        # Two hours of November (22:00–24:00) on November's draft, half an hour on December's.
        assert [(line.description, line.quantity, line.amount) for line in november] == [
            ("CPU core-hours", Decimal("16.000000"), Decimal("0.32")),
            ("H100 GPU-hours", Decimal("4.000000"), Decimal("9.96")),
            ("Memory GiB-hours", Decimal("128.000000"), Decimal("0.64")),
            ("Storage GiB-months", Decimal("0.273973"), Decimal("0.03")),  # 200 GiB-h / 730
        ]
        assert total_of(november) == Decimal("10.95")
        assert [line.quantity for line in december if line.gpu_model] == [Decimal("1.000000")]
        assert _invoice(world.engine, world.workspace, NOV) is not None
        assert _invoice(world.engine, world.workspace, NOV)[1] == "draft"  # type: ignore[index]

        _at(advance, DEC + dt.timedelta(hours=1, minutes=5))
        meter_tick(ctx)
        assert invoice_tick(ctx).finalized == 1
        invoice_id, status = _invoice(world.engine, world.workspace, NOV)  # type: ignore[misc]
        assert status == "finalized"
        with world.engine.connect() as connection:
            check_finalized(connection, invoice_id, "month")
            assert marked(connection, world.workspace) == {invoice_id: 8, None: 8}  # Nov's; Dec's 2 ticks
            before = snapshot(connection, invoice_id)
            assert before[0][6] == Decimal("10.95")
            # Finalizing the closed period again yields the identical invoice, and so does recomputing it.
            assert lines_on_invoice(connection, invoice_id, NOV, "month") == stored_lines(
                connection, invoice_id
            )
        assert invoice_tick(ctx).finalized == 0
        with world.engine.connect() as connection:
            assert snapshot(connection, invoice_id) == before
    for statement in (
        "UPDATE invoices SET total = 0 WHERE id = :id",
        "DELETE FROM invoice_lines WHERE invoice_id = :id",
        "INSERT INTO invoice_lines (invoice_id, description, resource, quantity, unit, unit_price, amount)"
        " VALUES (:id, 'more', 'cpu', 1, 'core_hour', 1, 1)",
    ):
        with pytest.raises(DBAPIError, match="finalized and immutable"), world.engine.begin() as connection:
            connection.execute(text(statement), {"id": invoice_id})


@pytest.mark.parametrize(
    "point", ["invoice-locked", "invoice-intervals-marked", "invoice-lines-written", "invoice-finalized"]
)
def test_a_killed_finalization_yields_one_whole_invoice(
    engine: Engine, database_url: URL, sessions: object, point: str
) -> None:
    kill = KillOnce(point)
    with clock.frozen_at(START) as advance:
        world = build_world(engine, database_url, kill_point=kill)
        try:
            set_prices(engine, PRICES, START - dt.timedelta(days=1))
            ctx = world.reconciler.ctx
            _start(world)
            _at(advance, START + dt.timedelta(hours=1))
            invoice_tick(ctx)  # November's draft
            _at(advance, DEC + dt.timedelta(hours=2))
            meter_tick(ctx)
            with pytest.raises(SimulatedCrashError):
                invoice_tick(ctx)
            invoice_id, status = _invoice(engine, world.workspace, NOV)  # type: ignore[misc]
            with engine.connect() as connection:
                if point == "invoice-finalized":  # killed after the commit: the invoice is whole
                    assert status == "finalized"
                    check_finalized(connection, invoice_id, "month")
                else:  # killed inside the transaction: nothing of it happened
                    assert status == "draft"
                    assert marked(connection, world.workspace) == {None: 8}
                    assert stored_lines(connection, invoice_id) == []
            assert invoice_tick(ctx).finalized == (0 if point == "invoice-finalized" else 1)
            assert invoice_tick(ctx).finalized == 0
            with engine.connect() as connection:
                check_finalized(connection, invoice_id, "month")
                assert marked(connection, world.workspace) == {invoice_id: 4, None: 4}
                assert connection.execute(text("SELECT count(*) FROM invoices")).scalar_one() == 2
        finally:
            world.reconciler.close()


def test_after_a_leader_change_the_old_leader_finalizes_nothing(world: World) -> None:
    ctx = world.reconciler.ctx
    with clock.frozen_at(START) as advance:
        _start(world)
        _at(advance, DEC + dt.timedelta(hours=2))
        meter_tick(ctx)
        world.reconciler.elector.resign()  # the old leader pauses; another replica takes over
        successor = Reconciler(world.url, world.cluster, ctx.settings, identity="successor", listen=False)
        try:
            successor.run_until_idle()
            assert successor.ctx.epoch == ctx.epoch + 1
            with pytest.raises(FencedOutError):
                invoice_tick(ctx)
            assert _invoice(world.engine, world.workspace, NOV) is None
            assert invoice_tick(successor.ctx).finalized == 1
        finally:
            successor.close()
    assert _invoice(world.engine, world.workspace, NOV) is not None
    invoice_id, status = _invoice(world.engine, world.workspace, NOV)  # type: ignore[misc]
    assert status == "finalized"
    with world.engine.connect() as connection:
        check_finalized(connection, invoice_id, "month")


def test_usage_metered_after_finalization_is_an_adjustment_on_the_next_invoice(world: World) -> None:
    ctx = world.reconciler.ctx
    with clock.frozen_at(START) as advance:
        _start(world)
        _at(advance, START + dt.timedelta(hours=1))
        meter_tick(ctx)  # November metered to 23:00; then the meter stalls for three hours
        _at(advance, DEC + dt.timedelta(hours=1, minutes=30))
        assert invoice_tick(ctx) == InvoiceReport(opened=1, finalized=1)
        november, _ = _invoice(world.engine, world.workspace, NOV)  # type: ignore[misc]
        with world.engine.connect() as connection:
            before = snapshot(connection, november)
        assert before[0][6] == Decimal("5.47")  # one hour: 4.98 + 0.16 + 0.32 + 0.0137 → 0.01

        _at(advance, DEC + dt.timedelta(hours=2))
        meter_tick(ctx)  # writes November's last hour late, and December's first two
        assert invoice_tick(ctx).finalized == 0
        with world.engine.connect() as connection:
            assert snapshot(connection, november) == before, "a finalized invoice never changes"
            december = draft_lines(connection, world.workspace, DEC, JAN, "month")
        late = [line for line in december if line.adjusts_period_start is not None]
        assert {line.adjusts_period_start for line in late} == {NOV}
        assert [line.description for line in late if line.gpu_model] == [
            "H100 GPU-hours (adjustment: usage of 2026-11 metered late)"
        ]
        assert [(line.quantity, line.amount) for line in late if line.gpu_model] == [
            (Decimal("2.000000"), Decimal("4.98"))
        ]

        _at(advance, JAN + dt.timedelta(hours=1, minutes=5))
        meter_tick(ctx)
        assert invoice_tick(ctx).finalized == 1
    december_id, _ = _invoice(world.engine, world.workspace, DEC)  # type: ignore[misc]
    with world.engine.connect() as connection:
        check_finalized(connection, december_id, "month")
        assert stored_lines(connection, december_id)[-1].adjusts_period_start == NOV
        assert snapshot(connection, november) == before
        counts = marked(connection, world.workspace)
        assert (counts[november], counts[december_id]) == (4, 12)  # Nov's first hour; the rest of it + Dec
        late_on_december = connection.execute(
            text("SELECT count(*) FROM billing_intervals WHERE invoice_id = :d AND started_at < :dec"),
            {"d": december_id, "dec": DEC},
        ).scalar_one()
        assert late_on_december == 4
