"""Setting prices (platform admins) and reading the price list (anyone signed in).

A price is per `resource.unit` (GPU-hour of one model, core-hour, GiB-hour, GiB-month of 730 hours) in
the deployment's one currency (the `currency` setting), from its `effective_from` until the next price of
the same resource and model. Prices are never retroactive: a new one starts now or later, never earlier,
so what was already metered keeps the price it was metered at (`pricing.py`).

Setting the same (resource, model, effective_from) again replaces that price: a PUT of the same schedule
is idempotent, and a scheduled price is corrected by setting it again. Nothing has been metered at a
replaced price, since no price starts in the past. One call writes all its prices and one audit event
in the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.accounts.users import Principal
from remotegpu.core.environments.states import MeteredResource
from remotegpu.core.platform import clock
from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.platform.events import record_mutation

PAST_TOLERANCE = dt.timedelta(seconds=10)
"""How far in the past `effective_from` may be (clock skew between client and server); such a time is
taken as now, so a price never applies to usage before it was set."""
_PLACES = 6
_LARGEST = Decimal(10) ** 12
"""`NUMERIC(18, 6)`: up to 12 digits before the point and 6 after."""
_ORDER = {resource: position for position, resource in enumerate(MeteredResource)}


@dataclass(frozen=True)
class PriceChange:
    """One price to set: `gpu_model` only (and always) for GPUs."""

    resource: MeteredResource
    gpu_model: str | None
    unit_price: Decimal


@dataclass(frozen=True)
class PriceEntry:
    """A price as stored: `unit_price` per `unit` from `effective_from`."""

    resource: MeteredResource
    gpu_model: str | None
    unit_price: Decimal
    effective_from: dt.datetime

    @property
    def unit(self) -> str:
        """What the price is per: gpu_hour, core_hour, gib_hour or gib_month."""
        return self.resource.unit


@dataclass(frozen=True)
class PriceList:
    """The prices in force now (one per resource and model) and those scheduled to start later."""

    currency: str
    current: list[PriceEntry]
    scheduled: list[PriceEntry]


def set_prices(
    connection: Connection,
    principal: Principal,
    changes: Sequence[PriceChange],
    effective_from: dt.datetime | None = None,
) -> list[PriceEntry]:
    """Set `changes` from `effective_from` (None: now), for platform admins; returns what was written.

    InvalidInputError names the field at fault (`$.effective_from`, `$.prices[1].gpu_model`, …): a time
    more than `PAST_TOLERANCE` ago or without a UTC offset, a negative or malformed price, a GPU price
    without a model or another with one, a model no GPU of the inventory has, one price twice.
    """
    principal.require_admin()
    now = clock.now()
    since = _checked_start(effective_from, now)
    if not changes:
        raise InvalidInputError(
            "$.prices", "name at least one price, e.g. {'resource': 'cpu', 'unit_price': '0.02'}"
        )
    _check_changes(connection, changes)
    written = [
        connection.execute(
            text(
                "INSERT INTO prices AS p (resource, gpu_model, unit_price, effective_from, created_by)"
                " VALUES (:resource, :model, :price, :since, :actor)"
                " ON CONFLICT (resource, coalesce(gpu_model, ''), effective_from)"
                " DO UPDATE SET unit_price = excluded.unit_price, created_by = excluded.created_by,"
                " created_at = now()"
                " RETURNING p.resource, p.gpu_model, p.unit_price, p.effective_from"
            ),
            {
                "resource": change.resource.value,
                "model": change.gpu_model,
                "price": change.unit_price,
                "since": since,
                "actor": principal.user_id,
            },
        ).one()
        for change in changes
    ]
    entries = [_entry(row) for row in written]
    record_mutation(
        connection,
        principal.user_id,
        "PricesSet",
        f"{len(entries)} price{'s' if len(entries) != 1 else ''} set from {since.isoformat()}",
        data={
            "effective_from": since.isoformat(),
            "prices": [
                {"resource": e.resource.value, "gpu_model": e.gpu_model, "unit_price": str(e.unit_price)}
                for e in entries
            ],
        },
    )
    return entries


def list_prices(connection: Connection, currency: str, now: dt.datetime | None = None) -> PriceList:
    """The price in force at `now` (default: the clock's) of each resource and model that has one, and
    every price that starts after it; `currency` is the deployment's (the setting)."""
    moment = now or clock.now()
    current = [
        _entry(row)
        for row in connection.execute(
            text(
                "SELECT DISTINCT ON (resource, coalesce(gpu_model, '')) resource, gpu_model, unit_price,"
                " effective_from FROM prices WHERE effective_from <= :now"
                " ORDER BY resource, coalesce(gpu_model, ''), effective_from DESC"
            ),
            {"now": moment},
        )
    ]
    scheduled = [
        _entry(row)
        for row in connection.execute(
            text(
                "SELECT resource, gpu_model, unit_price, effective_from FROM prices"
                " WHERE effective_from > :now ORDER BY effective_from"
            ),
            {"now": moment},
        )
    ]
    current.sort(key=lambda e: (_ORDER[e.resource], e.gpu_model or ""))
    scheduled.sort(key=lambda e: (e.effective_from, _ORDER[e.resource], e.gpu_model or ""))
    return PriceList(currency, current, scheduled)


def _entry(row: Any) -> PriceEntry:
    return PriceEntry(MeteredResource(row.resource), row.gpu_model, row.unit_price, row.effective_from)


def _checked_start(effective_from: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    if effective_from is None:
        return now
    if effective_from.tzinfo is None:
        raise InvalidInputError(
            "$.effective_from", "give the time with its UTC offset, e.g. 2026-12-01T00:00:00Z"
        )
    if effective_from < now - PAST_TOLERANCE:
        raise InvalidInputError(
            "$.effective_from",
            f"{effective_from.isoformat()} is in the past and prices are never retroactive:"
            " give a later time, or null to start now",
        )
    try:
        return max(effective_from, now).astimezone(dt.UTC)
    except OverflowError:
        raise InvalidInputError("$.effective_from", "is past the year 9999: give an earlier time") from None


def _check_changes(connection: Connection, changes: Sequence[PriceChange]) -> None:
    seen: set[tuple[MeteredResource, str | None]] = set()
    known: list[str] | None = None
    for index, change in enumerate(changes):
        at = f"$.prices[{index}]"
        _check_price(f"{at}.unit_price", change.unit_price)
        if change.resource is MeteredResource.GPU:
            if not change.gpu_model:
                raise InvalidInputError(f"{at}.gpu_model", "a GPU price is per model: name it, e.g. H100")
            if known is None:
                known = list(
                    connection.execute(text("SELECT DISTINCT model FROM gpus ORDER BY model")).scalars()
                )
            if change.gpu_model not in known:
                models = ", ".join(known) if known else "none yet (add hosts first)"
                raise InvalidInputError(
                    f"{at}.gpu_model",
                    f"no GPU in the inventory is a {change.gpu_model}; the models there are: {models}",
                )
        elif change.gpu_model is not None:
            raise InvalidInputError(
                f"{at}.gpu_model", f"only GPU prices name a model: leave it out for {change.resource.value}"
            )
        key = (change.resource, change.gpu_model)
        if key in seen:
            what = f"{change.resource.value} {change.gpu_model or ''}".strip()
            raise InvalidInputError(at, f"{what} is priced twice: give one price for it")
        seen.add(key)


def _check_price(field: str, price: Decimal) -> None:
    if not price.is_finite():
        raise InvalidInputError(field, "write a decimal number, e.g. 2.49")
    if price < 0:
        raise InvalidInputError(field, f"{price} is negative: a price is 0 or more")
    if price >= _LARGEST:
        raise InvalidInputError(field, "is too large: a price is below 1000000000000")
    exponent = price.as_tuple().exponent
    if (
        isinstance(exponent, int)
        and exponent < -_PLACES
        and price != price.quantize(Decimal(1).scaleb(-_PLACES))
    ):
        raise InvalidInputError(field, f"has more than {_PLACES} decimal places: round it, e.g. 0.000125")
