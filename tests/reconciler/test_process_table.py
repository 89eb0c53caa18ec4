"""`process` chooses triggers the lifecycle table allows; what each (desired, phase) pair does.

No database: `process` opens no session (its engine points nowhere), and the in-memory cluster is the
world it observes and acts on.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest
from sqlalchemy import create_engine

from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.environments.lifecycle import Trigger, allowed_triggers, next_phase
from remotegpu.core.environments.states import DesiredState, HostHealth, Phase
from remotegpu.core.platform import clock
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.memory import InMemorySecretStore
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.environments.leases import EnvironmentState
from remotegpu.reconciler.environments.process import process
from remotegpu.reconciler.environments.results import Outcome, StepResult, advance, fail, requeue, retry
from remotegpu.tests.reconciler.world import SPEC
from remotegpu.tests.specs import environment_spec

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
NODE = "node-0"


def _context(cluster: InMemoryCluster) -> ReconcilerContext:
    nowhere = create_engine("postgresql+psycopg://nobody@invalid.invalid/none")  # never connected
    return ReconcilerContext(nowhere, cluster, Settings(), identity="test", secrets=InMemorySecretStore())


def _env(
    desired: DesiredState,
    phase: Phase,
    *,
    spec_changed: bool = False,
    host: HostHealth = HostHealth.READY,
    lost_gpus: tuple[int, ...] = (),
) -> EnvironmentState:
    placed = phase.may_own_pod()
    return EnvironmentState(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        name="table",
        spec=environment_spec("table", SPEC),
        generation=2 if spec_changed else 1,
        observed_generation=1,
        desired_state=desired,
        desired_version=1,
        phase=phase,
        reason=None,
        retry_count=0,
        phase_entered_at=NOW,
        gpu_count=2,
        cpu_millis=8000,
        memory_bytes=64 << 30,
        host_id=uuid.uuid4() if placed else None,
        host_name=NODE if placed else None,
        host_health=host.value if placed else None,
        ports=(),
        lost_gpus=lost_gpus if placed else (),
    )


def _step(env: EnvironmentState, cluster: InMemoryCluster | None = None) -> StepResult:
    cluster = cluster or InMemoryCluster(nodes={NODE})
    with clock.frozen_at(NOW):
        return process(_context(cluster), env)


@pytest.mark.parametrize(
    ("desired", "phase", "spec_changed", "host", "lost_gpus"),
    list(
        itertools.product(DesiredState, Phase, [False, True], [HostHealth.READY, HostHealth.DOWN], [(), (1,)])
    ),
)
def test_every_step_fires_a_trigger_the_table_allows_or_waits(
    desired: DesiredState, phase: Phase, spec_changed: bool, host: HostHealth, lost_gpus: tuple[int, ...]
) -> None:
    """Invariant: whatever the desire, phase, spec and placement, a step's trigger is legal from its
    phase (so `apply` finds its next phase in the table), and a step without one waits or retries."""
    result = _step(_env(desired, phase, spec_changed=spec_changed, host=host, lost_gpus=lost_gpus))
    if result.trigger is None:
        assert result.outcome in {Outcome.REQUEUE, Outcome.RETRY}
    else:
        assert result.trigger in allowed_triggers(phase), (desired, phase, result)
        assert isinstance(next_phase(phase, result.trigger), Phase)


_EXPECTED: dict[DesiredState, dict[Phase, Trigger | None]] = {
    # None: the step waits (requeue).
    DesiredState.DELETED: {
        **dict.fromkeys(Phase, Trigger.DELETE),
        Phase.DELETING: Trigger.FINISH_DELETE,
        Phase.DELETED: None,
    },
    DesiredState.STOPPED: {
        **dict.fromkeys(Phase, None),
        Phase.PENDING: Trigger.STOP_UNPLACED,
        Phase.ADMITTED: Trigger.STOP_UNPLACED,
        Phase.SCHEDULED: Trigger.STOP,
        Phase.PROVISIONING: Trigger.STOP,
        Phase.RUNNING: Trigger.STOP,
        Phase.STOPPING: Trigger.FINISH_STOP,
    },
    DesiredState.RUNNING: {
        **dict.fromkeys(Phase, None),
        Phase.SCHEDULED: Trigger.PROVISION,
        Phase.RUNNING: Trigger.RECREATE,  # its pod is gone (the cluster is empty): created again
        Phase.STOPPING: Trigger.FINISH_STOP,
        Phase.STOPPED: Trigger.START,
    },
}


@pytest.mark.parametrize(
    ("desired", "phase"), [(desired, phase) for desired in DesiredState for phase in Phase]
)
def test_the_trigger_each_desire_chooses_from_each_phase(desired: DesiredState, phase: Phase) -> None:
    """Healthy host, unchanged spec, no pod: the table of what a step does."""
    result = _step(_env(desired, phase))
    assert result.trigger is _EXPECTED[desired][phase]


def test_pending_environments_that_want_to_run_are_left_to_the_scheduling_pass() -> None:
    """ADMIT and SCHEDULE are fired in bulk by the scheduling pass, never by a step; a step on an
    admitted environment whose spec changed only records that it has seen the new generation."""
    assert _step(_env(DesiredState.RUNNING, Phase.PENDING)).outcome is Outcome.REQUEUE
    waiting = _step(_env(DesiredState.RUNNING, Phase.ADMITTED, spec_changed=True))
    assert (waiting.outcome, waiting.observed_generation) == (Outcome.REQUEUE, 2)


def test_a_failed_environment_starts_again_only_for_a_new_generation() -> None:
    assert _step(_env(DesiredState.RUNNING, Phase.FAILED)).outcome is Outcome.REQUEUE
    assert _step(_env(DesiredState.RUNNING, Phase.FAILED, spec_changed=True)).trigger is Trigger.START


@pytest.mark.parametrize("phase", [Phase.SCHEDULED, Phase.PROVISIONING, Phase.RUNNING])
def test_a_placed_environment_whose_spec_changed_restarts(phase: Phase) -> None:
    result = _step(_env(DesiredState.RUNNING, phase, spec_changed=True))
    assert (result.trigger, result.reason) == (Trigger.STOP, "Restarting")


@pytest.mark.parametrize("phase", [Phase.SCHEDULED, Phase.PROVISIONING, Phase.RUNNING])
def test_a_lost_placement_goes_back_to_the_queue_without_its_pod(phase: Phase) -> None:
    cluster = InMemoryCluster(nodes={NODE})
    for env, reason in [
        (_env(DesiredState.RUNNING, phase, host=HostHealth.DOWN), "HostLost"),
        (_env(DesiredState.RUNNING, phase, lost_gpus=(3,)), "GpuLost"),
    ]:
        result = _step(env, cluster)
        assert (result.trigger, result.reason, result.release_claims) == (Trigger.RESCHEDULE, reason, True)
        assert cluster.live_pods() == []


def test_a_provisioning_pod_that_runs_becomes_running_and_one_that_fails_for_good_fails() -> None:
    cluster = InMemoryCluster(nodes={NODE})
    env = _env(DesiredState.RUNNING, Phase.PROVISIONING)
    assert _step(env, cluster).outcome is Outcome.REQUEUE, "its pod was missing: created, looked at later"
    assert _step(env, cluster).trigger is Trigger.BECOME_RUNNING
    cluster.delete_workload(env.id, keep_volumes=True)
    cluster.fail_image(str(SPEC["image"]), "ErrImageNeverPull", retryable=False)
    assert _step(env, cluster).outcome is Outcome.REQUEUE  # created again, failing
    failed = _step(env, cluster)
    assert (failed.outcome, failed.trigger, failed.reason) == (
        Outcome.FAIL,
        Trigger.FAIL,
        "ErrImageNeverPull",
    )
    assert cluster.live_pods() == []


def test_a_cluster_outage_is_a_retry() -> None:
    cluster = InMemoryCluster(nodes={NODE}, unavailable=True)
    result = _step(_env(DesiredState.RUNNING, Phase.SCHEDULED), cluster)
    assert (result.outcome, result.reason) == (Outcome.RETRY, "ClusterUnavailable")


def test_a_step_continues_on_its_lease_only_into_a_phase_with_work_left() -> None:
    running, stopped = DesiredState.RUNNING, DesiredState.STOPPED
    assert advance(Trigger.STOP, "Stopping").continues(stopped)
    assert advance(Trigger.DELETE, "Deleting").continues(running)
    assert advance(Trigger.FINISH_STOP, "Stopped").continues(running), "a restart starts at once"
    assert not advance(Trigger.FINISH_STOP, "Stopped").continues(stopped)
    assert not advance(Trigger.START, "Starting").continues(running), "pending is the scheduling pass's"
    assert not advance(Trigger.BECOME_RUNNING, "Running").continues(running)
    assert not advance(Trigger.FINISH_DELETE, "Deleted").continues(running)
    assert not advance(Trigger.PROVISION, "Provisioning", recheck_after=dt.timedelta(seconds=1)).continues(
        running
    ), "waits for its pod"
    for waiting in [requeue(dt.timedelta(seconds=1)), retry("Busy"), fail("Broken")]:
        assert not waiting.continues(running)
