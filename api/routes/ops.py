"""Operator views: the reconciler's status; and the process's health, readiness and spec schema."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
from litestar import Router, get
from litestar.exceptions import ServiceUnavailableException
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.environments.reconcile_status import reconciler_status
from remotegpu.core.environments.spec import spec_json_schema


class ShardOut(msgspec.Struct):
    """Who leads one reconciler shard."""

    shard: int
    epoch: int
    leader: str | None
    leader_since: dt.datetime | None
    heartbeat_at: dt.datetime | None


class TroubleOut(msgspec.Struct):
    """An environment that is stuck, retrying or failed, and why."""

    id: uuid.UUID
    name: str
    workspace: str
    phase: str
    reason: str | None
    message: str | None
    retry_count: int
    since: dt.datetime


class StatusOut(msgspec.Struct):
    """The reconciler at a glance."""

    shards: list[ShardOut]
    phases: dict[str, int]
    queue_depth: int
    due_now: int
    stuck: list[TroubleOut]
    failing: list[TroubleOut]


def _trouble(row: Any) -> TroubleOut:
    return TroubleOut(
        row.id,
        row.name,
        row.workspace,
        str(row.phase),
        row.reason,
        row.last_error,
        row.retry_count,
        row.phase_entered_at,
    )


@get("/ops/status", sync_to_thread=True, tags=["ops"], opt=answers(403))
def status(request: AnyRequest, api: Api) -> StatusOut:
    """Leader and epoch per shard, environments per phase, queue depth, stuck and failing environments
    (platform admins)."""
    with api.acting(request, admin=True) as (connection, _):
        state = reconciler_status(connection, stuck_after=api.stuck_after)
    return StatusOut(
        [ShardOut(s.shard, s.epoch, s.leader_id, s.leader_since, s.heartbeat_at) for s in state.leaders],
        state.phases,
        state.queue_depth,
        state.due_now,
        [_trouble(r) for r in state.stuck],
        [_trouble(r) for r in state.failing],
    )


@get("/healthz", tags=["ops"], opt=answers(public=True))
async def healthz() -> dict[str, str]:
    """The process is up (liveness)."""
    return {"status": "ok"}


@get("/readyz", sync_to_thread=True, tags=["ops"], opt=answers(503, public=True))
def readyz(api: Api) -> dict[str, str]:
    """The process can serve: the database answers (readiness)."""
    try:
        with api.read_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        raise ServiceUnavailableException("the database does not answer") from None
    return {"status": "ready"}


@get(
    "/schemas/environment.json", tags=["ops"], media_type="application/schema+json", opt=answers(public=True)
)
async def environment_schema() -> dict[str, Any]:
    """JSON Schema of the environment spec (what `remotegpu apply -f` and POST /environments accept)."""
    return spec_json_schema()


router = Router("/", route_handlers=[status, environment_schema], tags=["ops"])
