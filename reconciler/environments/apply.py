"""`apply`: record a step's result in one statement, guarded by the lease token and the fencing epoch.

The next phase comes from the lifecycle table; a trigger the table refuses from the current phase is a
bug in the step, so it raises `IllegalTransitionError` and nothing is written (the worker drops the
lease, the loop logs the error, and the step is tried again once the lease has expired). When the step
freed claims, their release runs first in the same transaction (advisory host locks precede row locks).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, NoReturn

from sqlalchemy import Connection, text

from remotegpu.core.billing.meters import (
    close_compute_meters,
    close_storage_meters,
    open_compute_meters,
    open_storage_meters,
)
from remotegpu.core.capacity.release import release, release_storage
from remotegpu.core.datasets.homes import record_home
from remotegpu.core.environments.jupyter import JUPYTER_UNAVAILABLE, JUPYTER_UNAVAILABLE_MESSAGE
from remotegpu.core.environments.lifecycle import IllegalTransitionError, Trigger, next_phase
from remotegpu.core.environments.states import ActorKind, Phase
from remotegpu.core.platform import clock
from remotegpu.core.platform.events import event_statement
from remotegpu.core.platform.pipeline import Statement, run_pipelined
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.environments.leases import STATE_COLUMNS, EnvironmentState, Lease, state_from_row
from remotegpu.reconciler.environments.results import Outcome, StepResult
from remotegpu.reconciler.leader import FENCE_SELECT, fence

log = logging.getLogger(__name__)

_UPDATE_CTES = (
    """
    WITH leader AS (
        -- the fencing check, in the same statement: a stale leader's update matches nothing
        """
    + FENCE_SELECT
    + """
    ), updated AS (
    UPDATE environments SET
        phase = :phase,
        phase_entered_at = CASE WHEN :moved THEN :now ELSE phase_entered_at END,
        reason = :reason, last_error = :last_error, retry_count = :retry_count,
        next_attempt_at = :next_attempt_at,
        observed_generation = coalesce(:observed_generation, observed_generation),
        seen_desired_version = :desired_version,
        deleted_at = CASE WHEN :mark_deleted THEN :now ELSE deleted_at END,
        -- JupyterUnavailable: set while the probe fails, gone once it passes; untouched when not looked at
        conditions = CASE WHEN CAST(:jupyter_ready AS boolean) IS NULL THEN conditions
            ELSE (SELECT coalesce(jsonb_agg(c), '[]') FROM jsonb_array_elements(conditions) c
                   WHERE c->>'type' <> 'JupyterUnavailable')
                 || CASE WHEN CAST(:jupyter_ready AS boolean) THEN '[]'::jsonb
                         ELSE jsonb_build_array(CAST(:jupyter_condition AS jsonb)) END END,
        -- the pinned digest: observed, beside the phase; written only by the pinning step
        image_digest = CASE WHEN :pin THEN CAST(:pin_digest AS text) ELSE image_digest END,
        image_pinned_reference = CASE WHEN :pin THEN CAST(:pin_reference AS text) ELSE image_pinned_reference END,
        image_pinned_generation = CASE WHEN :pin THEN CAST(:pin_generation AS bigint) ELSE image_pinned_generation END,
        image_pinned_at = CASE WHEN :pin THEN :now ELSE image_pinned_at END,
        lock_token = CASE WHEN :keep_lease THEN lock_token END,
        lock_expires_at = CASE WHEN :keep_lease THEN CAST(:lease_expires AS timestamptz) END,
        lock_owner = CASE WHEN :keep_lease THEN lock_owner END,
        updated_at = :now
     WHERE id = :id AND lock_token = :token AND EXISTS (SELECT 1 FROM leader)
    RETURNING *
    ), recorded AS (
    INSERT INTO events (actor_kind, workspace_id, environment_id, kind, reason, message, data)
    SELECT 'reconciler', workspace_id, id, :event_kind, :event_reason, :event_message, CAST(:event_data AS jsonb)
      FROM updated WHERE :record_event
    RETURNING 1
    )
"""
)
# The whole record of a step in one statement: fencing check, guarded update, event, and the row as it
# now is (joined with what it holds after any release made earlier in the transaction) for the next step
# on the same lease; a step that gives the lease back gets the id alone (nobody reads the rest, and the
# join's subqueries were a good part of the statement).
_UPDATE_SQL = text(_UPDATE_CTES + STATE_COLUMNS.replace("FROM environments e", "FROM updated e"))
_UPDATE_ONLY_SQL = text(_UPDATE_CTES + "SELECT id FROM updated")


class LeaseLostError(Exception):
    """The guarded update matched no row: another worker owns the environment now."""


def apply(
    ctx: ReconcilerContext, lease: Lease, env: EnvironmentState, result: StepResult, *, keep_lease: bool
) -> EnvironmentState | None:
    """Record `result` in one transaction, guarded by the lease token and the fencing epoch.

    With `keep_lease`, returns the environment as it now is (the update's RETURNING, joined with what it
    holds after any release made earlier in the transaction): the next step on the same lease starts
    from it. Without, None: the lease is given back. Raises `IllegalTransitionError`, writing nothing,
    when the table refuses the result's trigger.
    """
    now = clock.now()
    new_phase = _next_phase(env, result)
    moved = new_phase is not env.phase
    reason: str | None
    last_error: str | None
    if result.outcome is Outcome.RETRY:
        retry_count, reason = env.retry_count + 1, result.reason
        next_attempt = now + ctx.backoff(env.retry_count)
        last_error = result.message or result.reason
    else:
        retry_count = 0
        reason = result.reason if new_phase is Phase.FAILED else None
        last_error = result.message if new_phase is Phase.FAILED else None
        if keep_lease:
            next_attempt = now
        elif result.after is not None:
            next_attempt = now + result.after
        else:  # the phase moved and nothing more is due now: look again at the resync
            next_attempt = now + ctx.resync
    parameters = {
        "id": env.id,
        "token": lease.token,
        "shard": ctx.shard,
        "epoch": ctx.epoch,
        "phase": new_phase.value,
        "moved": moved,
        "now": now,
        "reason": reason,
        "last_error": last_error,
        "retry_count": retry_count,
        "next_attempt_at": next_attempt,
        "observed_generation": result.observed_generation,
        "desired_version": env.desired_version,
        "mark_deleted": result.mark_deleted,
        "keep_lease": keep_lease,
        "lease_expires": now + ctx.lease,
        "jupyter_ready": result.jupyter_ready,
        "jupyter_condition": _JUPYTER_CONDITION,
        "pin": result.pinned is not None,
        "pin_digest": result.pinned.digest if result.pinned else None,
        "pin_reference": result.pinned.reference if result.pinned else None,
        "pin_generation": result.pinned.generation if result.pinned else None,
        **_event_parameters(
            env,
            result,
            new_phase,
            record=moved or result.outcome is Outcome.RETRY or result.pinned is not None,
        ),
    }
    mismatch = bool(result.devices) and _binding_mismatch(env, result.devices)
    endpoints = result.gateway is not None or bool(result.gateways_withdrawn)
    # what the move observes, sent with the guarded update in one round trip: a step that lost its lease
    # raises below, and its transaction, with them, rolls back (should one of them fail first, say on a
    # lock the new owner holds, the step fails with that error instead, writing nothing all the same)
    observed = _meter_changes(env, result, new_phase, now)
    if mismatch:
        observed.extend(_binding_mismatch_statements(env, result.devices))
    update = _UPDATE_SQL if keep_lease else _UPDATE_ONLY_SQL
    if not result.release_claims and not observed and not endpoints:
        # One statement: on an autocommit connection it is its own transaction (one round trip).
        with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            ctx.kill_point("mid-apply")
            row = connection.execute(update, parameters).first()
            if row is None:
                _explain_missing_update(connection, ctx, env)
        return state_from_row(row) if keep_lease else None
    with ctx.engine.begin() as connection:
        _release(connection, env, result)
        ctx.kill_point("mid-apply")
        updated, *_ = run_pipelined(connection, [(update, parameters), *observed])
        if not updated:
            _explain_missing_update(connection, ctx, env)
        row = updated[0]
        if endpoints:
            _record_endpoints(connection, env, result)
            if keep_lease:
                row = connection.execute(_STATE_SQL, {"id": env.id}).first()  # with its endpoints as now
    return state_from_row(row) if keep_lease else None


def _meter_changes(
    env: EnvironmentState, result: StepResult, new_phase: Phase, now: dt.datetime
) -> list[Statement]:
    """What the move observes for metering: running starts or ends compute, provisioning opens the
    volumes' storage (and makes the user's home volume, metered from then on), a delete with the
    volumes ends it (`core.billing.meters`, `core.datasets.homes`)."""
    changes: list[Statement] = []
    if env.phase is not Phase.RUNNING and new_phase is Phase.RUNNING:
        changes.append(open_compute_meters(env.id, now))
    if env.phase is Phase.RUNNING and new_phase is not Phase.RUNNING:
        changes.append(close_compute_meters(env.id, now))
    if result.trigger is Trigger.PROVISION:
        changes.extend(open_storage_meters(env.id, env.spec, now))
        if env.home is not None:  # its claim was created with the pod: the home exists from now, metered once
            changes.append(record_home(env.home, now))
    if result.mark_deleted:
        changes.append(close_storage_meters(env.id, now))
    return changes


_STATE_SQL = text(STATE_COLUMNS + " WHERE e.id = :id")
_ENDPOINT_SQL = text(
    """
    INSERT INTO access_endpoints (environment_id, kind, url)
    VALUES (:id, :kind, :url)
    ON CONFLICT (environment_id, kind) WHERE removed_at IS NULL DO UPDATE SET url = EXCLUDED.url
    """
)
_WITHDRAW_SQL = text(
    "UPDATE access_endpoints SET removed_at = :now WHERE environment_id = :id AND removed_at IS NULL"
    " AND kind = ANY(CAST(:kinds AS text[]))"
)


def _record_endpoints(connection: Connection, env: EnvironmentState, result: StepResult) -> None:
    """The gateway endpoint a step made, or the removal of those it withdrew (after the guarded update,
    in its transaction: a step that lost its lease records nothing)."""
    if result.gateways_withdrawn:
        kinds = [str(kind) for kind in result.gateways_withdrawn]
        connection.execute(_WITHDRAW_SQL, {"id": env.id, "now": clock.now(), "kinds": kinds})
    if result.gateway is not None:
        gateway = result.gateway
        connection.execute(_ENDPOINT_SQL, {"id": env.id, "kind": gateway.kind.value, "url": gateway.url})


def _next_phase(env: EnvironmentState, result: StepResult) -> Phase:
    """The phase after `result`, from the table; an illegal trigger is an error, never skipped."""
    if result.trigger is None:
        return env.phase
    try:
        return next_phase(env.phase, result.trigger)
    except IllegalTransitionError:
        log.error(
            "Step result refused: illegal trigger; lease dropped",
            extra={"env": str(env.id), "phase": env.phase.value, "trigger": str(result.trigger)},
        )
        raise


def _release(connection: Connection, env: EnvironmentState, result: StepResult) -> None:
    """Give back what the step freed, advisory locks before the row locks of the update that follows."""
    if result.mark_deleted:
        # the volumes are gone: their storage leaves the quotas (quota locks before host locks)
        release_storage(connection, env.id)
    if result.release_claims:
        release(connection, env.id, hosts=[env.host_id] if env.host_id else [])


def _explain_missing_update(
    connection: Connection, ctx: ReconcilerContext, env: EnvironmentState
) -> NoReturn:
    """The guarded update matched nothing: fenced out (`FencedOutError`) or the lease is gone."""
    fence(connection, ctx.shard, ctx.epoch)
    raise LeaseLostError(f"lease on {env.id} lost before apply")


def _binding_mismatch(env: EnvironmentState, devices: tuple[str, ...]) -> bool:
    claimed = {device for device in env.claimed_devices if device}
    return bool(devices) and bool(claimed) and set(devices) != claimed


def _binding_mismatch_statements(env: EnvironmentState, devices: tuple[str, ...]) -> list[Statement]:
    """The device plugin gave other GPUs than the ones claimed: an event and a condition say so."""
    claimed = sorted(device for device in env.claimed_devices if device)
    message = f"node gave {', '.join(devices)}; claimed {', '.join(claimed)}"
    event = event_statement(
        actor_kind=ActorKind.RECONCILER,
        kind="binding",
        reason="GpuBindingMismatch",
        message=message,
        workspace_id=env.workspace_id,
        environment_id=env.id,
        data={"given": list(devices), "claimed": claimed},
    )
    condition = {"type": "GpuBinding", "status": "False", "reason": "GpuBindingMismatch", "message": message}
    return [event, (_SET_CONDITION_SQL, {"id": env.id, "condition": json.dumps(condition)})]


_JUPYTER_CONDITION = json.dumps(
    {
        "type": JUPYTER_UNAVAILABLE,
        "status": "True",
        "reason": "ImageHasNoJupyter",
        "message": JUPYTER_UNAVAILABLE_MESSAGE,
    }
)

_SET_CONDITION_SQL = text(
    """
    UPDATE environments
       SET conditions = (SELECT coalesce(jsonb_agg(c), '[]') FROM jsonb_array_elements(conditions) c
                          WHERE c->>'type' <> 'GpuBinding') || jsonb_build_array(CAST(:condition AS jsonb))
     WHERE id = :id
    """
)


def _event_parameters(
    env: EnvironmentState, result: StepResult, new_phase: Phase, *, record: bool
) -> dict[str, Any]:
    """The transition or retry event of a step, as parameters of `_UPDATE_SQL` (`record`: write it)."""
    if not record:
        return dict.fromkeys(("event_kind", "event_reason", "event_message", "event_data")) | {
            "record_event": False
        }
    if result.pinned is not None:
        return {
            "record_event": True,
            "event_kind": "image",
            "event_reason": "ImagePinned",
            "event_message": f"{result.pinned.reference} is {result.pinned.digest}",
            "event_data": json.dumps(
                {
                    "reference": result.pinned.reference,
                    "digest": result.pinned.digest,
                    "generation": env.generation,
                }
            ),
        }
    return {
        "record_event": True,
        "event_kind": "transition" if new_phase is not env.phase else "retry",
        "event_reason": result.reason or "Retry",
        "event_message": result.message,
        "event_data": json.dumps(
            {
                "from": env.phase.value,
                "to": new_phase.value,
                "generation": env.generation,
                "devices": list(result.devices),
            }
        ),
    }
