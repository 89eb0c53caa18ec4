"""`process`: observe the cluster, choose a trigger, act at most once, and say what happened.

The choice is table-driven. For each desired state, `_PLANS` lists the triggers a step tries, in order;
a trigger is considered only where the lifecycle table allows it from the current phase, and its handler
(one per trigger) checks its own guard, acts on the cluster (idempotently, by name) and returns the
`StepResult`, or returns None when its guard does not hold. Where no trigger applies, the step requeues.
The phase the trigger leads to is not decided here: `apply` looks it up in the table.

No database session is open here; a cluster or secrets store outage is a retry, never an exception.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from types import MappingProxyType

from remotegpu.core.cluster.driver import (
    ClusterUnavailableError,
    PodObservation,
    PodState,
    WorkloadSpec,
    WorkloadWatcher,
)
from remotegpu.core.cluster.manifests import (
    JUPYTER_SECRET_SUFFIX,
    JUPYTER_TOKEN_KEY,
    SSH_KEYS_SECRET,
    GpuBindingError,
    wants_jupyter,
    wants_ssh,
)
from remotegpu.core.environments.access_keys import AUTHORIZED_KEYS, authorized_keys_file
from remotegpu.core.environments.derived import PodPlacement, workload_spec
from remotegpu.core.environments.jupyter import (
    JUPYTER_UNAVAILABLE_MESSAGE,
    ensure_jupyter_token,
    forget_jupyter_token,
)
from remotegpu.core.environments.lifecycle import Trigger, allowed_triggers
from remotegpu.core.environments.states import DesiredState, HostHealth, Phase
from remotegpu.core.gateways.gateway import GatewayUnavailableError
from remotegpu.core.platform import clock
from remotegpu.core.registry.client import RegistryUnavailableError
from remotegpu.core.secrets.store import SecretsAccessDeniedError, SecretsUnavailableError
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.environments import gateway_step
from remotegpu.reconciler.environments.datasets import mounts_of, prepare_datasets
from remotegpu.reconciler.environments.leases import EnvironmentState
from remotegpu.reconciler.environments.pinning import pin_image, pod_image
from remotegpu.reconciler.environments.results import Outcome, StepResult, advance, fail, requeue, retry

POD_START_RECHECK = dt.timedelta(milliseconds=200)
"""How soon a starting pod is looked at again when no event of its own comes first."""


def process(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    """Decide and act once; never raises for expected outcomes (a cluster outage is a retry)."""
    try:
        return _apply_deadline(ctx, env, _decide(ctx, env))
    except ClusterUnavailableError as error:
        return retry("ClusterUnavailable", str(error))
    except (SecretsUnavailableError, SecretsAccessDeniedError) as error:  # messages name paths, never values
        return retry("SecretsUnavailable", str(error))
    except GatewayUnavailableError as error:  # messages name the gateway and the call, never a credential
        return retry("GatewayUnavailable", str(error))
    except RegistryUnavailableError as error:  # a registry's client could not be built or reached
        return retry("RegistryUnavailable", str(error))
    except GpuBindingError as error:  # device-id binding before the host agent reported the UUIDs
        return retry("GpuBindingUnknown", str(error))


def _decide(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    allowed = allowed_triggers(env.phase)
    for trigger in _PLANS[env.desired_state]:
        if trigger in allowed:
            result = _HANDLERS[trigger](ctx, env)
            if result is not None:
                return result
    return requeue(ctx.resync)


# -- one handler per trigger: its guard, its action on the cluster, its result ---------------------

Handler = Callable[[ReconcilerContext, EnvironmentState], StepResult | None]


def _delete(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    return advance(Trigger.DELETE, "Deleting")


def _finish_delete(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    withdrawn = gateway_step.withdraw(
        ctx, env
    )  # before the pod: a gateway outage retries with it still there
    ctx.cluster.delete_workload(env.id, keep_volumes=False)
    if ctx.secrets is not None:
        forget_jupyter_token(ctx.secrets, env.workspace_id, env.id)
    ctx.kill_point("after-pod-deleted")
    if ctx.platform_keys is not None:  # after the objects: a repeat of this step finds nothing to delete
        ctx.platform_keys.delete(env.workspace_id, env.id)
    return advance(
        Trigger.FINISH_DELETE, "Deleted", release_claims=True, mark_deleted=True, gateways_withdrawn=withdrawn
    )


def _stop_unplaced(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    return advance(Trigger.STOP_UNPLACED, "Stopped", release_claims=True)


def _stop(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult | None:
    """A user's stop; or, for an environment that should run, a restart because its spec changed."""
    if env.desired_state is not DesiredState.RUNNING:
        return advance(Trigger.STOP, "Stopping")
    if _spec_changed(env):
        return advance(Trigger.STOP, "Restarting", f"spec changed to generation {env.generation}")
    return None


def _finish_stop(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    withdrawn = gateway_step.withdraw(ctx, env)
    ctx.cluster.delete_workload(env.id, keep_volumes=True)  # persistent volumes stay
    ctx.kill_point("after-pod-deleted")
    return advance(Trigger.FINISH_STOP, "Stopped", release_claims=True, gateways_withdrawn=withdrawn)


def _start(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult | None:
    """From stopped; from failed only for a new generation (a failure is kept until the spec changes)."""
    if env.phase is Phase.FAILED and not _spec_changed(env):
        return None
    return advance(Trigger.START, "Starting")


def _schedule(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    """The scheduling pass fires SCHEDULE in bulk; a step on a waiting environment (leased because its
    spec or desire changed) only records that it has seen this generation, whose requests the pass reads."""
    return requeue(ctx.resync, observed_generation=env.generation)


def _reschedule(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult | None:
    """Back to the queue when the host is down or a GPU it holds is lost."""
    lost = _lost_placement(env)
    if lost is None:
        return None
    # Its pod goes first (this step); the claims are released when the result is applied, after.
    withdrawn = gateway_step.withdraw(ctx, env, best_effort=True)  # it is re-published where it lands
    ctx.cluster.delete_workload(env.id, keep_volumes=True)
    return advance(Trigger.RESCHEDULE, *lost, release_claims=True, gateways_withdrawn=withdrawn)


def _provision(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    """The image is pinned first (a step of its own, `pinning`), then the pod is created with it."""
    pin = pin_image(ctx, env)
    if pin is not None:
        return pin
    waiting = prepare_datasets(ctx, env)  # ready, and those in S3 synced into volumes
    if waiting is not None:
        return waiting
    _ensure_pod(ctx, env, _workload(ctx, env))
    ctx.kill_point("after-pod-created")
    if isinstance(ctx.cluster, WorkloadWatcher):
        # The pod's own change (scheduled, running, failing) makes it due at once; the recheck is the
        # fallback for a lost event. Looking now would mostly find it Pending: a step for nothing.
        return advance(Trigger.PROVISION, "Provisioning", recheck_after=POD_START_RECHECK)
    return advance(Trigger.PROVISION, "Provisioning")


def _observe_pod(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult:
    """Provisioning or running: the pod's observed state decides (running, recreated, failed, retried)."""
    pod = ctx.cluster.observe_workload(env.id)
    if pod.state is not PodState.FAILED:
        # every look re-checks the keys (a compare in the driver's memory when unchanged), so a removed
        # key is gone from a running environment within one resync
        _ensure_ssh_keys(ctx, env, _workload(ctx, env))
    if pod.state is PodState.RUNNING:
        if not pod.ready and not _jupyter_probe_failed(ctx, env, pod):
            return requeue(POD_START_RECHECK)  # its probe has not had its chance yet
        jupyter_ready = pod.ready if "jupyter" in env.spec.access else None
        if env.phase is Phase.PROVISIONING:
            message = _binding_message(pod)
            if jupyter_ready is False:
                message += f"; Jupyter unavailable: {JUPYTER_UNAVAILABLE_MESSAGE}"
            # reported running only once its gateway connection exists
            gateway = gateway_step.publish(ctx, env)
            if gateway is not None:
                ctx.kill_point("after-gateway-connection")
                message += f"; {gateway.kind} connection {gateway.connection_id}"
            return advance(
                Trigger.BECOME_RUNNING,
                "Running",
                message,
                devices=pod.devices,
                jupyter_ready=jupyter_ready,
                gateway=gateway,
            )
        change = gateway_step.refresh(ctx, env)
        return requeue(
            ctx.resync,
            jupyter_ready=jupyter_ready,
            gateway=change.connection,
            gateways_withdrawn=change.withdrawn,
        )
    if pod.state is PodState.PENDING:
        return requeue(POD_START_RECHECK)
    if pod.state is PodState.FAILED:
        reason = pod.reason or "PodFailed"
        if not pod.retryable:
            withdrawn = gateway_step.withdraw(ctx, env, best_effort=True)
            ctx.cluster.delete_workload(env.id, keep_volumes=True)
            return fail(reason, pod.message, gateways_withdrawn=withdrawn)
        # Kubernetes keeps retrying the pod itself (image pulls, crash loops); we look again with backoff
        # and give up at the phase deadline.
        return retry(reason, pod.message)
    # The pod is gone while its host is healthy: create it again, on the same host with the same claims.
    _ensure_pod(ctx, env, _workload(ctx, env))
    ctx.kill_point("after-pod-created")
    if env.phase is Phase.RUNNING:
        return advance(Trigger.RECREATE, "PodLost", "pod vanished; re-created on the same host")
    return requeue(POD_START_RECHECK)


_HANDLERS: Mapping[Trigger, Handler] = MappingProxyType(
    {
        Trigger.DELETE: _delete,
        Trigger.FINISH_DELETE: _finish_delete,
        Trigger.STOP_UNPLACED: _stop_unplaced,
        Trigger.STOP: _stop,
        Trigger.FINISH_STOP: _finish_stop,
        Trigger.START: _start,
        Trigger.SCHEDULE: _schedule,
        Trigger.RESCHEDULE: _reschedule,
        Trigger.PROVISION: _provision,
        # The pod decides in both: provisioning becomes running, a running one whose pod vanished is
        # re-created; either may fail or retry instead.
        Trigger.BECOME_RUNNING: _observe_pod,
        Trigger.RECREATE: _observe_pod,
    }
)
"""ADMIT is the scheduling pass's alone (pending environments that want to run are never leased), and
FAIL is what a handler returns when the pod or a deadline says so, never a trigger a plan tries."""

_PLANS: Mapping[DesiredState, tuple[Trigger, ...]] = MappingProxyType(
    {
        # A user's delete or stop wins over in-flight work in any phase.
        DesiredState.DELETED: (Trigger.DELETE, Trigger.FINISH_DELETE),
        DesiredState.STOPPED: (Trigger.STOP_UNPLACED, Trigger.STOP, Trigger.FINISH_STOP),
        DesiredState.RUNNING: (
            Trigger.FINISH_STOP,  # a stop under way finishes before anything starts again
            Trigger.START,
            Trigger.STOP,  # the spec changed while placed: restart
            Trigger.RESCHEDULE,  # the placement is lost
            Trigger.SCHEDULE,
            Trigger.PROVISION,
            Trigger.BECOME_RUNNING,
            Trigger.RECREATE,
        ),
    }
)
"""Per desired state, the triggers a step tries, in order (each only where the table allows it)."""


# -- what the handlers look at ---------------------------------------------------------------------


def _spec_changed(env: EnvironmentState) -> bool:
    return env.generation != env.observed_generation


def _lost_placement(env: EnvironmentState) -> tuple[str, str] | None:
    """(reason, message) when the environment's host is down or a GPU it holds is lost; else None.
    Either way it goes back to the queue, to be placed again."""
    if env.host_health == HostHealth.DOWN:
        return "HostLost", f"host {env.host_name} is down"
    if env.lost_gpus:
        indexes = ", ".join(str(index) for index in env.lost_gpus)
        return "GpuLost", f"GPU {indexes} of host {env.host_name} is no longer reported by its node"
    return None


def _binding_message(pod: PodObservation) -> str:
    """Where it runs, and with which GPUs when the node reports them (device-plugin mode)."""
    message = f"on {pod.node}"
    if pod.devices:
        message += f" with {', '.join(pod.devices)}"
    return message


def _apply_deadline(ctx: ReconcilerContext, env: EnvironmentState, result: StepResult) -> StepResult:
    """Past its phase's deadline with the same failing reason, an environment fails with that reason."""
    deadlines = {
        Phase.PROVISIONING: ctx.settings.provisioning_deadline_seconds,
        Phase.SCHEDULED: ctx.settings.provisioning_deadline_seconds,
        Phase.STOPPING: ctx.settings.stopping_deadline_seconds,
    }
    limit = deadlines.get(env.phase)
    reason = result.reason
    if result.outcome is not Outcome.RETRY or reason is None or limit is None or reason != env.reason:
        return result
    if clock.now() - env.phase_entered_at < dt.timedelta(seconds=limit):
        return result
    message = f"{reason} for longer than the {env.phase.value} deadline ({int(limit)} s)"
    ctx.metrics.deadline_failures.labels(env.phase.value).inc()
    withdrawn = gateway_step.withdraw(ctx, env, best_effort=True)
    ctx.cluster.delete_workload(env.id, keep_volumes=True)  # failed holds nothing: the pod goes too
    return fail(reason, message, gateways_withdrawn=withdrawn)


def _ensure_pod(ctx: ReconcilerContext, env: EnvironmentState, workload: WorkloadSpec) -> None:
    """The Secrets the pod reads first (a pod created before its Secret fails to start; sshd must find
    its keys when it starts), then the pod."""
    _ensure_ssh_keys(ctx, env, workload)
    if wants_jupyter(workload):
        if ctx.secrets is None:
            raise SecretsUnavailableError(
                "no secrets store for the Jupyter token: set secrets_key (`remotegpu secrets generate-key`)"
                " or secrets_backend = vault"
            )
        token = ensure_jupyter_token(ctx.secrets, workload.workspace_id, workload.environment_id)
        ctx.cluster.ensure_environment_secret(
            env.id, env.workspace_id, JUPYTER_SECRET_SUFFIX, {JUPYTER_TOKEN_KEY: token}
        )
    ctx.cluster.ensure_workload(workload)


def _jupyter_probe_failed(ctx: ReconcilerContext, env: EnvironmentState, pod: PodObservation) -> bool:
    """A Jupyter container that started longer ago than the probe's grace and still is not ready: the
    entrypoint found no `jupyter` (a container just started may simply not have been probed yet)."""
    if "jupyter" not in env.spec.access or pod.started_at is None:
        return False
    grace = dt.timedelta(seconds=ctx.settings.jupyter_probe_grace_seconds)
    return clock.now() - pod.started_at >= grace


def _ensure_ssh_keys(ctx: ReconcilerContext, env: EnvironmentState, workload: WorkloadSpec) -> None:
    """Write the environment's keys Secret (`env-<id>-ssh`) when it has SSH access: the entitled users'
    keys, loaded with its row, and its platform key (generated on first use)."""
    if not wants_ssh(workload):
        return
    platform = ctx.platform_keys.public_key(env.workspace_id, env.id) if ctx.platform_keys else None
    content = authorized_keys_file(env.authorized_keys, platform)
    ctx.cluster.ensure_environment_secret(
        env.id, env.workspace_id, SSH_KEYS_SECRET, {AUTHORIZED_KEYS: content}
    )


def _workload(ctx: ReconcilerContext, env: EnvironmentState) -> WorkloadSpec:
    assert env.host_name is not None, "a placed environment has a host"
    devices = tuple(device for device in env.claimed_devices if device)
    placement = PodPlacement(
        env.host_name, env.ports, env.gpu_count, env.cpu_millis, env.memory_bytes, gpu_uuids=devices
    )
    return workload_spec(
        env.id,
        env.workspace_id,
        env.generation,
        env.spec,
        placement,
        image=pod_image(env),
        datasets=mounts_of(ctx, env),
        home=env.home,
    )
