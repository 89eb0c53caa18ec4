"""The environment pipeline: lease due environments, then load → process → apply, one step at a time.

- `fetch_leases` claims due rows with `FOR UPDATE SKIP LOCKED` into short leases, commits, and returns
  each leased row with what it holds (the load of the first step; later steps start from `apply`).
- `process` observes the cluster, decides with the lifecycle machine's vocabulary, acts at most once on
  the cluster (idempotently, by name) and returns a `StepResult`. No database session is open here.
- `apply` records the result in one statement (fencing check, lease-guarded row update, event), in a
  transaction after the claims' release when there is one (advisory host locks precede row locks).

Every step is safe to kill at any line: a repeated create finds the pod by name, a repeated delete or
release finds nothing left, and an allocation commits together with its phase change.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import Connection, text

from remotegpu.core.capacity.allocate import ClaimedPort, release, release_storage
from remotegpu.core.cluster.driver import (
    ClusterUnavailableError,
    PodObservation,
    PodState,
    WorkloadSpec,
    WorkloadWatcher,
)
from remotegpu.core.environments.derived import PodPlacement, workload_spec
from remotegpu.core.environments.lifecycle import IllegalTransitionError, next_phase
from remotegpu.core.environments.spec import EnvironmentSpec, spec_from_stored
from remotegpu.core.environments.states import DesiredState, Phase, PortPurpose, Protocol
from remotegpu.core.platform import clock
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import FENCE_SELECT, fence

log = logging.getLogger(__name__)

MAX_STEPS_PER_LEASE = 8
"""Steps one worker may run back to back on one lease when each leads straight to the next."""
POD_START_RECHECK = dt.timedelta(milliseconds=200)
"""How soon a starting pod is looked at again when no event of its own comes first."""


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one environment row."""

    environment_id: uuid.UUID
    token: uuid.UUID
    state: EnvironmentState
    """The row as the lease read it: the first step starts from it."""


@dataclass(frozen=True)
class EnvironmentState:
    """One environment as loaded under its lease."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    spec: EnvironmentSpec
    """Read back from the stored JSONB once, when the row is loaded."""
    generation: int
    observed_generation: int
    desired_state: DesiredState
    desired_version: int
    phase: Phase
    reason: str | None
    retry_count: int
    phase_entered_at: dt.datetime
    gpu_count: int
    cpu_millis: int
    memory_bytes: int
    host_id: uuid.UUID | None
    host_name: str | None
    host_health: str | None
    ports: tuple[ClaimedPort, ...]
    claimed_devices: tuple[str | None, ...] = ()
    """Device UUIDs of the GPUs this environment claims (None where the node never reported one)."""
    lost_gpus: tuple[int, ...] = ()
    """Indexes of claimed GPUs its node no longer reports (`GpuHealth.LOST`)."""


@dataclass(frozen=True)
class StepResult:
    """What a step decided. At most one of trigger / retry / requeue matters; see the constructors."""

    trigger: str | None = None
    retry_reason: str | None = None
    message: str = ""
    requeue_after: dt.timedelta | None = None
    release_claims: bool = False
    observed_generation: int | None = None
    mark_deleted: bool = False
    event_reason: str | None = None
    devices: tuple[str, ...] = ()
    """GPU UUIDs the node reported for the pod (recorded with the Running event)."""
    hold: bool = True
    """False: the phase moved, but the next step waits for `requeue_after` (or an event) anyway."""

    def continues(self, desired: DesiredState) -> bool:
        """True when the next step should run right away: a phase moved and there is more to do.

        Not after `admit` (the scheduling pass takes over) nor `become_running` (nothing left to do).
        """
        if not self.hold or self.trigger in {None, "fail", "finish_delete", "admit", "become_running"}:
            return False
        return not (self.trigger in {"finish_stop", "stop_unplaced"} and desired is not DesiredState.RUNNING)


def advance(trigger: str, reason: str | None = None, message: str = "", **changes: Any) -> StepResult:
    """Move the phase with `trigger`."""
    return StepResult(trigger=trigger, event_reason=reason or trigger, message=message, **changes)


def requeue(after: dt.timedelta, **changes: Any) -> StepResult:
    """Nothing to do now; look again after `after`."""
    return StepResult(requeue_after=after, **changes)


def retry(reason: str, message: str = "") -> StepResult:
    """A temporary error: same phase, attempt counter + 1, exponential backoff."""
    return StepResult(retry_reason=reason, message=message, event_reason=reason)


def fail(reason: str, message: str = "") -> StepResult:
    """Terminal for this generation: claims are released and the reason kept."""
    return StepResult(trigger="fail", release_claims=True, event_reason=reason, message=message)


# -- fetch ---------------------------------------------------------------------------------------

_LEASE_CTES = (
    """
    WITH leader AS (
        -- the fencing check, in the same statement: a stale leader leases nothing
        """
    + FENCE_SELECT
    + """
    ), due AS (
        SELECT id FROM environments
         WHERE shard = :shard AND EXISTS (SELECT 1 FROM leader)
           -- due by time, or at once when a user changed the desired side (a stop wins over a backoff)
           AND (next_attempt_at IS NULL OR next_attempt_at <= :now OR desired_version <> seen_desired_version)
           AND (lock_expires_at IS NULL OR lock_expires_at < :now)
           AND phase <> 'deleted'
           AND NOT (phase = 'stopped' AND desired_state = 'stopped')
           AND NOT (phase = 'failed' AND desired_state <> 'deleted' AND generation = observed_generation)
           -- pending and waiting environments that want to run belong to the scheduling pass, which
           -- admits and places them in bulk; a user's stop or delete makes them the pipeline's again
           AND NOT (phase = 'pending' AND desired_state = 'running')
           AND NOT (phase = 'admitted' AND desired_state = 'running' AND generation = observed_generation
                    AND desired_version = seen_desired_version)
         ORDER BY next_attempt_at NULLS FIRST, id
         LIMIT :limit
         FOR UPDATE SKIP LOCKED
    )
    , leased AS (
    UPDATE environments e
       SET lock_token = gen_random_uuid(), lock_expires_at = :expires, lock_owner = :owner
      FROM due WHERE e.id = due.id
    RETURNING e.*
    )
"""
)


_NUDGE_SQL = text(
    """
    WITH leader AS ("""
    + FENCE_SELECT
    + """)
    UPDATE environments SET next_attempt_at = :now
     WHERE id = ANY(:ids) AND next_attempt_at > :now AND (lock_token IS NULL OR lock_expires_at < :now)
       AND EXISTS (SELECT 1 FROM leader)
    """
)


def fetch_leases(
    ctx: ReconcilerContext,
    limit: int,
    exclude: set[uuid.UUID] | None = None,
    nudge: Collection[uuid.UUID] = (),
) -> list[Lease]:
    """Lease up to `limit` due environments (skipping rows other workers hold), committed at once.

    `nudge`: environments whose pods changed; they become due now (unless leased), just before the
    lease, so a burst of pod events costs no transaction of its own. A fenced-out leader leases and
    nudges nothing; its heartbeat tells it that it no longer leads.
    """
    if limit <= 0 and not nudge:
        return []
    now = clock.now()
    fencing = {"shard": ctx.shard, "epoch": ctx.epoch}
    # Each statement checks the epoch itself, so each may be its own transaction (one round trip).
    with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        if nudge:
            connection.execute(_NUDGE_SQL, {"ids": list(nudge), "now": now, **fencing})
        rows: Sequence[Any] = []
        if limit > 0:
            rows = connection.execute(
                _LEASE_SQL,
                {"now": now, "limit": limit, "expires": now + ctx.lease, "owner": ctx.identity, **fencing},
            ).all()
    return [
        Lease(row.id, row.lock_token, _state(row)) for row in rows if not exclude or row.id not in exclude
    ]


# -- the row as a step sees it --------------------------------------------------------------------

_STATE_COLUMNS = """
    SELECT e.id, e.lock_token, e.workspace_id, e.name, CAST(e.spec AS text) AS spec, e.generation,
           e.observed_generation,
           e.desired_state, e.desired_version,
           e.phase, e.reason, e.retry_count, e.phase_entered_at, e.gpu_count, e.cpu_millis, e.memory_bytes,
           a.host_id, h.name AS host_name, h.health AS host_health,
           coalesce((SELECT json_agg(json_build_array(m.container_port, m.host_port, m.protocol, m.purpose, m.name)
                                     ORDER BY m.container_port)
                       FROM port_mappings m WHERE m.environment_id = e.id AND m.released_at IS NULL), '[]') AS ports,
           coalesce((SELECT json_agg(g.device_uuid ORDER BY g.device_uuid)
                       FROM gpu_claims c JOIN gpus g ON g.id = c.gpu_id
                      WHERE c.environment_id = e.id AND c.released_at IS NULL), '[]') AS claimed_devices,
           coalesce((SELECT json_agg(g.index ORDER BY g.index)
                       FROM gpu_claims c JOIN gpus g ON g.id = c.gpu_id
                      WHERE c.environment_id = e.id AND c.released_at IS NULL AND g.health = 'lost'), '[]')
               AS lost_gpus
      FROM environments e
      LEFT JOIN allocations a ON a.environment_id = e.id AND a.released_at IS NULL
      LEFT JOIN hosts h ON h.id = a.host_id
"""
# Leasing returns the leased rows with what they hold, so a first step needs no round trip of its own.
_LEASE_SQL = text(_LEASE_CTES + _STATE_COLUMNS.replace("FROM environments e", "FROM leased e"))


def _state(row: Any) -> EnvironmentState:
    return EnvironmentState(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        spec=spec_from_stored(row.spec),
        generation=row.generation,
        observed_generation=row.observed_generation,
        desired_state=DesiredState(row.desired_state),
        desired_version=row.desired_version,
        phase=Phase(row.phase),
        reason=row.reason,
        retry_count=row.retry_count,
        phase_entered_at=row.phase_entered_at,
        gpu_count=row.gpu_count,
        cpu_millis=row.cpu_millis,
        memory_bytes=row.memory_bytes,
        host_id=row.host_id,
        host_name=row.host_name,
        host_health=row.host_health,
        ports=tuple(ClaimedPort(c, h, Protocol(p), PortPurpose(u), n) for c, h, p, u, n in row.ports),
        claimed_devices=tuple(row.claimed_devices),
        lost_gpus=tuple(row.lost_gpus),
    )


# -- process -------------------------------------------------------------------------------------


def process(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    """Decide and act once; never raises for expected outcomes (a cluster outage is a retry)."""
    try:
        return _apply_deadline(ctx, env, _decide(ctx, env))
    except ClusterUnavailableError as error:
        return retry("ClusterUnavailable", str(error))


def _decide(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    # A user's delete or stop wins over in-flight work in any phase.
    if env.desired_state is DesiredState.DELETED:
        return _towards_deleted(ctx, env)
    if env.desired_state is DesiredState.STOPPED:
        return _towards_stopped(ctx, env)
    return _towards_running(ctx, env)


def _towards_deleted(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    if env.phase is not Phase.DELETING:
        return advance("delete", "Deleting")
    ctx.cluster.delete_workload(env.id, keep_volumes=False)
    ctx.kill_point("after-pod-deleted")
    return advance("finish_delete", "Deleted", release_claims=True, mark_deleted=True)


def _towards_stopped(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    if env.phase in {Phase.PENDING, Phase.ADMITTED}:
        return advance("stop_unplaced", "Stopped", release_claims=True)
    if env.phase in {Phase.SCHEDULED, Phase.PROVISIONING, Phase.RUNNING}:
        return advance("stop", "Stopping")
    if env.phase is Phase.STOPPING:
        ctx.cluster.delete_workload(env.id, keep_volumes=True)  # persistent volumes stay
        ctx.kill_point("after-pod-deleted")
        return advance("finish_stop", "Stopped", release_claims=True)
    return requeue(ctx.resync)


def _towards_running(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    spec_changed = env.generation != env.observed_generation
    phase = env.phase
    if phase is Phase.STOPPING:
        return _towards_stopped(ctx, env)
    if phase in {Phase.STOPPED, Phase.FAILED}:
        if phase is Phase.FAILED and not spec_changed:
            return requeue(ctx.resync)
        return advance("start", "Starting")
    if spec_changed and phase in {Phase.SCHEDULED, Phase.PROVISIONING, Phase.RUNNING}:
        return advance("stop", "Restarting", message=f"spec changed to generation {env.generation}")
    if phase is Phase.PENDING:
        return advance("admit", "Admitted", observed_generation=env.generation)
    if phase is Phase.ADMITTED:
        return requeue(ctx.resync, observed_generation=env.generation)
    lost = _lost_placement(env)
    if lost is not None:
        # Its pod goes first (this step); the claims are released when the result is applied, after.
        ctx.cluster.delete_workload(env.id, keep_volumes=True)
        return advance("reschedule", *lost, release_claims=True)
    if phase is Phase.SCHEDULED:
        ctx.cluster.ensure_workload(_workload(env))
        ctx.kill_point("after-pod-created")
        if isinstance(ctx.cluster, WorkloadWatcher):
            # The pod's own change (scheduled, running, failing) makes it due at once; the requeue is the
            # fallback for a lost event. Looking now would mostly find it Pending: a step for nothing.
            return advance("provision", "Provisioning", requeue_after=POD_START_RECHECK, hold=False)
        return advance("provision", "Provisioning")
    return _observe(ctx, env, ctx.cluster.observe_workload(env.id))


def _lost_placement(env: EnvironmentState) -> tuple[str, str] | None:
    """(reason, message) when the environment's host is down or a GPU it holds is lost; else None.
    Either way it goes back to the queue, to be placed again."""
    if env.host_health == "down":
        return "HostLost", f"host {env.host_name} is down"
    if env.lost_gpus:
        indexes = ", ".join(str(index) for index in env.lost_gpus)
        return "GpuLost", f"GPU {indexes} of host {env.host_name} is no longer reported by its node"
    return None


def _observe(ctx: ReconcilerContext, env: EnvironmentState, pod: PodObservation) -> StepResult:
    if pod.state is PodState.RUNNING:
        if env.phase is Phase.PROVISIONING:
            return advance("become_running", "Running", _binding_message(pod), devices=pod.devices)
        return requeue(ctx.resync)
    if pod.state is PodState.PENDING:
        return requeue(POD_START_RECHECK)
    if pod.state is PodState.FAILED:
        reason = pod.reason or "PodFailed"
        if not pod.retryable:
            ctx.cluster.delete_workload(env.id, keep_volumes=True)
            return fail(reason, pod.message)
        # Kubernetes keeps retrying the pod itself (image pulls, crash loops); we look again with backoff
        # and give up at the phase deadline.
        return retry(reason, pod.message)
    # The pod is gone while its host is healthy: create it again, on the same host with the same claims.
    ctx.cluster.ensure_workload(_workload(env))
    ctx.kill_point("after-pod-created")
    if env.phase is Phase.RUNNING:
        return advance("recreate", "PodLost", "pod vanished; re-created on the same host")
    return requeue(dt.timedelta(milliseconds=200))


def _binding_message(pod: PodObservation) -> str:
    """Where it runs, and with which GPUs when the node reports them (device-plugin mode)."""
    message = f"on {pod.node}"
    if pod.devices:
        message += f" with {', '.join(pod.devices)}"
    return message


def _binding_mismatch(env: EnvironmentState, devices: tuple[str, ...]) -> bool:
    claimed = {device for device in env.claimed_devices if device}
    return bool(devices) and bool(claimed) and set(devices) != claimed


def _apply_deadline(ctx: ReconcilerContext, env: EnvironmentState, result: StepResult) -> StepResult:
    """Past its phase's deadline with the same failing reason, an environment fails with that reason."""
    deadlines = {
        Phase.PROVISIONING: ctx.settings.provisioning_deadline_seconds,
        Phase.SCHEDULED: ctx.settings.provisioning_deadline_seconds,
        Phase.STOPPING: ctx.settings.stopping_deadline_seconds,
    }
    limit = deadlines.get(env.phase)
    if result.retry_reason is None or limit is None or result.retry_reason != env.reason:
        return result
    if clock.now() - env.phase_entered_at < dt.timedelta(seconds=limit):
        return result
    message = f"{result.retry_reason} for longer than the {env.phase.value} deadline ({int(limit)} s)"
    ctx.cluster.delete_workload(env.id, keep_volumes=True)  # failed holds nothing: the pod goes too
    return fail(result.retry_reason, message)


def _workload(env: EnvironmentState) -> WorkloadSpec:
    assert env.host_name is not None, "a placed environment has a host"
    placement = PodPlacement(env.host_name, env.ports, env.gpu_count, env.cpu_millis, env.memory_bytes)
    return workload_spec(env.id, env.workspace_id, env.generation, env.spec, placement)


# -- apply ---------------------------------------------------------------------------------------

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
        queue_position = NULL, queue_reason = NULL,
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
# now is (joined with what it holds after any release made earlier in the transaction).
_UPDATE_SQL = text(_UPDATE_CTES + _STATE_COLUMNS.replace("FROM environments e", "FROM updated e"))

_EVENT_SQL = text(
    """
    INSERT INTO events (actor_kind, workspace_id, environment_id, kind, reason, message, data)
    VALUES ('reconciler', :workspace_id, :environment_id, :kind, :reason, :message, CAST(:data AS jsonb))
    """
)


class LeaseLostError(Exception):
    """The guarded update matched no row: another worker owns the environment now."""


def apply(
    ctx: ReconcilerContext, lease: Lease, env: EnvironmentState, result: StepResult, *, keep_lease: bool
) -> EnvironmentState:
    """Record `result` in one transaction, guarded by the lease token and the fencing epoch.

    Returns the environment as it now is (the update's RETURNING, joined with what it holds after any
    release made earlier in the transaction): the next step on the same lease starts from it.
    """
    now = clock.now()
    new_phase = env.phase
    if result.trigger is not None:
        try:
            new_phase = next_phase(env.phase, result.trigger)
        except IllegalTransitionError:
            log.exception("Step result discarded", extra={"env": str(env.id), "trigger": result.trigger})
            result = requeue(ctx.resync)
    moved = new_phase is not env.phase
    reason: str | None
    last_error: str | None
    if result.retry_reason is not None:
        retry_count, reason = env.retry_count + 1, result.retry_reason
        next_attempt = now + ctx.backoff(env.retry_count)
        last_error = result.message or result.retry_reason
    else:
        retry_count = 0
        reason = result.event_reason if new_phase is Phase.FAILED else None
        last_error = result.message if new_phase is Phase.FAILED else None
        if keep_lease:
            next_attempt = now
        elif result.requeue_after is not None:
            next_attempt = now + result.requeue_after
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
        **_event_parameters(env, result, new_phase, record=moved or result.retry_reason is not None),
    }
    mismatch = bool(result.devices) and _binding_mismatch(env, result.devices)
    if not result.release_claims and not mismatch:
        # One statement: on an autocommit connection it is its own transaction (one round trip).
        with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            ctx.kill_point("mid-apply")
            row = connection.execute(_UPDATE_SQL, parameters).first()
            if row is None:
                _explain_missing_update(connection, ctx, env)
        return _state(row)
    with ctx.engine.begin() as connection:
        _release(connection, env.id, result)
        ctx.kill_point("mid-apply")
        row = connection.execute(_UPDATE_SQL, parameters).first()
        if row is None:
            _explain_missing_update(connection, ctx, env)
        if mismatch:
            _record_binding_mismatch(connection, env, result.devices)
    return _state(row)


def _release(connection: Connection, environment_id: uuid.UUID, result: StepResult) -> None:
    """Give back what the step freed, advisory locks before the row locks of the update that follows."""
    if result.mark_deleted:
        # the volumes are gone: their storage leaves the quotas (quota locks before host locks)
        release_storage(connection, environment_id)
    if result.release_claims:
        release(connection, environment_id)


def _explain_missing_update(
    connection: Connection, ctx: ReconcilerContext, env: EnvironmentState
) -> NoReturn:
    """The guarded update matched nothing: fenced out (`FencedOutError`) or the lease is gone."""
    fence(connection, ctx.shard, ctx.epoch)
    raise LeaseLostError(f"lease on {env.id} lost before apply")


def _record_binding_mismatch(connection: Connection, env: EnvironmentState, devices: tuple[str, ...]) -> None:
    """The device plugin gave other GPUs than the ones claimed: an event and a condition say so."""
    claimed = sorted(device for device in env.claimed_devices if device)
    message = f"node gave {', '.join(devices)}; claimed {', '.join(claimed)}"
    connection.execute(
        _EVENT_SQL,
        {
            "workspace_id": env.workspace_id,
            "environment_id": env.id,
            "kind": "binding",
            "reason": "GpuBindingMismatch",
            "message": message,
            "data": json.dumps({"given": list(devices), "claimed": claimed}),
        },
    )
    condition = {"type": "GpuBinding", "status": "False", "reason": "GpuBindingMismatch", "message": message}
    connection.execute(_SET_CONDITION_SQL, {"id": env.id, "condition": json.dumps(condition)})


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
    return {
        "record_event": True,
        "event_kind": "transition" if new_phase is not env.phase else "retry",
        "event_reason": result.event_reason or result.trigger or "Retry",
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


# -- one lease, start to finish ------------------------------------------------------------------


def reconcile(ctx: ReconcilerContext, lease: Lease) -> None:
    """Run steps on one leased environment until it waits, settles or loses the lease."""
    env = lease.state
    for step in range(MAX_STEPS_PER_LEASE):
        result = process(ctx, env)
        keep = result.continues(env.desired_state) and step + 1 < MAX_STEPS_PER_LEASE
        try:
            applied = apply(ctx, lease, env, result, keep_lease=keep)
        except LeaseLostError:
            log.warning("Apply skipped: lease token changed", extra={"env": str(env.id)})
            return
        if not keep:
            return
        env = applied
