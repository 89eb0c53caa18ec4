"""Which environments a reconciler step has to look at, in three disjoint classes, as SQL predicates.

A lease takes the classes in order — a user's change, then work with a phase to move, then the resyncs
of settled running environments — each by a limited scan of a partial index of its own (migration
0019), so a lease reads a few index entries whatever the table holds and whatever the planner's
statistics say. The predicates are the indexes' predicates: the statement names each one as written
here, so Postgres proves the index applies; the models and the migration repeat them verbatim.

- changed: the user changed the desired side (`desired_version <> seen_desired_version`): due at once,
  even during a backoff, unless it is settled whatever the desired side says (deleted, stopped and
  wanted stopped, failed for this generation, pending for admission).
- work: nothing changed, and the environment is not settled and not waiting for the scheduling pass,
  and not a settled running one: a phase to move (provisioning, stopping, a start, a delete, …); due
  at `next_attempt_at` (NULL: at once).
- resync: a running environment that wants to run at the generation it runs: only the periodic look
  (`resync_seconds`), due at `next_attempt_at`.
"""

from __future__ import annotations

from remotegpu.core.environments.lifecycle import Trigger, sources
from remotegpu.core.environments.states import DesiredState, Phase, sql_list

_RUNNING = DesiredState.RUNNING

_SETTLED = (
    f"phase <> '{Phase.DELETED}'",
    f"NOT (phase = '{Phase.STOPPED}' AND desired_state = '{DesiredState.STOPPED}')",
    # failed stays failed for its generation unless deleted
    f"NOT (phase = '{Phase.FAILED}' AND desired_state <> '{DesiredState.DELETED}'"
    " AND generation = observed_generation)",
    # pending environments that want to run are the scheduling pass's, which admits them in bulk
    f"NOT (phase IN ({sql_list(sources(Trigger.ADMIT))}) AND desired_state = '{_RUNNING}')",
)
"""Clauses each true unless no step has anything to do whatever the time (a user's change aside)."""

_WAITING = (
    # admitted ones that want to run wait for the scheduling pass, which places them in bulk
    f"NOT (phase IN ({sql_list(sources(Trigger.SCHEDULE))}) AND desired_state = '{_RUNNING}'"
    " AND generation = observed_generation)",
)

_SETTLED_RUNNING = (
    f"phase = '{Phase.RUNNING}'",
    f"desired_state = '{_RUNNING}'",
    "generation = observed_generation",
)

CHANGED = " AND ".join(("desired_version <> seen_desired_version", *_SETTLED))
"""Due at once: the user changed the desired side of an environment that is not settled for good."""

WORK = " AND ".join(
    (
        "desired_version = seen_desired_version",
        *_SETTLED,
        *_WAITING,
        "NOT (" + " AND ".join(_SETTLED_RUNNING) + ")",
    )
)
"""Due by time, with a phase to move."""

RESYNC = " AND ".join(("desired_version = seen_desired_version", *_SETTLED_RUNNING))
"""Due by time, settled and running: the periodic look only."""

DUE_AT = "coalesce(next_attempt_at, '-infinity')"
"""The key each class's index is ordered by: `next_attempt_at`, NULL (never attempted) first."""
