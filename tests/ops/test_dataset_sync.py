"""`remotegpu dataset-sync` run for real against an S3-compatible server (moto's, on loopback): bytes
copied and verified, a second run skipping what is there, a checksum mismatch refused; and the simulated
cluster running a sync Job with it to completion, into the folder standing in for the Job's volume."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotegpu.core.cluster.driver import DatasetSyncJob, SyncObservation, SyncState
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.cluster.kubernetes.dataset_sync import sync_observation
from remotegpu.core.datasets.s3 import S3Connection
from remotegpu.core.datasets.s3_urls import S3Location
from remotegpu.core.datasets.storage import StorageRefusedError
from remotegpu.core.datasets.sync import SyncError, sync_prefix
from remotegpu.ops.simcluster.cluster import NodeTemplate, SimulatedCluster
from remotegpu.ops.simcluster.store import BY_PATH
from remotegpu.tests.ops.processes import EXECUTABLE, command_env
from remotegpu.tests.polling import poll_until
from remotegpu.tests.s3_world import BUCKET, moto_server, put_objects

KiB = 1 << 10


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Connection]:
    with moto_server() as connection:
        yield connection


def _aws(connection: S3Connection) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": connection.access_key_id,
        "AWS_SECRET_ACCESS_KEY": connection.secret_access_key,
        "AWS_DEFAULT_REGION": connection.region,
        "AWS_ENDPOINT_URL": str(connection.endpoint_url),
    }


def _sync(connection: S3Connection, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTABLE, "dataset-sync", *args],
        env=command_env(**_aws(connection)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_sync_command_copies_a_prefix_with_checksums_and_skips_what_it_holds(
    s3: S3Connection, tmp_path: Path
) -> None:
    prefix = f"sync-{uuid.uuid4().hex[:6]}"
    objects = {
        f"{prefix}/train/a.bin": os.urandom(300 * KiB),
        f"{prefix}/train/b/c.bin": os.urandom(7),
        f"{prefix}/x": b"",
    }
    put_objects(s3, objects)
    first = _sync(s3, "--source", f"s3://{BUCKET}/{prefix}/", "--dest", str(tmp_path / "out"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout.splitlines()[-1]) == {
        "source": f"s3://{BUCKET}/{prefix}/",
        "files": 3,
        "bytes": 300 * KiB + 7,
        "skipped": 0,
    }
    for key, data in objects.items():
        assert (tmp_path / "out" / key.removeprefix(f"{prefix}/")).read_bytes() == data
    # a Job retried after a crash: what arrived intact is skipped (the copy itself, in this process)
    again = sync_prefix(s3.client(), S3Location(BUCKET, f"{prefix}/"), tmp_path / "out")
    assert (again.files, again.skipped) == (0, 3)


def test_the_sync_refuses_content_that_does_not_match_the_declared_checksum_and_keys_outside(
    s3: S3Connection, tmp_path: Path
) -> None:
    put_objects(s3, {"one/file.bin": b"the real content"})
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(SyncError) as refused:
        sync_prefix(s3.client(), S3Location(BUCKET, "one/"), tmp_path, wrong)
    assert "its SHA-256 is sha256:" in str(refused.value)
    assert f"not the declared {wrong}" in str(refused.value)
    assert not (tmp_path / "file.bin").exists()
    with pytest.raises(StorageRefusedError, match="bucket 'no-such-bucket' does not exist"):
        sync_prefix(s3.client(), S3Location("no-such-bucket", "x/"), tmp_path)
    put_objects(s3, {"escape/../outside": b"x"})
    with pytest.raises(SyncError, match="cannot be a file inside"):
        sync_prefix(s3.client(), S3Location(BUCKET, "escape/"), tmp_path / "inside")


def test_the_simulated_cluster_runs_a_sync_job_whose_failure_says_why_and_goes_with_its_environment(
    s3: S3Connection, tmp_path: Path
) -> None:
    """The success path, bytes in the volume, runs end to end in `tests/ops/test_dev_datasets.py`."""
    data = os.urandom(64 * KiB)
    dataset = uuid.uuid4()
    put_objects(s3, {f"datasets/{dataset}/weights.bin": data})
    environment, workspace = uuid.uuid4(), uuid.uuid4()
    volumes = tmp_path / "volumes"
    with SimulatedCluster(
        NodeTemplate(count=1), start_delay=dt.timedelta(milliseconds=50), volumes=volumes
    ) as sim:
        driver = KubernetesCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        driver.ensure_environment_secret(environment, workspace, "dataset-s3", _aws(s3))
        job = DatasetSyncJob(
            environment_id=environment,
            workspace_id=workspace,
            dataset_id=dataset,
            source=f"s3://{BUCKET}/datasets/{dataset}/",
            size_bytes=len(data),
            image="ghcr.io/remotegpu/remotegpu:0.1.0",
            credentials_secret=f"env-{environment}-dataset-s3",
            checksum="sha256:" + "0" * 64,  # not what is there
        )
        failed = poll_until(
            lambda: driver.ensure_dataset_sync(job),
            60,
            "the Job to finish",
            until=lambda o: o.state is not SyncState.RUNNING,
        )
        assert failed.state is SyncState.FAILED
        assert "not the declared sha256:000" in failed.message
        stored = sim.store.get(BY_PATH[("batch", "v1", "jobs")], "default", job.name)
        assert stored["status"]["failed"] == 1
        assert sim.store.get(BY_PATH[("", "v1", "persistentvolumeclaims")], "default", job.name)
        assert not (volumes / "default" / job.name / "weights.bin").exists()

        assert driver.delete_workload(environment, keep_volumes=False)
        jobs, _ = sim.store.list(BY_PATH[("batch", "v1", "jobs")], None, lambda _o: True)
        claims, _ = sim.store.list(BY_PATH[("", "v1", "persistentvolumeclaims")], None, lambda _o: True)
        assert (jobs, claims) == ([], [])


def test_a_job_s_conditions_say_whether_it_runs_succeeded_or_failed() -> None:
    assert sync_observation(None).state is SyncState.RUNNING
    assert sync_observation({"status": {"active": 1}}).state is SyncState.RUNNING
    done = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert sync_observation(done).state is SyncState.SUCCEEDED
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}}
    assert sync_observation(failed) == SyncObservation(SyncState.FAILED, "DeadlineExceeded: the sync failed")
