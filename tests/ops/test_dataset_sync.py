"""`remotegpu dataset-sync` run for real against an S3-compatible server (moto's, on loopback): bytes
copied and verified, a second run skipping what is there, a checksum mismatch refused; and the simulated
cluster running a sync Job with it to completion, into the folder standing in for the Job's volume."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotegpu.core.cluster.driver import DatasetSyncJob, SyncState
from remotegpu.core.cluster.kubernetes.cluster import KubernetesCluster
from remotegpu.core.datasets.s3 import S3Connection
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
    again = _sync(s3, "--source", f"s3://{BUCKET}/{prefix}/", "--dest", str(tmp_path / "out"))
    assert json.loads(again.stdout.splitlines()[-1])["skipped"] == 3


def test_the_sync_command_refuses_content_that_does_not_match_the_declared_checksum(
    s3: S3Connection, tmp_path: Path
) -> None:
    put_objects(s3, {"one/file.bin": b"the real content"})
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    refused = _sync(s3, "--source", f"s3://{BUCKET}/one/", "--dest", str(tmp_path), "--checksum", wrong)
    assert refused.returncode == 1
    message = refused.stderr.strip().splitlines()[-1]
    assert "its SHA-256 is sha256:" in message
    assert f"not the declared {wrong}" in message
    assert not (tmp_path / "file.bin").exists()
    missing = _sync(s3, "--source", "s3://no-such-bucket/x/", "--dest", str(tmp_path))
    assert missing.returncode == 1
    assert "bucket 'no-such-bucket' does not exist" in missing.stderr


def test_the_simulated_cluster_runs_a_sync_job_to_completion_into_its_volume(
    s3: S3Connection, tmp_path: Path
) -> None:
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
            checksum=f"sha256:{hashlib.sha256(data).hexdigest()}",
        )
        done = poll_until(
            lambda: driver.ensure_dataset_sync(job),
            60,
            "the sync Job to finish",
            until=lambda o: o.state is not SyncState.RUNNING,
        )
        assert done.state is SyncState.SUCCEEDED, done.message
        assert (volumes / "default" / job.name / "weights.bin").read_bytes() == data
        stored_job = sim.store.get(BY_PATH[("batch", "v1", "jobs")], "default", job.name)
        assert stored_job["status"]["succeeded"] == 1
        assert sim.store.get(BY_PATH[("", "v1", "persistentvolumeclaims")], "default", job.name)

        corrupt = dataclasses.replace(job, dataset_id=uuid.uuid4(), checksum="sha256:" + "0" * 64)
        failed = poll_until(
            lambda: driver.ensure_dataset_sync(corrupt),
            60,
            "the bad Job to finish",
            until=lambda o: o.state is not SyncState.RUNNING,
        )
        assert failed.state is SyncState.FAILED
        assert "not the declared sha256:000" in failed.message

        assert driver.delete_workload(environment, keep_volumes=False)
        jobs, _ = sim.store.list(BY_PATH[("batch", "v1", "jobs")], None, lambda _o: True)
        claims, _ = sim.store.list(BY_PATH[("", "v1", "persistentvolumeclaims")], None, lambda _o: True)
        assert (jobs, claims) == ([], [])
