"""One lease, start to finish: process and apply steps back to back while each leads to the next."""

from __future__ import annotations

import logging
import time

from remotegpu.core.environments.states import Phase
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.environments.apply import LeaseLostError, apply
from remotegpu.reconciler.environments.leases import Lease
from remotegpu.reconciler.environments.process import process
from remotegpu.reconciler.environments.results import Outcome, StepResult

log = logging.getLogger(__name__)

MAX_STEPS_PER_LEASE = 8
"""Steps one worker may run back to back on one lease when each leads straight to the next."""


def reconcile(ctx: ReconcilerContext, lease: Lease) -> bool:
    """Run steps on one leased environment until it waits, settles or loses the lease; returns whether
    a step it applied moved the phase or released claims (what the scheduling pass may want to see: a
    settled environment's resync, nearly every step at scale, changes neither).

    An illegal trigger raises `IllegalTransitionError` out of here: the lease is dropped unapplied.
    """
    env = lease.state
    moved = False
    for step in range(MAX_STEPS_PER_LEASE):
        started = time.perf_counter()
        result = process(ctx, env)
        keep = result.continues(env.desired_state) and step + 1 < MAX_STEPS_PER_LEASE
        try:
            applied = apply(ctx, lease, env, result, keep_lease=keep)
        except LeaseLostError:
            log.warning("Apply skipped: lease token changed", extra={"env": str(env.id)})
            return moved
        finally:
            _observe(ctx, env.phase, result, time.perf_counter() - started)
        moved = moved or result.trigger is not None or result.release_claims
        if applied is None:  # the lease was given back
            return moved
        env = applied
    return moved


def _observe(ctx: ReconcilerContext, phase: Phase, result: StepResult, seconds: float) -> None:
    """A step's duration and outcome; a retry or failure also by its reason."""
    metrics = ctx.metrics
    metrics.step_duration.labels(phase.value, result.outcome.value).observe(seconds)
    if result.outcome in {Outcome.RETRY, Outcome.FAIL}:
        reason = result.reason or "Unknown"
        metrics.errors.labels(phase.value, reason).inc()
        if result.outcome is Outcome.RETRY:
            metrics.backoffs.labels(phase.value, reason).inc()
