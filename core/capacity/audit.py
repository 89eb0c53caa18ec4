"""Checking the allocation invariants over the claim history and the live counters.

`history_violations` replays the append-only `claim_history` together with the quota, cordon and GPU
health events in time order and reports every moment an invariant broke:

- a GPU, or a (host, host port, protocol), held by two environments at once;
- a claim that took a workspace or user above a GPU limit (total or per model) in force at the time;
- a claim on a GPU that was unhealthy, or on a host that was cordoned or draining, at the time.

Timestamps are `clock_timestamp()` values written under the advisory locks, so for two conflicting
transactions the later one's rows always carry later times. `counter_violations` checks that every
maintained counter (GPU pools, host and quota usage) equals what the active claims say (storage: what
the environments' volumes hold, from their first placement until their delete), and that no
active claim belongs to a deleted environment (nor to a deleted workspace's environment that is not
being deleted). Used by the property tests and the benchmark.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from remotegpu.core.environments.states import DesiredState


@dataclass(frozen=True)
class HistoryRow:
    """One row of `claim_history`."""

    seq: int
    at: dt.datetime
    txid: int
    kind: str
    action: str
    environment_id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    host_id: uuid.UUID
    gpu_id: uuid.UUID | None
    gpu_model: str | None
    host_port: int | None
    protocol: str | None


@dataclass(frozen=True)
class AuditEvent:
    """A quota, cordon or GPU-health event that changes what a claim may do."""

    at: dt.datetime
    reason: str
    host_id: uuid.UUID | None
    data: dict[str, Any]


@dataclass
class _Limits:
    max_gpus: int | None = None
    by_model: dict[str, int | None] = field(default_factory=dict)


def load_history(connection: Connection) -> list[HistoryRow]:
    """Every claim-history row in time order."""
    rows = connection.execute(
        text(
            "SELECT seq, at, txid, kind, action, environment_id, workspace_id, user_id, host_id, gpu_id,"
            " gpu_model, host_port, protocol FROM claim_history ORDER BY at, seq"
        )
    )
    return [HistoryRow(**row._mapping) for row in rows]


def load_audit_events(connection: Connection) -> list[AuditEvent]:
    """Quota, cordon/drain and GPU-health events in time order."""
    rows = connection.execute(
        text(
            "SELECT created_at, reason, host_id, data FROM events WHERE kind IN ('quota', 'host')"
            " ORDER BY created_at, seq"
        )
    )
    return [AuditEvent(row.created_at, row.reason, row.host_id, row.data) for row in rows]


def history_violations(rows: Sequence[HistoryRow], events: Sequence[AuditEvent] = ()) -> list[str]:
    """Every invariant the history breaks, in words; empty when it is clean."""
    problems: list[str] = []
    gpu_holder: dict[uuid.UUID, uuid.UUID] = {}
    port_holder: dict[tuple[uuid.UUID, int, str], uuid.UUID] = {}
    limits: dict[tuple[str, str], _Limits] = defaultdict(_Limits)
    used: dict[tuple[str, str], int] = defaultdict(int)
    used_model: dict[tuple[str, str, str], int] = defaultdict(int)
    cordoned: set[uuid.UUID] = set()
    unhealthy: set[str] = set()

    for group in _timeline(rows, events):
        if isinstance(group, AuditEvent):
            _apply_event(group, limits, cordoned, unhealthy)
            continue
        for row in group:
            if row.kind == "gpu":
                problems += _replay_gpu(row, gpu_holder, cordoned, unhealthy)
            else:
                problems += _replay_port(row, port_holder)
        problems += _replay_quota(group, limits, used, used_model)
    return problems


def _timeline(
    rows: Sequence[HistoryRow], events: Sequence[AuditEvent]
) -> Iterable[AuditEvent | list[HistoryRow]]:
    """Events and history rows merged in time order; the rows one transaction wrote for one environment
    stay together.

    Not a whole transaction's rows: a scheduling batch writes its planned claims in one statement and
    then, for a plan that no longer held, claims one by one on other hosts, possibly one whose lock it
    only got after another transaction's release there committed; dated by its first row, the batch's
    group would put that claim before the release it followed.
    """
    groups: list[list[HistoryRow]] = []
    index: dict[tuple[int, str, uuid.UUID], list[HistoryRow]] = {}
    for row in rows:
        key = (row.txid, row.action, row.environment_id)
        if key not in index:
            index[key] = []
            groups.append(index[key])
        index[key].append(row)
    merged: list[tuple[dt.datetime, int, AuditEvent | list[HistoryRow]]] = [
        (event.at, 0, event) for event in events
    ]
    merged += [(group[0].at, 1, group) for group in groups]
    merged.sort(key=lambda item: (item[0], item[1]))
    return [item[2] for item in merged]


def _apply_event(
    event: AuditEvent,
    limits: dict[tuple[str, str], _Limits],
    cordoned: set[uuid.UUID],
    unhealthy: set[str],
) -> None:
    if event.reason == "QuotaChanged":
        key = (event.data["subject"], event.data["subject_id"])
        limits[key] = _Limits(event.data.get("max_gpus"), dict(event.data.get("max_gpus_by_model") or {}))
    elif event.reason in {"Cordoned", "Drained"} and event.host_id is not None:
        cordoned.add(event.host_id)
    elif event.reason == "Uncordoned" and event.host_id is not None:
        cordoned.discard(event.host_id)
    elif event.reason in {"GpuUnhealthy", "GpuLost"}:
        unhealthy.add(event.data["gpu"])
    elif event.reason in {"GpuHealthy", "GpuFound"}:
        unhealthy.discard(event.data["gpu"])


def _replay_gpu(
    row: HistoryRow, holder: dict[uuid.UUID, uuid.UUID], cordoned: set[uuid.UUID], unhealthy: set[str]
) -> list[str]:
    assert row.gpu_id is not None
    problems = []
    current = holder.get(row.gpu_id)
    if row.action == "claim":
        if current is not None and current != row.environment_id:
            problems.append(
                f"GPU {row.gpu_id} claimed by {row.environment_id} while held by {current} (at {row.at})"
            )
        if row.host_id in cordoned:
            problems.append(f"GPU {row.gpu_id} claimed on cordoned host {row.host_id} (at {row.at})")
        if str(row.gpu_id) in unhealthy:
            problems.append(f"unhealthy GPU {row.gpu_id} claimed by {row.environment_id} (at {row.at})")
        holder[row.gpu_id] = row.environment_id
    else:
        if current != row.environment_id:
            problems.append(f"GPU {row.gpu_id} released by {row.environment_id} but held by {current}")
        holder.pop(row.gpu_id, None)
    return problems


def _replay_port(row: HistoryRow, holder: dict[tuple[uuid.UUID, int, str], uuid.UUID]) -> list[str]:
    assert row.host_port is not None
    assert row.protocol is not None
    key = (row.host_id, row.host_port, row.protocol)
    current = holder.get(key)
    if row.action == "claim":
        holder[key] = row.environment_id
        if current is not None and current != row.environment_id:
            return [f"host port {key} claimed by {row.environment_id} while held by {current} (at {row.at})"]
        return []
    holder.pop(key, None)
    if current != row.environment_id:
        return [f"host port {key} released by {row.environment_id} but held by {current}"]
    return []


def _replay_quota(
    group: list[HistoryRow],
    limits: dict[tuple[str, str], _Limits],
    used: dict[tuple[str, str], int],
    used_model: dict[tuple[str, str, str], int],
) -> list[str]:
    gpu_rows = [row for row in group if row.kind == "gpu"]
    if not gpu_rows:
        return []
    sign = 1 if gpu_rows[0].action == "claim" else -1
    problems = []
    touched: set[tuple[str, str]] = set()
    for row in gpu_rows:
        assert row.gpu_model is not None
        for subject in (("workspace", str(row.workspace_id)), ("user", str(row.user_id))):
            used[subject] += sign
            used_model[(*subject, row.gpu_model)] += sign
            touched.add(subject)
    if sign < 0:
        return []
    model = gpu_rows[0].gpu_model
    assert model is not None
    for subject in sorted(touched):
        limit = limits[subject]
        if limit.max_gpus is not None and used[subject] > limit.max_gpus:
            problems.append(
                f"{subject[0]} {subject[1]} at {used[subject]} GPUs over its limit {limit.max_gpus} (at {group[0].at})"
            )
        model_limit = limit.by_model.get(model)
        if model_limit is not None and used_model[(*subject, model)] > model_limit:
            problems.append(
                f"{subject[0]} {subject[1]} at {used_model[(*subject, model)]} {model} GPUs over its limit"
                f" {model_limit} (at {group[0].at})"
            )
    return problems


_COUNTER_CHECKS: dict[str, str] = {
    "GPU pool counters differ from the GPUs": """
        SELECT p.host_id, p.model, p.total, p.free, count(g.id) AS real_total,
               count(g.id) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM gpu_claims c WHERE c.gpu_id = g.id AND c.released_at IS NULL)) AS real_free
          FROM gpu_pools p
          LEFT JOIN gpus g ON g.host_id = p.host_id AND g.model = p.model
                          AND g.health = 'healthy' AND NOT g.foreign_use
         GROUP BY p.id
        HAVING p.total <> count(g.id) OR p.free <> count(g.id) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM gpu_claims c WHERE c.gpu_id = g.id AND c.released_at IS NULL))
    """,
    "host counters differ from the active claims": """
        SELECT h.id, h.gpus_claimed, h.cpu_millis_claimed, h.memory_bytes_claimed, h.ports_claimed
          FROM hosts h
         WHERE h.gpus_claimed <> (SELECT count(*) FROM gpu_claims c WHERE c.host_id = h.id AND c.released_at IS NULL)
            OR h.cpu_millis_claimed <> (SELECT coalesce(sum(cpu_millis), 0) FROM allocations a
                                         WHERE a.host_id = h.id AND a.released_at IS NULL)
            OR h.memory_bytes_claimed <> (SELECT coalesce(sum(memory_bytes), 0) FROM allocations a
                                           WHERE a.host_id = h.id AND a.released_at IS NULL)
            OR h.ports_claimed <> (SELECT count(*) FROM port_mappings m
                                    WHERE m.host_id = h.id AND m.released_at IS NULL)
    """,
    "quota usage differs from the active allocations": """
        SELECT q.id, q.workspace_id, q.user_id, q.used_gpus, x.gpus, q.running_environments, x.running
          FROM resource_quotas q
          LEFT JOIN LATERAL (
              SELECT coalesce(sum(a.gpu_count), 0) AS gpus, coalesce(sum(a.cpu_millis), 0) AS cpu,
                     coalesce(sum(a.memory_bytes), 0) AS mem, count(a.id) AS running
                FROM allocations a
               WHERE a.released_at IS NULL AND (a.workspace_id = q.workspace_id OR a.user_id = q.user_id)
          ) x ON true
         WHERE q.used_gpus <> x.gpus OR q.used_cpu_millis <> x.cpu OR q.used_memory_bytes <> x.mem
            OR q.running_environments <> x.running
    """,
    # Volumes outlive a stop: storage is counted per environment until its delete, not per allocation.
    "storage quota usage differs from what the environments' volumes hold": """
        SELECT q.id, q.workspace_id, q.user_id, q.used_storage_bytes, x.held
          FROM resource_quotas q
          LEFT JOIN LATERAL (
              SELECT coalesce(sum(e.storage_bytes_held), 0) AS held FROM environments e
               WHERE e.workspace_id = q.workspace_id OR e.user_id = q.user_id
          ) x ON true
         WHERE q.used_storage_bytes <> x.held
    """,
    "storage held by a deleted environment": """
        SELECT e.id, e.storage_bytes_held FROM environments e
         WHERE e.deleted_at IS NOT NULL AND e.storage_bytes_held <> 0
    """,
    "per-model quota usage differs from the active allocations": """
        SELECT m.quota_id, m.gpu_model, m.used_gpus
          FROM gpu_model_quotas m JOIN resource_quotas q ON q.id = m.quota_id
         WHERE m.used_gpus <> (SELECT coalesce(sum(a.gpu_count), 0) FROM allocations a
                                WHERE a.released_at IS NULL AND a.gpu_model = m.gpu_model
                                  AND (a.workspace_id = q.workspace_id OR a.user_id = q.user_id))
    """,
    "allocation GPU count differs from its active GPU claims": """
        SELECT a.id, a.gpu_count, count(c.id)
          FROM allocations a
          LEFT JOIN gpu_claims c ON c.environment_id = a.environment_id AND c.released_at IS NULL
         WHERE a.released_at IS NULL
         GROUP BY a.id HAVING a.gpu_count <> count(c.id)
    """,
    "claim without an active allocation": """
        SELECT c.id FROM gpu_claims c
         WHERE c.released_at IS NULL AND NOT EXISTS (
               SELECT 1 FROM allocations a WHERE a.environment_id = c.environment_id
                AND a.released_at IS NULL AND a.host_id = c.host_id)
        UNION ALL
        SELECT m.id FROM port_mappings m
         WHERE m.released_at IS NULL AND NOT EXISTS (
               SELECT 1 FROM allocations a WHERE a.environment_id = m.environment_id
                AND a.released_at IS NULL AND a.host_id = m.host_id)
    """,
    # A deleted workspace's environments keep their claims until the reconciler has deleted their pods,
    # but each of them must be on its way out.
    "active claim of a deleted environment, or of a deleted workspace's environment not being deleted": f"""
        SELECT a.id FROM allocations a
          JOIN environments e ON e.id = a.environment_id JOIN workspaces w ON w.id = e.workspace_id
         WHERE a.released_at IS NULL
           AND (e.deleted_at IS NOT NULL OR (w.deleted_at IS NOT NULL AND e.desired_state <> '{DesiredState.DELETED}'))
    """,
    "GPU claim of another model than its allocation": """
        SELECT c.id FROM gpu_claims c JOIN gpus g ON g.id = c.gpu_id
          JOIN allocations a ON a.environment_id = c.environment_id AND a.released_at IS NULL
         WHERE c.released_at IS NULL AND g.model IS DISTINCT FROM a.gpu_model
    """,
}


def counter_violations(connection: Connection) -> list[str]:
    """Every maintained counter or claim link that disagrees with the claims; empty when consistent."""
    problems = []
    for name, sql in _COUNTER_CHECKS.items():
        rows = connection.execute(text(sql)).all()
        if rows:
            problems.append(f"{name}: {[tuple(row) for row in rows[:5]]}")
    return problems


def audit(connection: Connection) -> list[str]:
    """History and counter violations together."""
    return history_violations(load_history(connection), load_audit_events(connection)) + counter_violations(
        connection
    )
