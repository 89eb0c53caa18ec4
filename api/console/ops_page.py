"""The operators' page (platform admins): the reconciler, the capacity queue, trouble, hosts × GPUs, spend
today and recent events, live over server-sent events. Every figure comes from the admin REST routes'
own handlers; the activity feed is read under the same admin check (`ApiContext.acting(admin=True)`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from litestar import get
from litestar.params import FromQuery
from litestar.response import ServerSentEvent, Template

from remotegpu.api.console.calls import call, live, live_url
from remotegpu.api.console.page import page
from remotegpu.api.console.rendering import render
from remotegpu.api.console.session import CONSOLE_PATH
from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.routes import billing, environments, hosts, ops
from remotegpu.core.environments.reconcile_status import RecentActivity, recent_activity
from remotegpu.core.platform import clock


@dataclass(frozen=True)
class GpuCell:
    """One square of the grid: its state in words (colour only repeats it) and what holds it."""

    index: int
    state: str
    label: str


def _cells(host: Any, gpus: list[Any], names: dict[Any, str]) -> list[GpuCell]:
    cells = []
    for gpu in sorted(gpus, key=lambda g: g.index):
        holder = names.get(gpu.environment_id, str(gpu.environment_id)) if gpu.environment_id else None
        if gpu.health != "healthy":
            state = "unhealthy"
        elif holder is not None:
            state = "claimed"
        elif host.cordoned:
            state = "cordoned"
        elif host.health != "ready":
            state = "down"
        else:
            state = "free"
        label = f"{host.name} GPU {gpu.index} ({gpu.model}): {state}"
        if holder is not None:
            label += f" by {holder}"
        if gpu.health_reason:
            label += f" — {gpu.health_reason}"
        cells.append(GpuCell(gpu.index, state, label))
    return cells


def _activity(request: AnyRequest, api: Api) -> RecentActivity:
    with api.acting(request, admin=True) as (connection, _):
        return recent_activity(connection)


def make_ops_routes(deadlines: dict[str, float]) -> list[Any]:
    """The ops page and its live stream; `deadlines`: seconds allowed in each work phase (the settings'
    phase deadlines), to show when a stuck environment will be failed."""

    async def parts(request: AnyRequest, api: Api) -> dict[str, str]:
        status = await call(ops.status, request=request, api=api)  # 403 for anyone but platform admins
        host_rows = (await call(hosts.hosts, request=request, api=api, limit=500, cursor=None)).items
        gpus = await call(hosts.gpus, request=request, api=api)
        listed = await call(
            environments.list_all,
            request=request,
            api=api,
            workspace=None,
            phase=None,
            name=None,
            mine=False,
            limit=500,
            cursor=None,
        )
        names = {item.id: f"{item.workspace}/{item.name}" for item in listed.items}
        midnight = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
        spend = await call(
            billing.usage_view, request=request, api=api, workspace=None, from_=midnight.isoformat(), to=None
        )
        activity = await anyio.to_thread.run_sync(_activity, request, api)
        grid = [(host, _cells(host, [g for g in gpus if g.host_id == host.id], names)) for host in host_rows]
        trouble = [(row, _deadline(row.phase, row.since)) for row in [*status.stuck, *status.failing]]
        return {
            "ops-summary": render("_ops_summary.html", status=status, spend=spend, activity=activity),
            "ops-grid": render("_ops_grid.html", grid=grid),
            "ops-trouble": render("_ops_trouble.html", trouble=trouble),
            "ops-events": render("_ops_events.html", events=activity.events),
        }

    def _deadline(phase: str, since: dt.datetime) -> dt.datetime | None:
        seconds = deadlines.get(phase)
        return None if seconds is None else since + dt.timedelta(seconds=seconds)

    @get("/ops")
    async def ops_page(request: AnyRequest, api: Api) -> Template:
        """The platform at a glance (platform admins)."""
        shown = await parts(request, api)
        stream = live_url(f"{CONSOLE_PATH}/ops/live", shown)
        return await page(request, api, "ops.html", parts=shown, live_url=stream)

    @get("/ops/live")
    async def ops_live(request: AnyRequest, api: Api, seen: FromQuery[str | None] = None) -> ServerSentEvent:
        """The ops page's parts, pushed whenever they change."""
        return await live(lambda: parts(request, api), every_s=1.0, seen=seen)

    return [ops_page, ops_live]
