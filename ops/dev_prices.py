"""Demo prices for `remotegpu dev`: on a database with no prices at all, a small price list takes effect
at once, so a newcomer's first environment shows what it costs. A deployment sets its own with
`remotegpu prices set`; these are never written where any price exists."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Engine, text

from remotegpu.core.platform import clock

DEMO_PRICES: tuple[tuple[str, str | None, Decimal], ...] = (
    ("gpu", "H100", Decimal("2.49")),
    ("cpu", None, Decimal("0.02")),
    ("memory", None, Decimal("0.005")),
    ("storage", None, Decimal("0.10")),
)
"""Per GPU-hour, core-hour, GiB-hour and GiB-month."""


def seed_demo_prices(engine: Engine, currency: str) -> str:
    """Write the demo prices when there are none; a line saying which prices are in force."""
    with engine.begin() as connection:
        if connection.execute(text("SELECT EXISTS (SELECT 1 FROM prices)")).scalar_one():
            return "as set (remotegpu prices list)"
        now = clock.now()
        for resource, model, price in DEMO_PRICES:
            connection.execute(
                text(
                    "INSERT INTO prices (resource, gpu_model, unit_price, effective_from)"
                    " VALUES (:resource, :model, :price, :now)"
                ),
                {"resource": resource, "model": model, "price": price, "now": now},
            )
    return (
        f"demo: H100 2.49 {currency}/GPU-h, CPU 0.02/core-h, memory 0.005/GiB-h, storage 0.10/GiB-month"
        " (change with remotegpu prices set)"
    )
