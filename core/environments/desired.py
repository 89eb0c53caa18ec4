"""Writing the desired side of environments: submit, change the spec, start, stop, delete.

Only these functions write `spec`, `generation` and `desired_state`; the reconciler writes the rest.
Each wakes the reconciler with NOTIFY (delivered when the caller's transaction commits); every change of
`desired_state`, whoever asks for it (a user, a workspace delete, a drain), goes through
`set_desired_state`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import msgspec
from sqlalchemy import Connection, text

from remotegpu.core.environments.derived import resource_requests
from remotegpu.core.environments.spec import EnvironmentSpec, spec_to_dict
from remotegpu.core.environments.states import ActorKind, DesiredState, Phase
from remotegpu.core.platform import clock
from remotegpu.core.platform.notify import CHANNEL, notify_environments


def _stored(spec: EnvironmentSpec) -> str:
    """The JSON the `spec` column holds (`spec_to_dict`); `spec_from_stored` reads it back."""
    return msgspec.json.encode(spec_to_dict(spec)).decode()


_INSERT_SQL = text(
    """
    WITH created AS (
        INSERT INTO environments (workspace_id, user_id, name, spec, desired_state, priority, submitted_at,
                                  gpu_count, gpu_model, cpu_millis, memory_bytes, storage_bytes)
        VALUES (:workspace_id, :user_id, :name, CAST(:spec AS jsonb), :desired, :priority, :now,
                :gpu_count, :gpu_model, :cpu_millis, :memory_bytes, :storage_bytes)
        RETURNING id
    )
    -- the wake-up NOTIFY in the same statement: one round trip fewer per submit
    SELECT id, pg_notify(:channel, id::text) FROM created
    """
)


def submit_environment(
    connection: Connection,
    *,
    workspace_id: uuid.UUID,
    user_id: uuid.UUID,
    spec: EnvironmentSpec,
    priority: int = 0,
    desired: DesiredState | None = None,
) -> uuid.UUID:
    """Store a new environment named `spec.name` with its desired state (default: the spec's `state`)
    and wake the reconciler. `spec` is as parsed (`parse_spec`, or the API's body after `check_spec`)."""
    environment_id: uuid.UUID = connection.execute(
        _INSERT_SQL,
        {
            "workspace_id": workspace_id,
            "user_id": user_id,
            "name": spec.name,
            "spec": _stored(spec),
            "desired": (desired or DesiredState(spec.state)).value,
            "priority": priority,
            "now": clock.now(),
            "channel": CHANNEL,
            **vars(resource_requests(spec)),
        },
    ).scalar_one()
    return environment_id


def update_spec(
    connection: Connection, environment_id: uuid.UUID, spec: EnvironmentSpec, *, pull: bool = False
) -> int:
    """Replace the spec and bump the generation; a running environment restarts. Returns the generation.
    `pull`: the new generation resolves its image tag again (`image_pull_generation`), instead of
    keeping the digest pinned before."""
    generation: int = connection.execute(
        text(
            "UPDATE environments SET spec = CAST(:spec AS jsonb), generation = generation + 1,"
            " desired_version = desired_version + 1,"
            " image_pull_generation = CASE WHEN :pull THEN generation + 1 ELSE image_pull_generation END,"
            " gpu_count = :gpu_count, gpu_model = :gpu_model, cpu_millis = :cpu_millis,"
            " memory_bytes = :memory_bytes, storage_bytes = :storage_bytes, updated_at = now()"
            " WHERE id = :id AND deleted_at IS NULL RETURNING generation"
        ),
        {"id": environment_id, "spec": _stored(spec), "pull": pull, **vars(resource_requests(spec))},
    ).scalar_one()
    notify_environments(connection, str(environment_id))
    return generation


POLICY_STOPPED = "PolicyStopped"
"""The condition an environment carries while a policy (not a user) stopped it: its reason
(`BudgetExceeded`, `MaxDurationReached`, later `Idle`) and message. Cleared when it is asked to run again."""

_SET_DESIRED_SQL = text(
    f"""
    WITH changed AS (
        UPDATE environments SET desired_state = :state, updated_at = now(),
               desired_version = desired_version + 1,
               submitted_at = CASE WHEN :starting AND desired_state <> '{DesiredState.RUNNING}' THEN :now ELSE submitted_at END,
               generation = CASE WHEN :starting AND phase = '{Phase.FAILED}' THEN generation + 1 ELSE generation END,
               -- a policy stop says why on the environment; asking for running again clears it
               conditions = CASE WHEN CAST(:condition AS jsonb) IS NULL AND NOT :starting THEN conditions
                   ELSE (SELECT coalesce(jsonb_agg(c), '[]') FROM jsonb_array_elements(conditions) c
                          WHERE c->>'type' <> '{POLICY_STOPPED}')
                        || CASE WHEN CAST(:condition AS jsonb) IS NULL THEN '[]'::jsonb
                                ELSE jsonb_build_array(CAST(:condition AS jsonb)) END END
         WHERE id = ANY(CAST(:ids AS uuid[])) AND deleted_at IS NULL
           AND (CAST(:replacing AS text) IS NULL OR desired_state = :replacing)
        RETURNING id, workspace_id
    ), recorded AS (
        INSERT INTO events (actor_kind, actor_user_id, workspace_id, environment_id, kind, reason, message, data)
        SELECT :actor_kind, :actor, workspace_id, id, :kind, :reason, :message, CAST(:data AS jsonb) FROM changed
        RETURNING 1
    )
    -- the wake-up NOTIFY in the same statement, one per environment
    SELECT id, pg_notify(:channel, id::text) FROM changed ORDER BY id
    """
)


@dataclass(frozen=True)
class PolicyReason:
    """Why the system (not a user) changes the desired state: a machine-readable `reason`
    (`BudgetExceeded`, `MaxDurationReached`), a sentence for people, and facts for the event's data."""

    reason: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


def set_desired_state(
    connection: Connection,
    environment_ids: uuid.UUID | Collection[uuid.UUID],
    state: DesiredState,
    *,
    actor: uuid.UUID | None = None,
    replacing: DesiredState | None = None,
    policy: PolicyReason | None = None,
) -> list[uuid.UUID]:
    """Ask for running, stopped or deleted: the one writer of `desired_state`.

    Each change bumps `desired_version` (the reconciler takes the environment at once, even out of a
    backoff), records a `Desired<State>` event naming `actor` (the system when None) and wakes the
    reconciler. Starting a failed environment counts as a new attempt: it bumps the generation, since
    `failed` is terminal for the generation that failed. `replacing`: change only environments that
    still desire that state (checked on the locked row, so a racing user's change wins). Returns the
    environments changed (deleted ones are skipped).

    `policy`: the system stops it for a policy (the policy-stop path, `reconciler.policies`): the event
    (kind `policy`) carries the policy's reason, message and data instead, and the environment carries
    a `PolicyStopped` condition with the reason and message until it is asked to run again, so
    `describe` and the API say why it stopped. Nothing restarts it by itself.
    """
    ids = [environment_ids] if isinstance(environment_ids, uuid.UUID) else sorted(environment_ids)
    if not ids:
        return []
    if policy is not None and (actor is not None or state is DesiredState.RUNNING):
        raise ValueError("a policy only stops or deletes, and only the system applies one")
    condition = (
        None
        if policy is None
        else {
            "type": POLICY_STOPPED,
            "status": "True",
            "reason": policy.reason,
            "message": policy.message,
            "since": clock.now().isoformat(),
        }
    )
    rows = connection.execute(
        _SET_DESIRED_SQL,
        {
            "ids": ids,
            "state": state.value,
            "starting": state is DesiredState.RUNNING,
            "now": clock.now(),
            "actor_kind": (ActorKind.SYSTEM if actor is None else ActorKind.USER).value,
            "actor": actor,
            "kind": "api" if policy is None else "policy",
            "reason": f"Desired{state.value.capitalize()}" if policy is None else policy.reason,
            "message": f"desired state set to {state.value}" if policy is None else policy.message,
            "data": json.dumps(
                {} if policy is None else {"desired": state.value, **policy.data}, default=str
            ),
            "condition": None if condition is None else json.dumps(condition),
            "channel": CHANNEL,
            "replacing": None if replacing is None else replacing.value,
        },
    )
    return [row.id for row in rows]
