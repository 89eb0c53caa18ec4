"""Quotas of users ("customers") and workspaces: limits (platform admins set them) and live usage."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec
from litestar import Router, get, put
from litestar.params import FromPath, JSONBody

from remotegpu.api.context import AnyRequest, Api
from remotegpu.api.openapi import answers
from remotegpu.core.capacity import quota_control
from remotegpu.core.capacity.quotas import Subject
from remotegpu.core.environments.spec import GpuModel
from remotegpu.policies.admission import QuotaState

Count = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
"""A count limit: what the `integer` columns holding it take."""


class QuotaIn(msgspec.Struct, forbid_unknown_fields=True):
    """New limits; a missing or null limit is unlimited. CPU and sizes in Kubernetes notation."""

    gpus: Count | None = None
    gpus_by_model: dict[GpuModel, Count | None] = {}
    cpu: str | int | None = None
    memory: str | None = None
    storage: str | None = None
    running_environments: Count | None = None


class QuotaOut(msgspec.Struct):
    """Limits (null: unlimited) and current usage of one subject."""

    subject: Literal["user", "workspace"]
    subject_id: uuid.UUID
    max_gpus: int | None
    max_gpus_by_model: dict[str, int | None]
    max_cpu_millis: int | None
    max_memory_bytes: int | None
    max_storage_bytes: int | None
    max_running_environments: int | None


class UsageOut(msgspec.Struct):
    """What a subject holds right now."""

    subject: Literal["user", "workspace"]
    subject_id: uuid.UUID
    gpus: int
    gpus_by_model: dict[str, int]
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int
    running_environments: int


def _limits(data: QuotaIn) -> quota_control.RequestedLimits:
    return quota_control.RequestedLimits(
        data.gpus, data.gpus_by_model, data.cpu, data.memory, data.storage, data.running_environments
    )


def _quota_out(subject: Subject, subject_id: FromPath[uuid.UUID], state: QuotaState) -> QuotaOut:
    return QuotaOut(
        subject,
        subject_id,
        state.max_gpus,
        dict(state.max_gpus_by_model),
        state.max_cpu_millis,
        state.max_memory_bytes,
        state.max_storage_bytes,
        state.max_running_environments,
    )


def _usage_out(subject: Subject, subject_id: FromPath[uuid.UUID], state: QuotaState) -> UsageOut:
    return UsageOut(
        subject,
        subject_id,
        state.used_gpus,
        dict(state.used_gpus_by_model),
        state.used_cpu_millis,
        state.used_memory_bytes,
        state.used_storage_bytes,
        state.running_environments,
    )


@get("/{customer_id:uuid}", sync_to_thread=True)
def user_quota(customer_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> QuotaOut:
    """A user's limits (their own, or anyone's for platform admins)."""
    with api.acting(request) as (connection, principal):
        return _quota_out("user", customer_id, quota_control.user_quota(connection, principal, customer_id))


@get("/{customer_id:uuid}/usage", sync_to_thread=True)
def user_usage(customer_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> UsageOut:
    """What a user holds now."""
    with api.acting(request) as (connection, principal):
        return _usage_out("user", customer_id, quota_control.user_quota(connection, principal, customer_id))


@put("/{customer_id:uuid}", sync_to_thread=True, opt=answers(403))
def set_user_quota(
    customer_id: FromPath[uuid.UUID], data: JSONBody[QuotaIn], request: AnyRequest, api: Api
) -> QuotaOut:
    """Replace a user's limits (platform admins)."""
    with api.acting(request) as (connection, principal):
        state = quota_control.set_user_quota(connection, principal, customer_id, _limits(data))
    return _quota_out("user", customer_id, state)


@get("/workspaces/{workspace_id:uuid}", sync_to_thread=True)
def workspace_quota(workspace_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> QuotaOut:
    """A workspace's limits (its members, and platform admins)."""
    with api.acting(request) as (connection, principal):
        state = quota_control.workspace_quota(connection, principal, workspace_id)
    return _quota_out("workspace", workspace_id, state)


@get("/workspaces/{workspace_id:uuid}/usage", sync_to_thread=True)
def workspace_usage(workspace_id: FromPath[uuid.UUID], request: AnyRequest, api: Api) -> UsageOut:
    """What a workspace holds now."""
    with api.acting(request) as (connection, principal):
        state = quota_control.workspace_quota(connection, principal, workspace_id)
    return _usage_out("workspace", workspace_id, state)


@put("/workspaces/{workspace_id:uuid}", sync_to_thread=True, opt=answers(403))
def set_workspace_quota(
    workspace_id: FromPath[uuid.UUID], data: JSONBody[QuotaIn], request: AnyRequest, api: Api
) -> QuotaOut:
    """Replace a workspace's limits (platform admins)."""
    with api.acting(request) as (connection, principal):
        state = quota_control.set_workspace_quota(connection, principal, workspace_id, _limits(data))
    return _quota_out("workspace", workspace_id, state)


router = Router(
    "/quotas",
    route_handlers=[
        user_quota,
        user_usage,
        set_user_quota,
        workspace_quota,
        workspace_usage,
        set_workspace_quota,
    ],
    tags=["quotas"],
)
