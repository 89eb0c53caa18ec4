"""Property: over random usage (spells of every resource in two workspaces, random prices and price
changes, meter ticks and invoice runs at random moments, some meter ticks late past the grace time),
every interval ends up on exactly one invoice — its own period's, or a later one's as an adjustment —
each line is its intervals' sum rounded once, the total is the sum of the lines, a finalized invoice
never changes afterwards, and the billing audit finds nothing. Intervals come from the real meter path
(meters inserted as the reconciler opens and closes them, then `meter_tick`), on daily periods so a few
days of usage cross several."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.core.billing.audit import audit_billing
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.reconciler.invoicing import invoice_tick
from remotegpu.reconciler.metering import meter_tick
from remotegpu.tests.allocation_world import make_environment, make_user, make_workspace
from remotegpu.tests.reconciler.invoice_checks import check_finalized, snapshot
from remotegpu.tests.reconciler.world import World, build_world

BASE = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
KEYS = (("gpu", "H100"), ("gpu", "A100"), ("cpu", None), ("memory", None), ("storage", None))
MINUTES_IN_4_DAYS = 4 * 24 * 60

prices = st.integers(0, 5_000_000).map(lambda n: Decimal(n) / 1_000_000)
spells = st.lists(
    st.tuples(
        st.sampled_from(KEYS),
        st.integers(0, 3 * 24 * 60),  # start, minutes after BASE
        st.integers(1, 36 * 60),  # length in minutes
        st.sampled_from([Decimal(1), Decimal(2), Decimal("0.5"), Decimal("3.25"), Decimal(8)]),
        st.integers(0, 1),  # which workspace
    ),
    min_size=1,
    max_size=5,
)
changes = st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, MINUTES_IN_4_DAYS), prices), max_size=6)
runs = st.lists(st.tuples(st.sampled_from(["meter", "invoice"]), st.integers(0, 6 * 24 * 60)), max_size=12)


@pytest.fixture
def day_world(engine: Engine, database_url: URL, sessions: object) -> Iterator[tuple[World, list[uuid.UUID]]]:
    with clock.frozen_at(BASE):
        made = build_world(engine, database_url, settings=Settings(billing_period="day"))
        made.reconciler.run_until_idle()  # leadership
        with engine.begin() as connection:
            other = make_workspace(connection, make_user(connection))
        yield made, [made.workspace, other]
        made.reconciler.close()


def _reset_billing(engine: Engine) -> None:
    """Each example bills from scratch (TRUNCATE fires no row trigger: finalized rows go too)."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE invoice_lines, billing_intervals, invoices, meters, prices"))


def _insert(engine: Engine, workspaces: list[uuid.UUID], example: dict[str, Any]) -> None:
    with engine.begin() as connection:
        rows = [(key, -24 * 60, price) for key, price in zip(KEYS, example["initial"], strict=True)]
        seen = set()
        for (resource, model), minute, price in rows + example["changes"]:
            if (resource, model, minute) in seen:
                continue
            seen.add((resource, model, minute))
            connection.execute(
                text(
                    "INSERT INTO prices (resource, gpu_model, unit_price, effective_from) VALUES (:r, :m, :p, :t)"
                ),
                {"r": resource, "m": model, "p": price, "t": BASE + dt.timedelta(minutes=minute)},
            )
        for (resource, model), start, length, quantity, which in example["spells"]:
            owner = connection.execute(
                text("SELECT owner_id FROM workspaces WHERE id = :w"), {"w": workspaces[which]}
            ).scalar_one()
            env = make_environment(connection, workspaces[which], owner).environment_id
            began = BASE + dt.timedelta(minutes=start)
            connection.execute(
                text(
                    "INSERT INTO meters (environment_id, workspace_id, user_id, resource, subject, gpu_model,"
                    " quantity, started_at, ended_at, metered_until) VALUES (:e, :w, :u, :r, :s, :m, :q, :b, :f, :b)"
                ),
                {
                    "e": env,
                    "w": workspaces[which],
                    "u": owner,
                    "r": resource,
                    "s": "data" if resource == "storage" else "",
                    "m": model,
                    "q": quantity,
                    "b": began,
                    "f": began + dt.timedelta(minutes=length),
                },
            )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    initial=st.lists(prices, min_size=len(KEYS), max_size=len(KEYS)),
    spells=spells,
    changes=changes,
    runs=runs,
)
def test_every_interval_is_invoiced_once_and_every_invoice_adds_up(
    day_world: tuple[World, list[uuid.UUID]],
    initial: list[Decimal],
    spells: list[Any],
    changes: list[Any],
    runs: list[tuple[str, int]],
) -> None:
    world, workspaces = day_world
    engine, ctx = world.engine, world.reconciler.ctx
    _reset_billing(engine)
    _insert(engine, workspaces, {"initial": initial, "spells": spells, "changes": changes})
    finalized: dict[uuid.UUID, Any] = {}
    # Everything ends by BASE + 4.5 days; the last runs meter it all and close every period.
    schedule = [*sorted(runs, key=lambda run: run[1]), ("meter", 7 * 24 * 60), ("invoice", 9 * 24 * 60)]
    with clock.frozen_at(BASE) as advance:
        for kind, minute in schedule:
            advance(BASE + dt.timedelta(minutes=minute) - clock.now())
            if kind == "meter":
                meter_tick(ctx)
                continue
            invoice_tick(ctx)
            with engine.connect() as connection:
                for invoice_id in connection.execute(
                    text("SELECT id FROM invoices WHERE status = 'finalized'")
                ).scalars():
                    now = snapshot(connection, invoice_id)
                    assert finalized.setdefault(invoice_id, now) == now, "a finalized invoice changed"
    with engine.connect() as connection:
        assert (
            connection.execute(
                text("SELECT count(*) FROM billing_intervals WHERE invoice_id IS NULL")
            ).scalar_one()
            == 0
        ), "every interval is on an invoice"
        ids = connection.execute(text("SELECT id FROM invoices WHERE status = 'finalized'")).scalars().all()
        for invoice_id in ids:
            check_finalized(connection, invoice_id, "day")
        lines = connection.execute(text("SELECT count(*) FROM invoice_lines")).scalar_one()
        adjustments = connection.execute(
            text("SELECT count(*) FROM invoice_lines WHERE adjusts_period_start IS NOT NULL")
        ).scalar_one()
        event("with adjustment lines" if adjustments else "without adjustment lines")
        billed = connection.execute(text("SELECT coalesce(sum(total), 0) FROM invoices")).scalar_one()
        used = connection.execute(text("SELECT coalesce(sum(amount), 0) FROM billing_intervals")).scalar_one()
        assert abs(billed - used) <= Decimal("0.005") * lines, "rounding once per line, half a cent each"
        assert audit_billing(connection, "day", "USD") == []
