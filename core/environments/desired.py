"""Writing the desired side of environments: submit, change the spec, start, stop, delete.

Only these functions write `spec`, `generation` and `desired_state`; the reconciler writes the rest.
Each wakes the reconciler with NOTIFY (delivered when the caller's transaction commits); every change of
`desired_state`, whoever asks for it (a user, a workspace delete, a drain), goes through
`set_desired_state`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

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


def update_spec(connection: Connection, environment_id: uuid.UUID, spec: EnvironmentSpec) -> int:
    """Replace the spec and bump the generation; a running environment restarts. Returns the generation."""
    generation: int = connection.execute(
        text(
            "UPDATE environments SET spec = CAST(:spec AS jsonb), generation = generation + 1,"
            " desired_version = desired_version + 1,"
            " gpu_count = :gpu_count, gpu_model = :gpu_model, cpu_millis = :cpu_millis,"
            " memory_bytes = :memory_bytes, storage_bytes = :storage_bytes, updated_at = now()"
            " WHERE id = :id AND deleted_at IS NULL RETURNING generation"
        ),
        {"id": environment_id, "spec": _stored(spec), **vars(resource_requests(spec))},
    ).scalar_one()
    notify_environments(connection, str(environment_id))
    return generation


_SET_DESIRED_SQL = text(
    f"""
    WITH changed AS (
        UPDATE environments SET desired_state = :state, updated_at = now(),
               desired_version = desired_version + 1,
               submitted_at = CASE WHEN :starting AND desired_state <> '{DesiredState.RUNNING}' THEN :now ELSE submitted_at END,
               generation = CASE WHEN :starting AND phase = '{Phase.FAILED}' THEN generation + 1 ELSE generation END
         WHERE id = ANY(CAST(:ids AS uuid[])) AND deleted_at IS NULL
           AND (CAST(:replacing AS text) IS NULL OR desired_state = :replacing)
        RETURNING id, workspace_id
    ), recorded AS (
        INSERT INTO events (actor_kind, actor_user_id, workspace_id, environment_id, kind, reason, message)
        SELECT :actor_kind, :actor, workspace_id, id, 'api', :reason, :message FROM changed
        RETURNING 1
    )
    -- the wake-up NOTIFY in the same statement, one per environment
    SELECT id, pg_notify(:channel, id::text) FROM changed ORDER BY id
    """
)


def set_desired_state(
    connection: Connection,
    environment_ids: uuid.UUID | Collection[uuid.UUID],
    state: DesiredState,
    *,
    actor: uuid.UUID | None = None,
    replacing: DesiredState | None = None,
) -> list[uuid.UUID]:
    """Ask for running, stopped or deleted: the one writer of `desired_state`.

    Each change bumps `desired_version` (the reconciler takes the environment at once, even out of a
    backoff), records a `Desired<State>` event naming `actor` (the system when None) and wakes the
    reconciler. Starting a failed environment counts as a new attempt: it bumps the generation, since
    `failed` is terminal for the generation that failed. `replacing`: change only environments that
    still desire that state (checked on the locked row, so a racing user's change wins). Returns the
    environments changed (deleted ones are skipped).
    """
    ids = [environment_ids] if isinstance(environment_ids, uuid.UUID) else sorted(environment_ids)
    if not ids:
        return []
    rows = connection.execute(
        _SET_DESIRED_SQL,
        {
            "ids": ids,
            "state": state.value,
            "starting": state is DesiredState.RUNNING,
            "now": clock.now(),
            "actor_kind": (ActorKind.SYSTEM if actor is None else ActorKind.USER).value,
            "actor": actor,
            "reason": f"Desired{state.value.capitalize()}",
            "message": f"desired state set to {state.value}",
            "channel": CHANNEL,
            "replacing": None if replacing is None else replacing.value,
        },
    )
    return [row.id for row in rows]
