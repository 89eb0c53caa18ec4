"""What a user may do to environments: apply a spec (create or update by name), start, stop, restart,
delete, with the workspace role checks in front of `core.environments.desired`, which writes the desired side
and wakes the reconciler.

Every function runs inside the caller's transaction, records an audit event, and is idempotent:
applying the same spec twice, or stopping a stopped environment, changes nothing.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from remotegpu.core.accounts.membership import WorkspaceAccess
from remotegpu.core.accounts.users import Principal
from remotegpu.core.catalog.images import ImageGoneError, resolve_image
from remotegpu.core.datasets.mounts import check_datasets_exist
from remotegpu.core.environments.desired import set_desired_state, submit_environment, update_spec
from remotegpu.core.environments.spec import EnvironmentSpec, spec_from_stored, spec_to_dict
from remotegpu.core.environments.states import DesiredState, Phase, WorkspaceRole
from remotegpu.core.environments.views import get_environment
from remotegpu.core.platform.errors import ConflictError, ForbiddenError
from remotegpu.core.platform.events import record_mutation
from remotegpu.core.platform.locks import LockNamespace, lock_key, xact_lock
from remotegpu.policies.roles import Action, may_operate_environment


class ApplyOutcome(enum.StrEnum):
    """What `apply_spec` did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ApplyResult:
    """The environment an apply touched and what happened to it."""

    environment_id: uuid.UUID
    outcome: ApplyOutcome
    stored_spec: dict[str, Any] | None
    """The spec stored before this apply (None when it was created): what a dry run diffs against."""
    desired_spec: dict[str, Any]
    """The spec as stored by this apply (image resolved through the catalog)."""


def desired_spec(connection: Connection, access: WorkspaceAccess, spec: EnvironmentSpec) -> EnvironmentSpec:
    """The spec as it will be stored: normalised, with the image resolved through the catalog; the
    datasets it mounts must exist in the workspace."""
    check_datasets_exist(connection, access.id, [dataset.name for dataset in spec.datasets])
    return msgspec.structs.replace(spec, image=resolve_image(connection, access.id, spec.image))


def apply_spec(
    connection: Connection,
    principal: Principal,
    access: WorkspaceAccess,
    spec: EnvironmentSpec,
    *,
    create_only: bool = False,
    dry_run: bool = False,
) -> ApplyResult:
    """Create the environment named in `spec`, or bring an existing one to it (a changed spec bumps the
    generation; a changed `state` starts or stops it). `dry_run` checks and reports without writing."""
    access.require(Action.CREATE_ENVIRONMENT)
    gone: ImageGoneError | None = None
    try:
        resolved = desired_spec(connection, access, spec)
    except ImageGoneError as error:
        # refused for a new environment or a new image; an environment already on it keeps it
        gone, resolved = error, msgspec.structs.replace(spec, image=error.reference)
    wanted = spec_to_dict(resolved)
    desired = DesiredState(spec.state)
    if gone is not None and create_only:
        raise gone
    if create_only and not dry_run:
        # No lookup first: the unique index on live names refuses a duplicate (`_create`).
        created = _create(connection, principal, access, resolved, desired)
        return ApplyResult(created, ApplyOutcome.CREATED, None, wanted)
    if not dry_run:  # two applies of a new name: the second waits, then finds the first's and updates it
        xact_lock(connection, lock_key(LockNamespace.ENVIRONMENT_NAME, (access.id, spec.name)))
    current = connection.execute(
        text(
            "SELECT id, user_id, spec, desired_state FROM environments"
            " WHERE workspace_id = :w AND name = :name AND deleted_at IS NULL FOR UPDATE"
        ),
        {"w": access.id, "name": spec.name},
    ).one_or_none()
    if gone is not None and (current is None or current.spec.get("image") != gone.reference):
        raise gone
    if current is None:
        if dry_run:
            return ApplyResult(uuid.UUID(int=0), ApplyOutcome.CREATED, None, wanted)
        created = _create(connection, principal, access, resolved, desired)
        return ApplyResult(created, ApplyOutcome.CREATED, None, wanted)
    if create_only:
        raise _name_taken(spec.name, access)
    _require_operate(access, principal, current.user_id, spec.name)
    changed_spec = current.spec != wanted
    changed_state = current.desired_state != desired.value
    if dry_run or not (changed_spec or changed_state):
        outcome = ApplyOutcome.UPDATED if changed_spec or changed_state else ApplyOutcome.UNCHANGED
        return ApplyResult(current.id, outcome, current.spec, wanted)
    if changed_spec:
        generation = update_spec(connection, current.id, resolved)
        record_mutation(
            connection,
            principal.user_id,
            "SpecChanged",
            f"spec changed (generation {generation})",
            workspace_id=access.id,
            environment_id=current.id,
        )
    if changed_state:
        set_desired_state(connection, current.id, desired, actor=principal.user_id)
    return ApplyResult(current.id, ApplyOutcome.UPDATED, current.spec, wanted)


def _name_taken(name: str, access: WorkspaceAccess) -> ConflictError:
    return ConflictError(
        f"environment {name!r} already exists in workspace {access.name!r};"
        " change it with PUT /environments/{id} or `remotegpu apply`",
        "$.name",
    )


def _create(
    connection: Connection,
    principal: Principal,
    access: WorkspaceAccess,
    spec: EnvironmentSpec,
    desired: DesiredState,
) -> uuid.UUID:
    # No savepoint: a refused INSERT aborts the transaction, which the raise below ends anyway.
    try:
        environment_id = submit_environment(
            connection,
            workspace_id=access.id,
            user_id=principal.user_id,
            spec=spec,
            desired=desired,
        )
    except IntegrityError:
        raise _name_taken(spec.name, access) from None
    record_mutation(
        connection,
        principal.user_id,
        "EnvironmentCreated",
        f"environment {spec.name} submitted",
        workspace_id=access.id,
        environment_id=environment_id,
    )
    return environment_id


def _require_operate(access: WorkspaceAccess, principal: Principal, creator: uuid.UUID, name: str) -> None:
    if not may_operate_environment(access.role.value, is_creator=creator == principal.user_id):
        raise ForbiddenError(
            f"environment {name!r} belongs to another member; your role ({access.role.value}) may only change"
            " your own environments (ask a workspace admin)"
        )


def operable_environment(connection: Connection, principal: Principal, environment_id: uuid.UUID) -> Any:
    """The environment, if the caller may change or control it (NotFoundError / ForbiddenError otherwise)."""
    row = get_environment(connection, principal, environment_id)
    access = WorkspaceAccess(row.workspace_id, row.workspace, WorkspaceRole(row.caller_role))
    _require_operate(access, principal, row.user_id, row.name)
    return row


def change_state(connection: Connection, principal: Principal, environment: Any, state: DesiredState) -> None:
    """Start, stop or delete an environment the caller may operate; repeating it changes nothing."""
    if environment.desired_state != state.value or (
        state is DesiredState.RUNNING and environment.phase == Phase.FAILED
    ):
        set_desired_state(connection, environment.id, state, actor=principal.user_id)


def restart(connection: Connection, principal: Principal, environment: Any, *, pull: bool = False) -> int:
    """Restart with the same spec: a new generation, so the reconciler stops and starts it again. It
    keeps the image digest it was pinned to, unless `pull` asks to resolve the tag again."""
    if environment.desired_state == DesiredState.DELETED.value:
        raise ConflictError("environment is being deleted; it cannot be restarted")
    generation = update_spec(connection, environment.id, spec_from_stored(environment.spec), pull=pull)
    if environment.desired_state != DesiredState.RUNNING.value:
        set_desired_state(connection, environment.id, DesiredState.RUNNING, actor=principal.user_id)
    record_mutation(
        connection,
        principal.user_id,
        "RestartRequested",
        f"restart requested (generation {generation}{', image pulled again' if pull else ''})",
        workspace_id=environment.workspace_id,
        environment_id=environment.id,
    )
    return generation


def replace_spec(
    connection: Connection,
    principal: Principal,
    environment: Any,
    spec: EnvironmentSpec,
    access: WorkspaceAccess,
    *,
    dry_run: bool = False,
) -> ApplyResult:
    """PUT semantics: the spec must keep the environment's name (renames are a new environment)."""
    if spec.name != environment.name:
        raise ConflictError(
            f"an environment cannot be renamed ({environment.name!r} → {spec.name!r}); create a new one",
            "$.name",
        )
    return apply_spec(connection, principal, access, spec, dry_run=dry_run)
