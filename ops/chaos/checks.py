"""What must hold after a chaos run, read from the database and the cluster once the faults stop."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from remotegpu.core.billing.audit import audit_billing
from remotegpu.core.capacity.audit import audit
from remotegpu.core.capacity.queue_places import PLACE_JOIN
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.platform.fencing_audit import late_writes
from remotegpu.ops.bench.reconcile import cluster_object_violations

UNSETTLED_SQL = text(
    f"""
    SELECT e.name, CAST(e.desired_state AS text) AS desired, CAST(e.phase AS text) AS phase, e.reason
      FROM environments e {PLACE_JOIN}
     WHERE NOT (
           (e.desired_state = 'deleted' AND e.phase = 'deleted')
        OR (e.desired_state = 'stopped' AND e.phase IN ('stopped', 'failed'))
        OR (e.desired_state = 'running' AND e.phase = 'failed' AND e.reason IS NOT NULL)
        OR (e.desired_state = 'running' AND e.phase = 'running' AND e.observed_generation = e.generation)
        OR (e.desired_state = 'running' AND e.phase IN ('pending', 'admitted') AND qp.reason IS NOT NULL))
     ORDER BY e.name
    """
)
"""Environments not at their desired state: neither there, nor failed with a reason, nor waiting in the
capacity queue with a reason (a wait for GPUs is settled, not stuck)."""


def unsettled(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [
            f"{row.name}: desired {row.desired}, still {row.phase} ({row.reason or 'no reason'})"
            for row in connection.execute(UNSETTLED_SQL)
        ]


def wait_converged(engine: Engine, timeout_s: float) -> tuple[float, list[str]]:
    """Seconds until every environment settled (or the timeout), and what had not by then."""
    started = time.monotonic()
    left: list[str] = []
    while time.monotonic() - started < timeout_s:
        try:
            left = unsettled(engine)
        except Exception as error:  # the database may still be coming back
            left = [f"database: {type(error).__name__}"]
        if not left:
            break
        time.sleep(0.5)
    return round(time.monotonic() - started, 1), left


def invariant_violations(engine: Engine, kubeconfig: str) -> list[str]:
    """Claims (history and counters), billing (tiling, prices, amounts), fenced writes (no write of a
    replaced leader after its successor began) and the cluster's objects."""
    with engine.connect() as connection:
        found = [f"claims: {finding}" for finding in audit(connection)]
        found += [f"billing: {finding}" for finding in audit_billing(connection, "month", "USD")]
        found += [f"fencing: {finding}" for finding in late_writes(connection)]
    cluster = KubernetesCluster.from_kubeconfig(kubeconfig)
    found += [f"cluster: {finding}" for finding in cluster_object_violations(engine, cluster)]
    return found
