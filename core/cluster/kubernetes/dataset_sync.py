"""Dataset sync Jobs on Kubernetes: the claim and the Job, created by name, and the Job's status read
as the reconciler needs it (running, succeeded, or failed with the reason its pods gave)."""

from __future__ import annotations

from typing import Any

from remotegpu.core.cluster.driver import DatasetSyncJob, SyncObservation, SyncState
from remotegpu.core.cluster.kubernetes.client import (
    as_json,
    bound,
    call_api,
    create_or_get,
    delete_if_present,
    read_or_none,
)
from remotegpu.core.cluster.manifests import (
    ENVIRONMENT_LABEL,
    MANAGED_LABEL,
    MANAGER,
    dataset_claim_manifest,
    dataset_sync_job_manifest,
)


def ensure_sync(
    core: Any, batch: Any, namespace: str, job: DatasetSyncJob, storage_class: str | None
) -> SyncObservation:
    """Create the claim and the Job unless they exist; the Job's state now."""
    create_or_get(
        namespace, core.create_namespaced_persistent_volume_claim, dataset_claim_manifest(job, storage_class)
    )
    create_or_get(namespace, batch.create_namespaced_job, dataset_sync_job_manifest(job))
    found = read_or_none(lambda: batch.read_namespaced_job(job.name, namespace, _preload_content=False))
    return sync_observation(found)


def sync_observation(job: dict[str, Any] | None) -> SyncObservation:
    """A Job's `Complete` or `Failed` condition; anything else (none yet, or gone) is still running."""
    for condition in (job or {}).get("status", {}).get("conditions", []) or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return SyncObservation(SyncState.SUCCEEDED)
        if condition.get("type") == "Failed":
            reason = condition.get("reason") or "Failed"
            return SyncObservation(
                SyncState.FAILED, f"{reason}: {condition.get('message') or 'the sync failed'}"
            )
    return SyncObservation(SyncState.RUNNING)


def delete_syncs(batch: Any, namespace: str, environment_id: str) -> bool:
    """Delete the environment's sync Jobs and their pods; True when one went."""
    selector = f"{MANAGED_LABEL}={MANAGER},{ENVIRONMENT_LABEL}={environment_id}"
    listed = as_json(
        call_api(
            lambda: batch.list_namespaced_job(namespace, label_selector=selector, _preload_content=False)
        )
    )
    removed = False
    for item in listed.get("items", []):
        name = item["metadata"]["name"]
        removed |= delete_if_present(
            bound(batch.delete_namespaced_job, name, namespace, propagation_policy="Background")
        )
    return removed
