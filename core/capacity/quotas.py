"""Quotas: reading a subject's limits and usage, changing limits under the quota lock, fast admission.

Usage counters live on the `resource_quotas` rows and are changed only by allocation and release. The
admission check reads them without locks (cheap, may be stale); allocation repeats it under the lock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, text

from remotegpu.core.environments.states import ActorKind
from remotegpu.core.platform.events import event_statement
from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock_all
from remotegpu.policies.admission import QuotaRequest, QuotaState, QuotaViolation, quota_violations

Subject = Literal["workspace", "user"]

# One JSON object per subject: the quota row plus its per-model limits and usage. `{column}` is
# `workspace_id` or `user_id`; `{value}` an SQL expression for the subject's id.
QUOTA_STATE_SQL = """
    SELECT row_to_json(qs) FROM (
        SELECT q.max_gpus, q.max_cpu_millis, q.max_memory_bytes, q.max_storage_bytes,
               q.max_running_environments, q.used_gpus, q.used_cpu_millis, q.used_memory_bytes,
               q.used_storage_bytes, q.running_environments,
               (SELECT coalesce(json_object_agg(m.gpu_model, json_build_array(m.max_gpus, m.used_gpus)), '{{}}')
                  FROM gpu_model_quotas m WHERE m.quota_id = q.id) AS models
          FROM resource_quotas q WHERE q.{column} = {value}
    ) qs
"""


def quota_state_from_json(subject: str, data: dict[str, Any] | None) -> QuotaState:
    """Build the policy's `QuotaState` from a `QUOTA_STATE_SQL` row; None (no row) is unlimited and unused."""
    if data is None:
        return QuotaState(subject=subject)
    models: dict[str, list[int | None]] = data.pop("models") or {}
    return QuotaState(
        subject=subject,
        **data,
        max_gpus_by_model={model: pair[0] for model, pair in models.items()},
        used_gpus_by_model={model: pair[1] or 0 for model, pair in models.items()},
    )


def read_quota(connection: Connection, subject: Subject, subject_id: uuid.UUID) -> QuotaState:
    """Limits and usage of one workspace or user (unlimited and unused when never set)."""
    column = "workspace_id" if subject == "workspace" else "user_id"
    sql = text(QUOTA_STATE_SQL.format(column=column, value=":subject_id"))
    data = connection.execute(sql, {"subject_id": subject_id}).scalar()
    return quota_state_from_json(subject, data)


@dataclass(frozen=True)
class QuotaLimits:
    """New limits for a subject; None is unlimited."""

    max_gpus: int | None = None
    max_cpu_millis: int | None = None
    max_memory_bytes: int | None = None
    max_storage_bytes: int | None = None
    max_running_environments: int | None = None
    max_gpus_by_model: dict[str, int | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The limits as JSON-ready data (for the audit event)."""
        return {
            "max_gpus": self.max_gpus,
            "max_cpu_millis": self.max_cpu_millis,
            "max_memory_bytes": self.max_memory_bytes,
            "max_storage_bytes": self.max_storage_bytes,
            "max_running_environments": self.max_running_environments,
            "max_gpus_by_model": dict(self.max_gpus_by_model),
        }


_UPSERT_LIMITS_SQL = """
    INSERT INTO resource_quotas ({column}, max_gpus, max_cpu_millis, max_memory_bytes, max_storage_bytes,
                                 max_running_environments)
    VALUES (:subject_id, :max_gpus, :max_cpu_millis, :max_memory_bytes, :max_storage_bytes,
            :max_running_environments)
    ON CONFLICT ({column}) DO UPDATE SET
        max_gpus = EXCLUDED.max_gpus, max_cpu_millis = EXCLUDED.max_cpu_millis,
        max_memory_bytes = EXCLUDED.max_memory_bytes, max_storage_bytes = EXCLUDED.max_storage_bytes,
        max_running_environments = EXCLUDED.max_running_environments, updated_at = now()
    RETURNING id
"""

_UPSERT_MODEL_LIMIT_SQL = text(
    """
    INSERT INTO gpu_model_quotas (quota_id, gpu_model, max_gpus) VALUES (:quota_id, :model, :max_gpus)
    ON CONFLICT (quota_id, gpu_model) DO UPDATE SET max_gpus = EXCLUDED.max_gpus
    """
)

_CLEAR_OTHER_MODEL_LIMITS_SQL = text(
    "UPDATE gpu_model_quotas SET max_gpus = NULL WHERE quota_id = :quota_id AND NOT (gpu_model = ANY(:models))"
)


def set_quota(
    connection: Connection,
    subject: Subject,
    subject_id: uuid.UUID,
    limits: QuotaLimits,
    *,
    actor_user_id: uuid.UUID | None = None,
) -> None:
    """Replace the limits of a subject under its quota lock, and record the change as an event.

    A limit may be set below current usage: nothing new is admitted until usage drops under it.
    """
    for name, value in limits.as_dict().items():
        if name != "max_gpus_by_model" and value is not None and value < 0:
            raise ValueError(f"{name}: must be at least 0 (or unset for unlimited)")
    namespace = LockNamespace.QUOTA_WORKSPACE if subject == "workspace" else LockNamespace.QUOTA_USER
    xact_lock_all(connection, [lock_key(namespace, subject_id)])
    column = "workspace_id" if subject == "workspace" else "user_id"
    values = {k: v for k, v in limits.as_dict().items() if k != "max_gpus_by_model"}
    quota_id = connection.execute(
        text(_UPSERT_LIMITS_SQL.format(column=column)), {"subject_id": subject_id, **values}
    ).scalar_one()
    for model, maximum in limits.max_gpus_by_model.items():
        connection.execute(
            _UPSERT_MODEL_LIMIT_SQL, {"quota_id": quota_id, "model": model, "max_gpus": maximum}
        )
    connection.execute(
        _CLEAR_OTHER_MODEL_LIMITS_SQL, {"quota_id": quota_id, "models": sorted(limits.max_gpus_by_model)}
    )
    connection.execute(
        *event_statement(
            actor_kind=ActorKind.USER if actor_user_id else ActorKind.SYSTEM,
            actor=actor_user_id,
            kind="quota",
            reason="QuotaChanged",
            message=f"{subject} quota set",
            workspace_id=subject_id if subject == "workspace" else None,
            data={"subject": subject, "subject_id": str(subject_id), **limits.as_dict()},
        )
    )


def admission_violations(
    connection: Connection, workspace_id: uuid.UUID, user_id: uuid.UUID, request: QuotaRequest
) -> list[QuotaViolation]:
    """The fast check at submit time (no locks): every limit `request` would break right now."""
    states = [read_quota(connection, "workspace", workspace_id), read_quota(connection, "user", user_id)]
    return [violation for state in states for violation in quota_violations(state, request)]
