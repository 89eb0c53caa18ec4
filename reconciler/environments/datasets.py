"""The datasets step: before an environment's pod is created, every dataset it mounts must be ready and,
when its bytes are in S3, synced into a volume of the environment by a Job.

Runs in `process` (no session open), after the image is pinned. The Jobs and their claims have
deterministic names (`env-<id>-ds-<dataset>`), so each pass creates what is missing and reads what
exists; a Job that already succeeded costs a read, nothing more. The S3 connection reaches the Job as
an environment Secret (`env-<id>-dataset-s3`, from the secrets store; never in the Job's spec). A
dataset still uploading is a retry (the phase deadline applies); a failed one, a vanished one or a
failed sync fails the environment with the reason.
"""

from __future__ import annotations

import datetime as dt

from remotegpu.core.cluster.driver import DatasetMount, DatasetSyncer, DatasetSyncJob, SyncState
from remotegpu.core.datasets.attach import DatasetRef, dataset_mounts, s3_source_of
from remotegpu.core.datasets.s3 import S3Connection
from remotegpu.core.datasets.states import DatasetStatus, StorageKind
from remotegpu.core.secrets.store import SecretNotFoundError, SecretsUnavailableError
from remotegpu.reconciler.context import ReconcilerContext
from remotegpu.reconciler.environments.leases import EnvironmentState
from remotegpu.reconciler.environments.results import StepResult, fail, requeue, retry

SYNC_RECHECK = dt.timedelta(seconds=1)
S3_SECRET_SUFFIX = "dataset-s3"  # noqa: S105 - a name suffix, not a secret


def prepare_datasets(ctx: ReconcilerContext, env: EnvironmentState) -> StepResult | None:
    """None when every dataset can be mounted now; else what to do (wait, retry, fail)."""
    if not env.spec.datasets:
        return None
    by_name = {ref.name: ref for ref in env.datasets}
    synced: list[DatasetRef] = []
    for wanted in env.spec.datasets:
        ref = by_name.get(wanted.name)
        if ref is None:
            return fail("DatasetMissing", f"dataset {wanted.name!r} no longer exists in the workspace")
        if ref.status == DatasetStatus.FAILED.value:
            return fail("DatasetFailed", f"dataset {ref.name!r} failed: {ref.reason}")
        if ref.status != DatasetStatus.READY.value:
            return retry("DatasetNotReady", f"dataset {ref.name!r} is still {ref.status}")
        if ref.synced:
            synced.append(ref)
    if not synced:
        return None
    return _sync(ctx, env, synced)


def _sync(ctx: ReconcilerContext, env: EnvironmentState, refs: list[DatasetRef]) -> StepResult | None:
    if not isinstance(ctx.cluster, DatasetSyncer):
        return fail("DatasetSyncUnsupported", "this cluster driver cannot run dataset sync Jobs")
    connection = _s3_connection(ctx)
    ctx.cluster.ensure_environment_secret(
        env.id, env.workspace_id, S3_SECRET_SUFFIX, _job_environment(connection)
    )
    running = []
    for ref in refs:
        job = DatasetSyncJob(
            environment_id=env.id,
            workspace_id=env.workspace_id,
            dataset_id=ref.id,
            source=s3_source_of(ref, connection.bucket),
            size_bytes=ref.size_bytes,
            image=ctx.settings.dataset_sync_image,
            credentials_secret=f"env-{env.id}-{S3_SECRET_SUFFIX}",
            checksum=ref.checksum if ref.storage is StorageKind.S3 else None,
        )
        observed = ctx.cluster.ensure_dataset_sync(job)
        if observed.state is SyncState.FAILED:
            return fail("DatasetSyncFailed", f"syncing dataset {ref.name!r} failed: {observed.message}")
        if observed.state is SyncState.RUNNING:
            running.append(ref.name)
    return requeue(SYNC_RECHECK) if running else None


def _s3_connection(ctx: ReconcilerContext) -> S3Connection:
    if ctx.secrets is None:
        raise SecretsUnavailableError(
            "S3 datasets need the secrets store: set secrets_key (or secrets_backend = vault)"
        )
    try:
        return S3Connection.from_secret(ctx.secrets)
    except SecretNotFoundError:
        raise SecretsUnavailableError(
            "S3 datasets need the platform secret dataset-s3: set it with `remotegpu datasets-s3 set`"
        ) from None


def _job_environment(connection: S3Connection) -> dict[str, str]:
    """The S3 connection as the variables boto3 reads (`remotegpu dataset-sync` uses boto3)."""
    variables = {
        "AWS_ACCESS_KEY_ID": connection.access_key_id,
        "AWS_SECRET_ACCESS_KEY": connection.secret_access_key,
        "AWS_DEFAULT_REGION": connection.region,
    }
    if connection.endpoint_url:
        variables["AWS_ENDPOINT_URL"] = connection.endpoint_url
    return variables


def mounts_of(ctx: ReconcilerContext, env: EnvironmentState) -> tuple[DatasetMount, ...]:
    """Where the environment's datasets are mounted from."""
    return dataset_mounts(env.id, env.spec.datasets, env.datasets, ctx.settings.dataset_volume_claim)
