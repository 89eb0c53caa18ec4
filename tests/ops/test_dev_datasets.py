"""`remotegpu dev --s3 moto`, end to end: a file uploaded with the CLI (interrupted, then resumed) goes to
moto's S3 server on loopback, an environment mounts it read-only, the simulated cluster runs the sync Job
for real (the bytes land in the folder standing in for the Job's volume), and the Job and the claim are
there for kubectl; the dataset cannot be deleted while the environment uses it."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import httpx
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from remotegpu.core.platform.settings import Settings
from remotegpu.ops.bootstrap import DEV_ADMIN_EMAIL
from remotegpu.ops.cli.app import app
from remotegpu.ops.devstack import running_dev_stack
from remotegpu.ops.simcluster.store import BY_PATH
from remotegpu.tests.ops.test_dev_gateways import _free_port, fresh_database
from remotegpu.tests.polling import poll_until

__all__ = ["fresh_database"]
MiB = 1 << 20


def test_dev_s3_upload_is_synced_by_a_job_and_mounted_read_only(fresh_database: URL, tmp_path: Path) -> None:
    settings = Settings(
        database_url=fresh_database.render_as_string(hide_password=False),
        data_dir=tmp_path / ".remotegpu",
        api_port=_free_port(),
        dataset_chunk_bytes=MiB,
    )
    data = os.urandom(6 * MiB)  # two parts of the 5 MiB S3 minimum
    path = tmp_path / "shard.bin"
    path.write_bytes(data)
    checksum = f"sha256:{hashlib.sha256(data).hexdigest()}"
    with running_dev_stack(settings, "direct", "none", "moto") as stack:
        assert dict(stack.describe())["Datasets"].startswith("moto's S3 server at http://127.0.0.1:")
        assert stack.admin_password_file is not None
        password = stack.admin_password_file.read_text().strip()
        with httpx.Client(base_url=f"{stack.api_url}/api/v1", timeout=60) as api:
            token = api.post("/auth/login", json={"email": DEV_ADMIN_EMAIL, "password": password}).json()
            api.headers["Authorization"] = f"Bearer {token['access_token']}"
            assert api.post("/workspaces", json={"name": "vision"}).status_code == 201
            # an interrupted upload: created, its first part sent, then the client went away
            made = api.post(
                "/datasets",
                json={
                    "name": "shard",
                    "workspace": "vision",
                    "size_bytes": len(data),
                    "checksum": checksum,
                    "file_name": "shard.bin",
                },
            ).json()
            url = api.post(f"/datasets/{made['id']}/parts", json={"parts": [1]}).json()["urls"]["1"]
            assert httpx.put(url, content=data[: 5 * MiB]).status_code == 200
            cli_token = api.post("/auth/tokens", json={"name": "cli"}).json()["token"]
            env = {k: None for k in os.environ if k.startswith("REMOTEGPU_")} | {
                "REMOTEGPU_SERVER_URL": stack.api_url,
                "REMOTEGPU_TOKEN": cli_token,
                "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            }
            resumed = CliRunner().invoke(
                app, ["datasets", "create", "shard", "--file", str(path), "-w", "vision"], env=env
            )
            assert resumed.exit_code == 0, resumed.output
            assert "resuming its upload" in resumed.output
            assert "dataset/shard ready" in resumed.output

            spec = {
                "kind": "environment",
                "name": "reader",
                "workspace": "vision",
                "image": "pytorch:24.05",
                "resources": {"gpus": 1, "cpu": 2, "memory": "8Gi"},
                "datasets": [{"name": "shard", "mount": "/data/shard"}],
            }
            applied = api.post("/environments/apply", json=spec)
            assert applied.status_code < 300, applied.text
            environment = applied.json()["environment"]["id"]
            poll_until(
                lambda: api.get(f"/environments/{environment}").json(),
                timeout_s=90,
                what="the environment to run",
                until=lambda e: e["phase"] in {"running", "failed"},
            )
            shown = api.get(f"/environments/{environment}").json()
            assert shown["phase"] == "running", shown
            claim = f"env-{environment}-ds-{uuid.UUID(made['id']).hex[:8]}"
            synced = tmp_path / ".remotegpu" / "simcluster-volumes" / "default" / claim / "shard.bin"
            assert synced.read_bytes() == data
            sim = stack.simulated_cluster
            assert sim is not None
            job = sim.store.get(BY_PATH[("batch", "v1", "jobs")], "default", claim)
            assert job["status"]["succeeded"] == 1
            assert sim.store.get(BY_PATH[("", "v1", "persistentvolumeclaims")], "default", claim)
            pod = sim.store.get(BY_PATH[("", "v1", "pods")], "default", f"env-{environment}")
            mount = next(
                m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == "/data/shard"
            )
            assert mount["readOnly"] is True
            refused = api.delete(f"/datasets/{made['id']}")
            assert refused.status_code == 409
            assert "mounted by environment reader" in refused.json()["detail"]
