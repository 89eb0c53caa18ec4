"""The price list: what each resource costs now and from when scheduled prices start (platform admins
set them; anyone signed in reads them)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

import msgspec
from litestar import Router, get, put
from litestar.params import JSONBody

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.billing.prices import PriceChange, PriceEntry, PriceList, list_prices, set_prices
from remotegpu.core.environments.spec import GpuModel
from remotegpu.core.environments.states import MeteredResource


class PriceIn(msgspec.Struct, forbid_unknown_fields=True):
    """One price: per GPU-hour of `gpu_model` (GPUs only), core-hour, GiB-hour or GiB-month (storage),
    in the deployment's currency; a decimal string (or number) with at most 6 decimal places."""

    resource: MeteredResource
    unit_price: Annotated[Decimal, msgspec.Meta(examples=["2.49"])]
    gpu_model: GpuModel | None = None


class PricesIn(msgspec.Struct, forbid_unknown_fields=True):
    """Prices to set, all from `effective_from` (null: now; never in the past)."""

    prices: list[PriceIn]
    effective_from: Annotated[dt.datetime, msgspec.Meta(examples=["2026-12-01T00:00:00Z"])] | None = None


class PriceOut(msgspec.Struct):
    """A price: `unit_price` (a decimal string) per `unit`, in force from `effective_from` until the next
    price of the same resource and model."""

    resource: str
    gpu_model: str | None
    unit: str
    unit_price: Decimal
    effective_from: dt.datetime


class PriceListOut(msgspec.Struct):
    """The prices in force now (one per resource and model) and those scheduled, soonest first; usage
    with no price in force costs 0."""

    currency: str
    current: list[PriceOut]
    scheduled: list[PriceOut]


def _out(entry: PriceEntry) -> PriceOut:
    return PriceOut(entry.resource.value, entry.gpu_model, entry.unit, entry.unit_price, entry.effective_from)


def _list_out(prices: PriceList) -> PriceListOut:
    return PriceListOut(
        prices.currency, [_out(e) for e in prices.current], [_out(e) for e in prices.scheduled]
    )


@get("/", sync_to_thread=True)
def get_prices(request: AnyRequest, api: Api) -> PriceListOut:
    """The price list (any signed-in user)."""
    with api.acting(request) as (connection, _):
        return _list_out(list_prices(connection, api.currency))


@put("/", sync_to_thread=True, opt=answers(403))
def put_prices(data: JSONBody[PricesIn], request: AnyRequest, api: Api) -> PriceListOut:
    """Set prices from `effective_from` (platform admins); a price set again for the same resource, model
    and time replaces it. Answers the price list as it now is."""
    changes = [PriceChange(p.resource, p.gpu_model, p.unit_price) for p in data.prices]
    with api.acting(request) as (connection, principal):
        set_prices(connection, principal, changes, data.effective_from)
        return _list_out(list_prices(connection, api.currency))


router = Router("/billing/prices", route_handlers=[get_prices, put_prices], tags=["billing"])
