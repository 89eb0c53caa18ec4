"""What a step decided: a small typed value that `process` returns and `apply` records.

Four outcomes (controller-runtime's lesson: no bare "requeue" flag whose meaning depends on the others):
advance the phase with a trigger, requeue to look again later, retry a temporary error with backoff, or
fail for good. Build one with `advance`, `requeue`, `retry` or `fail`.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from remotegpu.core.environments.lifecycle import Trigger, destination
from remotegpu.core.environments.states import AccessKind, DesiredState, Phase
from remotegpu.core.gateways.gateway import GatewayConnection


class Outcome(enum.Enum):
    """The kind of a step's result."""

    ADVANCE = "advance"
    """The phase moves with `trigger`."""
    REQUEUE = "requeue"
    """Nothing to do now; look again after `after`."""
    RETRY = "retry"
    """A temporary error: same phase, attempt counter + 1, backoff; failed past the phase deadline."""
    FAIL = "fail"
    """Terminal for this generation: the phase moves to failed with `reason`, the claims are released."""


@dataclass(frozen=True)
class PinnedImage:
    """The digest a step resolved the spec's image tag to, at the generation it resolved it."""

    reference: str
    """The tag reference as the spec names it."""
    digest: str
    generation: int


@dataclass(frozen=True)
class StepResult:
    """One step's decision. Build it with the constructors below, which set only what their kind means."""

    outcome: Outcome
    trigger: Trigger | None = None
    """The move (ADVANCE and FAIL)."""
    reason: str | None = None
    """The event's reason (ADVANCE), the retry's or failure's reason (RETRY, FAIL)."""
    message: str = ""
    after: dt.timedelta | None = None
    """When to look again (REQUEUE; ADVANCE that waits for its pod)."""
    release_claims: bool = False
    """Give back GPUs and ports in the apply's transaction, before the row update."""
    mark_deleted: bool = False
    """The environment is gone with its volumes: the row is marked deleted, its storage leaves the quotas."""
    observed_generation: int | None = None
    """The spec generation the step has acted on, when it records one."""
    devices: tuple[str, ...] = ()
    """GPU UUIDs the node reported for the pod (recorded with the Running event)."""
    jupyter_ready: bool | None = None
    """For a running Jupyter environment: whether its container passes the Jupyter readiness probe
    (False sets the `JupyterUnavailable` condition, True clears it); None: not looked at."""
    gateway: GatewayConnection | None = None
    """The gateway connection the step made (or found) for the environment: recorded as its endpoint."""
    gateways_withdrawn: tuple[AccessKind, ...] = ()
    """Gateways whose connection the step removed: those endpoints are marked removed."""
    pinned: PinnedImage | None = None
    """The image digest the step resolved: recorded beside the observed state (REQUEUE)."""

    def continues(self, desired: DesiredState) -> bool:
        """True when the next step should run at once on the same lease: the phase moved into one where
        this pipeline has work left (a work phase, or stopped on the way to a start).

        A move that waits for its pod (`after` set) does not; neither does one into a phase another pass
        owns (pending and admitted belong to the scheduling pass) or where nothing is left to do.
        """
        if self.outcome is Outcome.REQUEUE and self.pinned is not None:
            return True  # pinned: the pod can be created at once, on the same lease
        if self.outcome is not Outcome.ADVANCE or self.trigger is None or self.after is not None:
            return False
        following = destination(self.trigger)
        return following.is_in_progress() or (following is Phase.STOPPED and desired is DesiredState.RUNNING)


def advance(
    trigger: Trigger,
    reason: str,
    message: str = "",
    *,
    release_claims: bool = False,
    mark_deleted: bool = False,
    devices: tuple[str, ...] = (),
    recheck_after: dt.timedelta | None = None,
    jupyter_ready: bool | None = None,
    gateway: GatewayConnection | None = None,
    gateways_withdrawn: tuple[AccessKind, ...] = (),
) -> StepResult:
    """Move the phase with `trigger`, recorded as an event with `reason`.

    `recheck_after`: the next step waits that long (or for an event) instead of following at once.
    """
    return StepResult(
        Outcome.ADVANCE,
        trigger=trigger,
        reason=reason,
        message=message,
        after=recheck_after,
        release_claims=release_claims,
        mark_deleted=mark_deleted,
        devices=devices,
        jupyter_ready=jupyter_ready,
        gateway=gateway,
        gateways_withdrawn=gateways_withdrawn,
    )


def requeue(
    after: dt.timedelta,
    *,
    observed_generation: int | None = None,
    jupyter_ready: bool | None = None,
    gateway: GatewayConnection | None = None,
    gateways_withdrawn: tuple[AccessKind, ...] = (),
) -> StepResult:
    """Nothing to do now; look again after `after` (recording `observed_generation` when given, and
    what a look at a running environment changed at its gateways)."""
    return StepResult(
        Outcome.REQUEUE,
        after=after,
        observed_generation=observed_generation,
        jupyter_ready=jupyter_ready,
        gateway=gateway,
        gateways_withdrawn=gateways_withdrawn,
    )


def retry(reason: str, message: str = "") -> StepResult:
    """A temporary error: same phase, attempt counter + 1, exponential backoff."""
    return StepResult(Outcome.RETRY, reason=reason, message=message)


def fail(reason: str, message: str = "", *, gateways_withdrawn: tuple[AccessKind, ...] = ()) -> StepResult:
    """Terminal for this generation: claims are released and the reason kept."""
    return StepResult(
        Outcome.FAIL,
        trigger=Trigger.FAIL,
        reason=reason,
        message=message,
        release_claims=True,
        gateways_withdrawn=gateways_withdrawn,
    )


def pinned(image: PinnedImage) -> StepResult:
    """The image is pinned: record the digest and go on at once (the pod is created next)."""
    return StepResult(Outcome.REQUEUE, after=dt.timedelta(0), pinned=image)
