"""GPU metrics of environments, read from Prometheus (NVIDIA's DCGM exporter's series): one
environment's GPUs over a range with its idle picture, and the newest reading of the running ones
(`remotegpu top`). Visibility is the environment's: whoever may read it may read its metrics.

The database session is closed before Prometheus is asked. Monitoring not configured or Prometheus
not answering is said in the answer's `monitoring` (200), never an error.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from litestar import Router, get
from litestar.params import FromPath, FromQuery, QueryParameter

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.accounts.membership import workspace_access
from remotegpu.core.accounts.workspace_settings import settings_of
from remotegpu.core.environments.states import Phase
from remotegpu.core.environments.views import EnvironmentFilter, get_environment, list_environments
from remotegpu.core.monitoring.views import EnvironmentMetricsOut, TopOut, environment_metrics, latest_gpus
from remotegpu.core.platform import clock
from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.platform.pagination import MAX_PAGE_SIZE
from remotegpu.core.platform.quantities import parse_duration

LONGEST_RANGE = dt.timedelta(days=31)

Range = Annotated[
    str,
    QueryParameter(name="range", description="how far back, as a duration: 15m, 1h, 24h (at most 31d)"),
]
Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE, description="page size")]


def _span(value: str) -> dt.timedelta:
    try:
        span = parse_duration(value)
    except ValueError:
        raise InvalidInputError("range", f"{value!r} is not a duration; use e.g. 15m, 1h or 24h") from None
    if not dt.timedelta(minutes=1) <= span <= LONGEST_RANGE:
        raise InvalidInputError("range", "must be from 1m to 31d")
    return span


@get("/{environment_id:uuid}/metrics", sync_to_thread=True)
def environment_gpu_metrics(
    environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api, window: Range = "1h"
) -> EnvironmentMetricsOut:
    """Per GPU: utilisation (%), memory used (MiB) and power (W) over `range`, with the newest values,
    and what the idle check says (idle, busy, no data, too soon). `monitoring.state` says when no
    Prometheus is configured or it does not answer."""
    span = _span(window)
    with api.acting(request) as (connection, principal):
        environment = get_environment(connection, principal, environment_id)
        default_idle = settings_of(connection, environment.workspace_id).default_idle_stop_minutes
    return environment_metrics(
        api.gpu_metrics,
        environment,
        default_idle,
        span=span,
        now=clock.now(),
        idle_step=api.idle_step,
        threshold=api.idle_threshold_percent,
        idle_scale=api.idle_time_scale,
    )


@get("/metrics", sync_to_thread=True, opt=answers(404))
def running_gpu_metrics(
    request: AnyRequest,
    api: Api,
    workspace: FromQuery[str | None] = None,
    mine: FromQuery[bool] = False,
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
) -> TopOut:
    """The running environments the caller can see (newest first; filter by workspace or `mine`), each
    with the newest utilisation, memory and power of its GPUs: one Prometheus query per page."""
    with api.acting(request) as (connection, principal):
        workspace_id = workspace_access(connection, principal, workspace).id if workspace else None
        filters = EnvironmentFilter(workspace_id, Phase.RUNNING, None, principal.user_id if mine else None)
        rows, following = list_environments(connection, principal, filters, limit=limit, cursor=cursor)
    return latest_gpus(api.gpu_metrics, rows, following)


router = Router(
    "/environments", route_handlers=[environment_gpu_metrics, running_gpu_metrics], tags=["monitoring"]
)
