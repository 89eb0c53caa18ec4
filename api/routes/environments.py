"""Environments: apply a spec, list and read, control the lifecycle, reach them, read logs and events.

These handlers write only the desired side (through `core.environments.control`); the reconciler, woken
by NOTIFY, does the rest.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN
from typing import Annotated, Any

import msgspec
from litestar import Router, delete, get, post, put
from litestar.exceptions import ServiceUnavailableException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Stream
from sqlalchemy import Connection

from remotegpu.api.budget import BudgetOut, budget_out
from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.accounts.membership import WorkspaceAccess, workspace_access, workspace_access_async
from remotegpu.core.accounts.users import Principal
from remotegpu.core.billing.budget import workspace_budget, workspace_budget_async
from remotegpu.core.billing.pricing import money
from remotegpu.core.billing.usage import CENTS, environment_cost_async
from remotegpu.core.cluster.driver import ClusterUnavailableError
from remotegpu.core.environments.control import (
    ApplyResult,
    apply_spec,
    change_state,
    operable_environment,
    replace_spec,
    restart,
)
from remotegpu.core.environments.desired import POLICY_STOPPED
from remotegpu.core.environments.run_limits import max_duration, run_deadline
from remotegpu.core.environments.spec import EnvironmentSpec, check_spec
from remotegpu.core.environments.states import DesiredState, Phase
from remotegpu.core.environments.views import (
    AccessDetail,
    EnvironmentFilter,
    environment_access,
    get_environment,
    get_environment_async,
    list_environments_async,
    list_events,
    require_container,
)
from remotegpu.core.platform import clock
from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.platform.pagination import MAX_PAGE_SIZE
from remotegpu.policies.roles import Action, allows

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE, description="page size")]


class CostOut(msgspec.Struct):
    """What the environment has cost since it was created: every run's GPUs, CPU and memory and its
    volumes' storage, closed intervals plus the open tails up to now; `amount` unrounded, `rounded` to
    cents (half-even)."""

    amount: str
    rounded: str
    currency: str


class PolicyStopOut(msgspec.Struct):
    """Why the system stopped the environment (its `PolicyStopped` condition): `BudgetExceeded` or
    `MaxDurationReached`, a sentence, and when. Gone once someone starts it again."""

    reason: str
    message: str
    since: str | None


class PinnedImageOut(msgspec.Struct):
    """The digest the reconciler pinned the spec's image tag to: what the pod runs (`repo@digest`)."""

    reference: str
    digest: str
    pinned_at: dt.datetime | None


class EnvironmentOut(msgspec.Struct):
    """An environment: what its user asked for and what the reconciler observed."""

    id: uuid.UUID
    name: str
    workspace_id: uuid.UUID
    workspace: str
    owner: str
    spec: dict[str, Any]
    generation: int
    observed_generation: int
    desired_state: str
    phase: str
    reason: str | None
    message: str | None
    conditions: list[dict[str, Any]]
    retry_count: int
    queue_position: int | None
    queue_reason: str | None
    host: str | None
    gpu_count: int
    gpu_model: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    phase_entered_at: dt.datetime
    gpu_indexes: list[int] | None = None
    cost_so_far: CostOut | None = None
    """Only in `GET /environments/{id}`, and only for the environment's owner, the workspace's owners
    and admins, and platform admins (null for everyone else)."""
    policy_stop: PolicyStopOut | None = None
    """Why the system stopped it (a spent budget, its max duration); null when it did not."""
    max_duration_deadline: dt.datetime | None = None
    """Only in `GET /environments/{id}`: when the current run reaches the spec's `policies.max_duration`
    and is stopped (null without a limit or when not running)."""
    budget: BudgetOut | None = None
    """Only in `GET /environments/{id}` and a start's answer: its workspace's spending limit and spend
    (null without a limit)."""
    pinned_image: PinnedImageOut | None = None
    """The digest its image tag was resolved to for this run (null: not pinned yet, or its registry is
    not configured and the pod runs the tag)."""


class EnvironmentList(msgspec.Struct):
    """A page of environments, newest first."""

    items: list[EnvironmentOut]
    next_cursor: str | None = None


class ApplyOut(msgspec.Struct):
    """What an apply did (`created`, `updated`, `unchanged`) and, for a dry run, what it would do."""

    outcome: str
    dry_run: bool
    environment: EnvironmentOut | None
    stored_spec: dict[str, Any] | None
    desired_spec: dict[str, Any]


class EventOut(msgspec.Struct):
    """Something that happened to the environment."""

    seq: int
    at: dt.datetime
    actor: str
    kind: str
    reason: str
    message: str


class EventList(msgspec.Struct):
    """A page of events, oldest first."""

    items: list[EventOut]
    next_cursor: str | None = None


class QueueOut(msgspec.Struct):
    """Where a waiting environment stands in the capacity queue."""

    phase: str
    position: int | None
    reason: str | None


def environment_out(row: Any) -> EnvironmentOut:
    """An environment row as the API shows it."""
    return EnvironmentOut(
        row.id,
        row.name,
        row.workspace_id,
        row.workspace,
        row.owner,
        row.spec,
        row.generation,
        row.observed_generation,
        str(row.desired_state),
        str(row.phase),
        row.reason,
        row.last_error,
        row.conditions,
        row.retry_count,
        row.queue_position,
        row.queue_reason,
        row.host,
        row.gpu_count,
        row.gpu_model,
        row.created_at,
        row.updated_at,
        row.phase_entered_at,
        # Only the one-environment query reads the claimed GPUs; lists leave them out.
        list(row.gpu_indexes or []) if hasattr(row, "gpu_indexes") else None,
        policy_stop=_policy_stop(row.conditions),
        max_duration_deadline=run_deadline(max_duration(row.spec), getattr(row, "run_started_at", None)),
        pinned_image=_pinned_image(row),
    )


def _pinned_image(row: Any) -> PinnedImageOut | None:
    digest = getattr(row, "image_digest", None)
    if digest is None or row.image_pinned_reference != (row.spec or {}).get("image"):
        return None
    return PinnedImageOut(row.image_pinned_reference, digest, row.image_pinned_at)


def _policy_stop(conditions: list[dict[str, Any]]) -> PolicyStopOut | None:
    for condition in conditions or []:
        if condition.get("type") == POLICY_STOPPED:
            return PolicyStopOut(
                str(condition.get("reason", "")), str(condition.get("message", "")), condition.get("since")
            )
    return None


def _target_workspace(
    connection: Connection, principal: Principal, spec: EnvironmentSpec, workspace: str | None
) -> WorkspaceAccess:
    """The workspace named by `?workspace=` (name or id) or the spec (name or id); both given must name
    the same workspace."""
    reference = workspace or spec.workspace
    if reference is None:
        raise InvalidInputError("$.workspace", "name the workspace in the spec or as ?workspace=<name or id>")
    access = workspace_access(connection, principal, reference)
    _require_spec_workspace(spec, access, f"?workspace= names {access.name!r}")
    return access


def _require_spec_workspace(spec: EnvironmentSpec, access: WorkspaceAccess, other: str) -> None:
    """A spec that names a workspace (by name or id) is applied in that workspace or refused, never
    silently moved (`other` says where the request points instead)."""
    if spec.workspace is not None and spec.workspace not in (access.name, str(access.id)):
        raise InvalidInputError("$.workspace", f"the spec names {spec.workspace!r} but {other}")


def _apply(
    request: AnyRequest,
    api: Api,
    data: JSONBody[EnvironmentSpec],
    workspace: str | None,
    *,
    create_only: bool,
    dry_run: bool,
) -> ApplyOut:
    spec = check_spec(data)
    with api.acting(request) as (connection, principal):
        access = _target_workspace(connection, principal, spec, workspace)
        result = apply_spec(connection, principal, access, spec, create_only=create_only, dry_run=dry_run)
        return _apply_out(connection, principal, result, dry_run)


def _apply_out(connection: Connection, principal: Principal, result: ApplyResult, dry_run: bool) -> ApplyOut:
    environment = None
    if result.environment_id.int != 0:
        environment = environment_out(get_environment(connection, principal, result.environment_id))
    return ApplyOut(result.outcome.value, dry_run, environment, result.stored_spec, result.desired_spec)


@post("/", status_code=201, sync_to_thread=True, opt=answers(403, 404, 409))
def create(
    data: JSONBody[EnvironmentSpec],
    request: AnyRequest,
    api: Api,
    workspace: FromQuery[str | None] = None,
    dry_run: FromQuery[bool] = False,
) -> ApplyOut:
    """Submit a new environment (409 if the name is taken in the workspace; use apply to update)."""
    return _apply(request, api, data, workspace, create_only=True, dry_run=dry_run)


@post("/apply", status_code=200, sync_to_thread=True, opt=answers(403, 404, 409))
def apply(
    data: JSONBody[EnvironmentSpec],
    request: AnyRequest,
    api: Api,
    workspace: FromQuery[str | None] = None,
    dry_run: FromQuery[bool] = False,
) -> ApplyOut:
    """Create the environment, or bring the one of that name to this spec (idempotent)."""
    return _apply(request, api, data, workspace, create_only=False, dry_run=dry_run)


# The two hottest routes run on the event loop with psycopg (see `core.platform.db.fetch_all`).
@get("/", opt=answers(404))
async def list_all(
    request: AnyRequest,
    api: Api,
    workspace: FromQuery[str | None] = None,
    phase: FromQuery[Phase | None] = None,
    name: FromQuery[str | None] = None,
    mine: FromQuery[bool] = False,
    limit: Limit = 50,
    cursor: FromQuery[str | None] = None,
) -> EnvironmentList:
    """Environments the caller can see, newest first; filter by workspace, phase, name or `mine`."""
    async with api.reading(request) as (connection, principal):
        workspace_id = (
            (await workspace_access_async(connection, principal, workspace)).id if workspace else None
        )
        filters = EnvironmentFilter(workspace_id, phase, name, principal.user_id if mine else None)
        rows, following = await list_environments_async(
            connection, principal, filters, limit=limit, cursor=cursor
        )
    return EnvironmentList([environment_out(r) for r in rows], following)


@get("/{environment_id:uuid}")
async def show(environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> EnvironmentOut:
    """One environment, with the GPUs it holds, its max-duration deadline, its workspace's budget and,
    for its owner and those who may see the workspace's bills, its cost so far."""
    async with api.reading(request) as (connection, principal):
        row = await get_environment_async(connection, principal, environment_id)
        shown = environment_out(row)
        now = clock.now()
        if row.user_id == principal.user_id or allows(row.caller_role, Action.READ_BILLING):
            amount = await environment_cost_async(connection, environment_id, now, api.billing_period)
            shown.cost_so_far = CostOut(
                money(amount), money(amount.quantize(CENTS, rounding=ROUND_HALF_EVEN)), api.currency
            )
        if row.spending_limit is not None:  # no statement for a workspace without a limit
            budget = await workspace_budget_async(connection, row.workspace_id, now, api.billing_period)
            figures = allows(row.caller_role, Action.READ_BILLING)
            shown.budget = budget_out(budget, api.currency, figures=figures)
    return shown


@put("/{environment_id:uuid}", sync_to_thread=True, opt=answers(403, 409))
def update(
    environment_id: FromPath[uuid.UUID],
    data: JSONBody[EnvironmentSpec],
    request: AnyRequest,
    api: Api,
    dry_run: FromQuery[bool] = False,
) -> ApplyOut:
    """Replace the spec; a running environment restarts with it. A `workspace` in the spec must be the
    environment's own (422 otherwise)."""
    spec = check_spec(data)
    with api.acting(request) as (connection, principal):
        environment = operable_environment(connection, principal, environment_id)
        access = workspace_access(connection, principal, environment.workspace_id)
        _require_spec_workspace(
            spec,
            access,
            f"the environment is in {access.name!r} (environments do not move between workspaces;"
            " leave `workspace` out or name this one)",
        )
        result = replace_spec(connection, principal, environment, spec, access, dry_run=dry_run)
        return _apply_out(connection, principal, result, dry_run)


def _control(
    request: AnyRequest, api: Api, environment_id: FromPath[uuid.UUID], state: DesiredState
) -> EnvironmentOut:
    with api.acting(request) as (connection, principal):
        environment = operable_environment(connection, principal, environment_id)
        change_state(connection, principal, environment, state)
        row = get_environment(connection, principal, environment_id)
        shown = environment_out(row)
        if state is DesiredState.RUNNING and row.spending_limit is not None:  # accepted; says it waits
            budget = workspace_budget(connection, row.workspace_id, clock.now(), api.billing_period)
            shown.budget = budget_out(
                budget, api.currency, figures=allows(row.caller_role, Action.READ_BILLING)
            )
        return shown


@post("/{environment_id:uuid}/start", status_code=202, sync_to_thread=True, opt=answers(403))
def start(environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> EnvironmentOut:
    """Ask for running (also leaves `failed`, as a new attempt). While the workspace's budget is spent the
    start is accepted but the environment waits (queue reason `budget exhausted`); the answer's `budget`
    says so."""
    return _control(request, api, environment_id, DesiredState.RUNNING)


@post("/{environment_id:uuid}/stop", status_code=202, sync_to_thread=True, opt=answers(403))
def stop(environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> EnvironmentOut:
    """Ask for stopped: the pod goes, volumes stay, GPUs are released."""
    return _control(request, api, environment_id, DesiredState.STOPPED)


@post("/{environment_id:uuid}/restart", status_code=202, sync_to_thread=True, opt=answers(403, 409))
def restart_one(
    environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api, pull: FromQuery[bool] = False
) -> EnvironmentOut:
    """Stop and start again with the same spec (a new generation) and the same image digest; with
    `pull=true` the image tag is resolved again at its registry."""
    with api.acting(request) as (connection, principal):
        environment = operable_environment(connection, principal, environment_id)
        restart(connection, principal, environment, pull=pull)
        return environment_out(get_environment(connection, principal, environment_id))


@delete("/{environment_id:uuid}", status_code=202, sync_to_thread=True, opt=answers(403))
def remove(environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> EnvironmentOut:
    """Ask for deleted: everything goes, volumes too; billing history stays."""
    return _control(request, api, environment_id, DesiredState.DELETED)


@get("/{environment_id:uuid}/access", sync_to_thread=True)
def access(environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> list[AccessDetail]:
    """How to reach the environment while it runs (empty otherwise). The SSH command and the Jupyter
    token are shown only to its owner and the workspace's admins."""
    with api.acting(request) as (connection, principal):
        return environment_access(connection, principal, environment_id, api.secret_store)


@get("/{environment_id:uuid}/events", sync_to_thread=True)
def events(
    environment_id: FromPath[uuid.UUID],
    request: AnyRequest,
    api: Api,
    limit: Limit = 100,
    cursor: FromQuery[str | None] = None,
) -> EventList:
    """What happened to the environment, oldest first."""
    with api.acting(request) as (connection, principal):
        get_environment(connection, principal, environment_id)
        rows, following = list_events(connection, environment_id, limit=limit, cursor=cursor)
    items = [EventOut(r.seq, r.created_at, str(r.actor_kind), r.kind, r.reason, r.message) for r in rows]
    return EventList(items, following)


@get("/{environment_id:uuid}/queue", sync_to_thread=True)
def queue(environment_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> QueueOut:
    """The environment's place in the capacity queue while it waits for GPUs."""
    with api.acting(request) as (connection, principal):
        row = get_environment(connection, principal, environment_id)
    return QueueOut(str(row.phase), row.queue_position, row.queue_reason)


@get("/{environment_id:uuid}/logs", sync_to_thread=True, media_type="text/plain", opt=answers(409, 503))
def logs(
    environment_id: FromPath[uuid.UUID],
    request: AnyRequest,
    api: Api,
    follow: FromQuery[bool] = False,
    tail: Annotated[int | None, QueryParameter(ge=1, le=100_000)] = None,
) -> Stream:
    """The main container's log as text, line by line; `follow` keeps streaming new lines. 409 when the
    environment has no running container (stopped, waiting for GPUs, its container not started)."""
    with api.acting(request) as (connection, principal):
        environment = get_environment(connection, principal, environment_id)
    require_container(environment)
    reader = api.logs
    if reader is None:
        raise ServiceUnavailableException(
            "this API has no cluster configured to read logs from (set `kubeconfig`)"
        )
    # Opened here, before the answer starts: a missing pod is a 409 problem, not a dropped connection.
    try:
        source = reader.stream_logs(environment_id, follow=follow, tail_lines=tail)
    except ClusterUnavailableError:
        raise ServiceUnavailableException("the cluster is not answering; try again") from None

    def lines() -> Iterator[str]:
        try:
            for line in source:
                yield line + "\n"
        except ClusterUnavailableError:
            yield "[remotegpu] the cluster stopped answering; try again\n"

    return Stream(lines(), media_type="text/plain; charset=utf-8")


router = Router(
    "/environments",
    route_handlers=[
        create,
        apply,
        list_all,
        show,
        update,
        start,
        stop,
        restart_one,
        remove,
        access,
        events,
        queue,
        logs,
    ],
    tags=["environments"],
)
