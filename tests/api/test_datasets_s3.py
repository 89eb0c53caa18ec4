"""Datasets on S3, against a real S3-compatible server (moto's, on loopback): presigned multipart
uploads sent by the CLI in parallel, resumed from the parts S3 holds, verified by checksum; S3-sourced
datasets listed at creation; and the answers to a URL that does not parse, a bucket that does not
exist and credentials S3 refuses."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from typer.testing import CliRunner

from remotegpu.api.app import create_app
from remotegpu.core.cluster.memory import InMemoryCluster
from remotegpu.core.datasets.s3 import S3_SECRET, S3Connection
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.builtin import EncryptedSecretStore, SecretKeys
from remotegpu.ops.api_server import running_api
from remotegpu.ops.cli.app import app
from remotegpu.reconciler.loop import Reconciler
from remotegpu.tests.api.conftest import JWT_SECRET, SECRETS_KEY, Caller, spec
from remotegpu.tests.api.test_cli_commands import InProcess, _refused, _token
from remotegpu.tests.api.test_cli_commands import invoke as cli_in_process
from remotegpu.tests.s3_world import BUCKET, moto_server, object_bytes, put_objects

MiB = 1 << 20
invoke = cli_in_process
"""The CLI run in this process, as in the CLI tests."""


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Connection]:
    with moto_server() as connection:
        yield connection


@pytest.fixture(scope="module")
def s3_api_url(
    engine: Engine, api_cluster: InMemoryCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An API whose uploads go to S3 (the shared test API keeps the local backend)."""
    settings = Settings(
        jwt_secret=JWT_SECRET,
        secrets_key=SECRETS_KEY,
        dataset_storage="s3",
        dataset_dir=tmp_path_factory.mktemp("unused"),
        dataset_chunk_bytes=MiB,
    )
    with running_api(create_app(settings, engine, logs=api_cluster)) as url:
        yield url


def _store_connection(engine: Engine, connection: S3Connection) -> None:
    EncryptedSecretStore(engine, SecretKeys(SECRETS_KEY)).put(S3_SECRET, connection.to_secret())


@pytest.fixture
def owner(
    new_user: Callable[[str], Caller], engine: Engine, s3: S3Connection, s3_api_url: str
) -> Iterator[Caller]:
    """A workspace owner whose client talks to the S3 API; the platform's S3 connection is stored."""
    _store_connection(engine, s3)
    caller = new_user(f"s3{uuid.uuid4().hex[:8]}")
    assert caller.post("/workspaces", json={"name": f"w-{caller.username}"}).status_code == 201
    with httpx.Client(base_url=f"{s3_api_url}/api/v1", headers=caller.http.headers, timeout=60) as client:
        yield Caller(client, caller.user_id, caller.email, caller.username)


@pytest.fixture
def local_api(owner: Caller, api_url: str) -> Iterator[Caller]:
    """The same owner on the shared test API, whose uploads go to the local backend."""
    with httpx.Client(base_url=f"{api_url}/api/v1", headers=owner.http.headers, timeout=60) as client:
        yield Caller(client, owner.user_id, owner.email, owner.username)


def _ws(caller: Caller) -> str:
    return f"w-{caller.username}"


def _checksum(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _create(caller: Caller, name: str, data: bytes, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "workspace": _ws(caller),
        "size_bytes": len(data),
        "checksum": _checksum(data),
        "file_name": "corpus.bin",
    } | overrides
    answer = caller.http.post("/datasets", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_the_cli_resumes_an_interrupted_multipart_upload_from_the_parts_s3_holds(
    owner: Caller, s3: S3Connection, s3_api_url: str, invoke: InProcess, tmp_path: Path
) -> None:
    data = os.urandom(11 * MiB)  # three parts of 5 MiB, 5 MiB and 1 MiB
    path = tmp_path / "corpus.bin"
    path.write_bytes(data)
    dataset = _create(owner, "corpus", data)
    assert dataset["upload"] == {"storage": "s3", "chunk_bytes": None, "part_bytes": 5 * MiB}
    # an earlier run sent part 2 and was interrupted
    plan = owner.post(f"/datasets/{dataset['id']}/parts", json={"parts": [2]}).json()
    assert list(plan["urls"]) == ["2"]
    assert httpx.put(plan["urls"]["2"], content=data[5 * MiB : 10 * MiB]).status_code == 200
    listed = owner.post(f"/datasets/{dataset['id']}/parts", json={}).json()
    assert [p["number"] for p in listed["uploaded"]] == [2]
    assert sorted(listed["urls"], key=int) == ["1", "3"]
    resumed = invoke(
        "datasets",
        "create",
        "corpus",
        "--file",
        str(path),
        "-w",
        _ws(owner),
        token=_token(owner),
        server=s3_api_url,
    )
    assert resumed.exit_code == 0, resumed.output
    assert "resuming its upload" in resumed.output
    assert "dataset/corpus ready" in resumed.output
    assert object_bytes(s3, f"datasets/{dataset['id']}/corpus.bin") == data
    shown = owner.get(f"/datasets/{dataset['id']}").json()
    assert (shown["status"], shown["checksum"], shown["storage"]) == ("ready", _checksum(data), "s3")


def test_a_resumed_multipart_upload_of_different_content_is_refused(
    owner: Caller, s3_api_url: str, invoke: InProcess, tmp_path: Path
) -> None:
    data = os.urandom(6 * MiB)
    path = tmp_path / "corpus.bin"
    path.write_bytes(data)
    dataset = _create(owner, "mixed", data)
    url = owner.post(f"/datasets/{dataset['id']}/parts", json={"parts": [1]}).json()["urls"]["1"]
    assert httpx.put(url, content=os.urandom(5 * MiB)).status_code == 200  # another file's first part
    refused = invoke(
        "datasets",
        "create",
        "mixed",
        "--file",
        str(path),
        "-w",
        _ws(owner),
        token=_token(owner),
        server=s3_api_url,
    )
    assert "part 1 already uploaded to dataset/mixed differs" in _refused(refused)


def test_a_checksum_mismatch_on_s3_fails_with_the_reason_and_a_retry_starts_over(
    owner: Caller, s3: S3Connection
) -> None:
    data = os.urandom(MiB)
    dataset = _create(owner, "wrong", data, checksum=_checksum(b"declared something else"))
    plan = owner.post(f"/datasets/{dataset['id']}/parts", json={}).json()
    etag = httpx.put(plan["urls"]["1"], content=data).headers["ETag"]
    failed = owner.post(
        f"/datasets/{dataset['id']}/complete", json={"parts": [{"number": 1, "etag": etag}]}
    ).json()
    assert failed["status"] == "failed"
    assert failed["retryable"] is True
    assert f"the uploaded content is {_checksum(data)}" in failed["reason"]
    retried = owner.post(f"/datasets/{dataset['id']}/retry").json()
    assert retried["status"] == "uploading"
    keys = [
        o["Key"]
        for o in s3.client()
        .list_objects_v2(Bucket=BUCKET, Prefix=f"datasets/{dataset['id']}/")
        .get("Contents", [])
    ]
    assert keys == []
    assert owner.post(f"/datasets/{dataset['id']}/parts", json={}).json()["uploaded"] == []


def test_completing_with_a_part_s3_does_not_hold_is_a_conflict(owner: Caller) -> None:
    dataset = _create(owner, "partial", os.urandom(MiB))
    owner.post(f"/datasets/{dataset['id']}/parts", json={})
    refused = owner.post(
        f"/datasets/{dataset['id']}/complete", json={"parts": [{"number": 1, "etag": '"0"'}]}
    )
    assert refused.status_code == 409
    assert "upload the missing parts again" in refused.json()["detail"]
    wrong_part = owner.post(f"/datasets/{dataset['id']}/parts", json={"parts": [2]})
    assert wrong_part.status_code == 422
    assert "parts 1 to 1" in wrong_part.json()["detail"]


def test_an_s3_prefix_becomes_a_ready_dataset_of_its_listed_size(owner: Caller, s3: S3Connection) -> None:
    put_objects(
        s3, {"corpora/wiki/a.txt": b"a" * 10, "corpora/wiki/b/c.txt": b"c" * 5, "corpora/other": b"x"}
    )
    made = owner.post(
        "/datasets",
        json={"name": "wiki", "workspace": _ws(owner), "source": "s3", "url": f"s3://{BUCKET}/corpora/wiki/"},
    )
    assert made.status_code == 201, made.text
    assert (made.json()["status"], made.json()["size_bytes"], made.json()["url"]) == (
        "ready",
        15,
        f"s3://{BUCKET}/corpora/wiki/",
    )


BAD_SOURCES = [
    ("https://example.org/data", "is not an S3 URL"),
    ("s3://Bad_Bucket/x", "not a valid bucket name"),
    ("s3://no-such-bucket/x", "bucket 'no-such-bucket' does not exist"),
    (f"s3://{BUCKET}/nothing-here/", "there are no objects under"),
]
"""(URL, words of the answer) of each refused S3 source."""


def test_a_bad_s3_source_is_refused_naming_the_url(owner: Caller) -> None:
    for url, words in BAD_SOURCES:
        answer = owner.post(
            "/datasets", json={"name": "bad", "workspace": _ws(owner), "source": "s3", "url": url}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == "$.url"
        assert words in answer.json()["detail"], url


def test_credentials_s3_refuses_are_named_without_being_shown(
    owner: Caller, engine: Engine, s3_api_url: str
) -> None:
    with moto_server(authenticated=True) as guarded:
        wrong = S3Connection(
            BUCKET, "us-east-1", guarded.access_key_id, "not-the-secret", guarded.endpoint_url
        )
        with httpx.Client(base_url=f"{s3_api_url}/api/v1", headers=owner.http.headers) as client:
            _store_connection(engine, wrong)
            fresh_api = create_app(
                Settings(jwt_secret=JWT_SECRET, secrets_key=SECRETS_KEY, dataset_storage="s3"), engine
            )
            with running_api(fresh_api) as url:  # a process that reads the stored connection anew
                answer = httpx.post(
                    f"{url}/api/v1/datasets",
                    headers=client.headers,
                    json={
                        "name": "guarded",
                        "workspace": _ws(owner),
                        "source": "s3",
                        "url": f"s3://{BUCKET}/x",
                    },
                )
    assert answer.status_code == 422, answer.text
    assert (
        "S3 refused the credentials for bucket 'remotegpu-datasets' (SignatureDoesNotMatch)"
        in answer.json()["detail"]
    )
    assert "not-the-secret" not in answer.text


def test_an_admin_stores_the_s3_connection_and_checks_it(
    s3: S3Connection, database_url: URL, engine: Engine, sessions: object
) -> None:
    env = {k: None for k in os.environ if k.startswith("REMOTEGPU_")} | {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "REMOTEGPU_SECRETS_KEY": SECRETS_KEY,
    }
    args = ["datasets-s3", "set", "--bucket", BUCKET, "--access-key-id", s3.access_key_id]
    stored = CliRunner().invoke(
        app,
        [*args, "--endpoint", str(s3.endpoint_url), "--secret-access-key-stdin"],
        env=env,
        input=f"{s3.secret_access_key}\n",
    )
    assert stored.exit_code == 0, stored.output
    assert s3.secret_access_key not in stored.output
    assert S3Connection.from_secret(EncryptedSecretStore(engine, SecretKeys(SECRETS_KEY))) == s3
    checked = CliRunner().invoke(app, ["datasets-s3", "check"], env=env)
    assert checked.exit_code == 0, checked.output
    assert f"s3://{BUCKET}: reachable" in checked.output


def test_an_environment_mounts_its_datasets_read_only_after_the_s3_ones_are_synced(
    owner: Caller, s3: S3Connection, reconciler: Reconciler, api_cluster: InMemoryCluster, local_api: Caller
) -> None:
    put_objects(s3, {"corpora/books/a.txt": b"a" * 10})
    source = owner.post(
        "/datasets",
        json={
            "name": "books",
            "workspace": _ws(owner),
            "source": "s3",
            "url": f"s3://{BUCKET}/corpora/books/",
        },
    ).json()
    data = os.urandom(100)
    uploaded = _create(owner, "weights", data)
    plan = owner.post(f"/datasets/{uploaded['id']}/parts", json={}).json()
    etag = httpx.put(plan["urls"]["1"], content=data).headers["ETag"]
    owner.post(f"/datasets/{uploaded['id']}/complete", json={"parts": [{"number": 1, "etag": etag}]})
    local = local_api.post(
        "/datasets",
        json={
            "name": "labels",
            "workspace": _ws(owner),
            "size_bytes": 3,
            "checksum": _checksum(b"abc"),
            "file_name": "l.csv",
        },
    ).json()
    local_api.put(
        f"/datasets/{local['id']}/content",
        content=b"abc",
        headers={"Content-Type": "application/octet-stream"},
    )
    owner.post(
        "/datasets",
        json={
            "name": "scratch",
            "workspace": _ws(owner),
            "source": "volume",
            "volume": "lab-scratch",
            "size_bytes": 1,
        },
    )
    mounts = [
        {"name": "books", "mount": "/data/books"},
        {"name": "weights", "mount": "/data/weights"},
        {"name": "labels", "mount": "/data/labels"},
        {"name": "scratch", "mount": "/scratch", "read_only": False},
    ]
    applied = owner.post("/environments/apply", json=spec("reader", _ws(owner), datasets=mounts))
    assert applied.status_code == 200, applied.text
    env = applied.json()["environment"]
    reconciler.run_until_idle()
    assert owner.get(f"/environments/{env['id']}").json()["phase"] == "running"
    jobs = {job.source: job for job in api_cluster.sync_jobs.values()}
    assert set(jobs) == {f"s3://{BUCKET}/corpora/books/", f"s3://{BUCKET}/datasets/{uploaded['id']}/"}
    assert jobs[f"s3://{BUCKET}/datasets/{uploaded['id']}/"].checksum == _checksum(data)
    credentials = api_cluster.secrets[f"env-{env['id']}-dataset-s3"]
    assert credentials["AWS_ENDPOINT_URL"] == s3.endpoint_url
    pod = api_cluster.pods[f"env-{env['id']}"].spec
    shown = {(m.name, m.mount, m.claim, m.read_only, m.sub_path) for m in pod.datasets}
    books_claim = f"env-{env['id']}-ds-{uuid.UUID(source['id']).hex[:8]}"
    weights_claim = f"env-{env['id']}-ds-{uuid.UUID(uploaded['id']).hex[:8]}"
    assert shown == {
        ("books", "/data/books", books_claim, True, None),
        ("weights", "/data/weights", weights_claim, True, None),
        ("labels", "/data/labels", "remotegpu-datasets", True, local["id"]),
        ("scratch", "/scratch", "lab-scratch", False, None),
    }
    refused = owner.delete(f"/datasets/{source['id']}")
    assert refused.status_code == 409
    assert "mounted by environment reader" in refused.json()["detail"]
    owner.delete(f"/environments/{env['id']}")
    reconciler.run_until_idle()
    assert api_cluster.sync_jobs == {}
    assert owner.delete(f"/datasets/{source['id']}").status_code == 200


def test_a_failed_sync_fails_the_environment_with_the_reason(
    owner: Caller, s3: S3Connection, reconciler: Reconciler, api_cluster: InMemoryCluster
) -> None:
    put_objects(s3, {"corpora/bad/a.txt": b"a"})
    owner.post(
        "/datasets",
        json={"name": "bad", "workspace": _ws(owner), "source": "s3", "url": f"s3://{BUCKET}/corpora/bad/"},
    )
    api_cluster.failing_syncs[f"s3://{BUCKET}/corpora/bad/"] = "BackoffLimitExceeded: a.txt: 0 bytes arrived"
    env = owner.post(
        "/environments/apply", json=spec("reader", _ws(owner), datasets=[{"name": "bad", "mount": "/data"}])
    ).json()["environment"]
    reconciler.run_until_idle()
    shown = owner.get(f"/environments/{env['id']}").json()
    assert (shown["phase"], shown["reason"]) == ("failed", "DatasetSyncFailed")
    assert "0 bytes arrived" in shown["message"]


def test_a_spec_naming_a_dataset_the_workspace_lacks_is_refused(owner: Caller) -> None:
    answer = owner.post(
        "/environments/apply",
        json=spec("reader", _ws(owner), datasets=[{"name": "nothing", "mount": "/data"}]),
    )
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "$.datasets[0].name"
    assert "no dataset named 'nothing'" in answer.json()["detail"]


def test_a_stranger_cannot_make_us_list_a_bucket(
    owner: Caller, new_user: Callable[[str], Caller], s3_api_url: str
) -> None:
    stranger = new_user(f"st{uuid.uuid4().hex[:8]}")
    body = {"name": "probe", "workspace": _ws(owner), "source": "s3", "url": "s3://no-such-bucket/x"}
    with httpx.Client(base_url=f"{s3_api_url}/api/v1", headers=stranger.http.headers) as client:
        answer = client.post("/datasets", json=body)
    assert answer.status_code == 404, "not the bucket's answer: the workspace is not theirs"
    assert httpx.post(f"{s3_api_url}/api/v1/datasets", json=body).status_code == 401
