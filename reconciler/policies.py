"""The policy job, a leader job: stop what a policy says must stop, and warn a workspace near its limit.

- **Max duration**: an environment past its spec's `policies.max_duration`, counted from the start of
  its current run (`core.environments.run_limits`), is stopped with the reason `MaxDurationReached`.
- **Idle GPUs**: a running environment whose GPUs were all below `idle_gpu_threshold_percent` for its
  `policies.idle_stop_after` (else its workspace's `default_idle_stop_minutes`) is stopped with `Idle`
  (`core.monitoring.idle`). One Prometheus query per run for all of them, sent with no database session
  open; Prometheus not answering, or data that does not cover the window, stops nothing.
- **Spending limits**: a workspace that spent its limit for the period (`core.billing.budget`) has its
  environments that hold capacity stopped with `BudgetExceeded` (new ones wait in the scheduling pass);
  one that spent 80 % or more gets one `BudgetWarning` event per period.

Every stop goes through the policy-stop path: `set_desired_state(..., STOPPED, replacing=RUNNING,
policy=...)` with the system as actor, in a transaction fenced by the leader's epoch. The `replacing`
guard makes it once: a stop already written (by an earlier tick killed after it, or a racing leader)
finds the environment no longer desiring running and changes nothing, and a user's racing stop, start or
delete on the locked row wins. Nothing is ever started by this job: a user starts a policy-stopped
environment again when the cause is gone.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import Connection, text

from remotegpu.core.billing.budget import Budget, BudgetState, budgets
from remotegpu.core.environments.desired import PolicyReason, set_desired_state
from remotegpu.core.environments.run_limits import MAX_DURATION_SQL, RUN_STARTED_SQL, run_deadline
from remotegpu.core.environments.states import ActorKind, DesiredState
from remotegpu.core.monitoring.idle import IdleCandidate, idle_candidates, idle_message, judge_idleness
from remotegpu.core.monitoring.prometheus import PrometheusUnavailableError
from remotegpu.core.platform import clock
from remotegpu.core.platform.events import event_statement
from remotegpu.policies.idle import IdleState, format_span
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.leader import fence

log = logging.getLogger(__name__)

BUDGET_EXCEEDED = "BudgetExceeded"
MAX_DURATION_REACHED = "MaxDurationReached"
BUDGET_WARNING = "BudgetWarning"
IDLE = "Idle"

_TIMED_SQL = text(
    f"""
    SELECT e.id, {MAX_DURATION_SQL} AS max_duration, {RUN_STARTED_SQL} AS run_started_at
      FROM environments e
     WHERE e.shard = :shard AND e.deleted_at IS NULL AND e.desired_state = '{DesiredState.RUNNING}'
       AND {MAX_DURATION_SQL} IS NOT NULL
    """
)

# What a spent budget stops: environments that hold capacity (placed, starting or running) or still
# accrue compute. One waiting for a placement holds nothing; the scheduling pass keeps it waiting.
_HOLDING_SQL = text(
    f"""
    SELECT e.id, e.workspace_id FROM environments e
     WHERE e.workspace_id = ANY(CAST(:workspaces AS uuid[])) AND e.shard = :shard AND e.deleted_at IS NULL
       AND e.desired_state = '{DesiredState.RUNNING}'
       AND (EXISTS (SELECT 1 FROM allocations a WHERE a.environment_id = e.id AND a.released_at IS NULL)
            OR EXISTS (SELECT 1 FROM meters m WHERE m.environment_id = e.id AND m.resource <> 'storage'
                                                AND m.ended_at IS NULL))
     ORDER BY e.id
    """
)

_WARNED_SQL = text(
    """
    SELECT EXISTS (SELECT 1 FROM events WHERE workspace_id = :workspace AND reason = :reason
                                          AND data->>'period_start' = :period_start)
    """
)


@dataclass(frozen=True)
class Stop:
    """One planned policy stop."""

    environment_id: uuid.UUID
    policy: PolicyReason


@dataclass
class PolicyReport:
    """What one run of the job did."""

    stopped: list[uuid.UUID] = field(default_factory=list)
    """Environments this run stopped (a planned stop someone else got to first is not here)."""
    warned: list[uuid.UUID] = field(default_factory=list)
    """Workspaces this run warned."""


def policy_tick(ctx: ReconcilerContext) -> PolicyReport:
    """One run for the shard this reconciler leads: plan from one snapshot, then write each stop and
    each warning in its own fenced transaction."""
    now = clock.now()
    with ctx.engine.connect() as connection:
        stops = _max_duration_stops(connection, ctx.shard, now)
        found = budgets(connection, now, ctx.settings.billing_period)
        stops += _budget_stops(connection, ctx, found)
        idle = (
            idle_candidates(connection, ctx.shard, ctx.settings.idle_time_scale)
            if ctx.gpu_metrics is not None
            else []
        )
    stops += _idle_stops(ctx, idle, now, already={stop.environment_id for stop in stops})
    ctx.kill_point("policy-planned")
    report = PolicyReport()
    for stop in stops:
        with ctx.engine.begin() as connection:
            changed = set_desired_state(
                connection,
                stop.environment_id,
                DesiredState.STOPPED,
                replacing=DesiredState.RUNNING,
                policy=stop.policy,
            )
            fence(connection, ctx.shard, ctx.epoch)
        report.stopped += changed
        if changed:
            log.info(
                "Policy stop", extra={"environment": str(stop.environment_id), "reason": stop.policy.reason}
            )
        ctx.kill_point("policy-stopped")
    for budget in found.values():
        if budget.state is not BudgetState.OK and _warn(ctx, budget):
            report.warned.append(budget.workspace_id)
    return report


def _max_duration_stops(connection: Connection, shard: int, now: dt.datetime) -> list[Stop]:
    stops = []
    for row in connection.execute(_TIMED_SQL, {"shard": shard}):
        deadline = run_deadline(row.max_duration, row.run_started_at)
        if deadline is None or deadline > now:
            continue
        message = (
            f"stopped by policy: it ran for its max_duration of {row.max_duration} (since"
            f" {row.run_started_at:%Y-%m-%d %H:%M:%S} UTC); start it again for another run"
        )
        data = {"max_duration": row.max_duration, "run_started_at": row.run_started_at, "deadline": deadline}
        stops.append(Stop(row.id, PolicyReason(MAX_DURATION_REACHED, message, data)))
    return stops


def _idle_stops(
    ctx: ReconcilerContext, candidates: list[IdleCandidate], now: dt.datetime, already: set[uuid.UUID]
) -> list[Stop]:
    """Stops for the idle ones among `candidates` (not already stopped for another reason): one query."""
    candidates = [c for c in candidates if c.environment_id not in already]
    if ctx.gpu_metrics is None or not candidates:
        return []
    threshold = ctx.settings.idle_gpu_threshold_percent
    try:
        verdicts = judge_idleness(
            ctx.gpu_metrics,
            candidates,
            now=now,
            step=dt.timedelta(seconds=ctx.settings.idle_step_seconds),
            threshold=threshold,
        )
    except PrometheusUnavailableError as error:
        log.warning("Idle check skipped", extra={"reason": str(error)})
        return []
    stops = []
    for c in candidates:
        if verdicts[c.environment_id].state is IdleState.IDLE:
            data = {
                "idle_stop_after": format_span(c.window),
                "threshold_percent": threshold,
                "source": c.source,
            }
            stops.append(Stop(c.environment_id, PolicyReason(IDLE, idle_message(c, threshold), data)))
    return stops


def _budget_stops(
    connection: Connection, ctx: ReconcilerContext, found: dict[uuid.UUID, Budget]
) -> list[Stop]:
    spent = {ws: b for ws, b in found.items() if b.state is BudgetState.EXHAUSTED}
    if not spent:
        return []
    rows = connection.execute(_HOLDING_SQL, {"workspaces": list(spent), "shard": ctx.shard})
    return [Stop(row.id, _budget_reason(spent[row.workspace_id], ctx.settings.currency)) for row in rows]


def _budget_reason(budget: Budget, currency: str) -> PolicyReason:
    message = (
        f"stopped by policy: the workspace spent {_money(budget.spent)} of its {_money(budget.limit)}"
        f" {currency} spending limit for the period from {budget.period_start:%Y-%m-%d};"
        " start it again once the limit is raised or the next period begins (volumes keep their data)"
    )
    return PolicyReason(BUDGET_EXCEEDED, message, _budget_data(budget))


def _budget_data(budget: Budget) -> dict[str, object]:
    return {
        "limit": str(budget.limit),
        "spent": str(budget.spent),
        "percent": str(budget.percent),
        "period_start": budget.period_start.isoformat(),
    }


def _money(amount: Decimal) -> str:
    return f"{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):f}"


def _warn(ctx: ReconcilerContext, budget: Budget) -> bool:
    """Record the period's one `BudgetWarning` of the workspace unless it has one (a lock per workspace
    makes two leaders' checks one after the other); True when this call recorded it."""
    data = _budget_data(budget)
    with ctx.engine.begin() as connection:
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('budget-warning'), hashtext(CAST(:ws AS text)))"),
            {"ws": budget.workspace_id},
        )
        warned = connection.execute(
            _WARNED_SQL,
            {
                "workspace": budget.workspace_id,
                "reason": BUDGET_WARNING,
                "period_start": data["period_start"],
            },
        ).scalar_one()
        if warned:
            return False
        connection.execute(
            *event_statement(
                actor_kind=ActorKind.SYSTEM,
                kind="policy",
                reason=BUDGET_WARNING,
                message=(
                    f"the workspace has spent {budget.percent}% of its spending limit for the period"
                    f" ({_money(budget.spent)} of {_money(budget.limit)}); at 100% its environments stop"
                ),
                workspace_id=budget.workspace_id,
                data=data,
            )
        )
        fence(connection, ctx.shard, ctx.epoch)
    return True
