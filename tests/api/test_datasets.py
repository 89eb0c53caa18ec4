"""Datasets over the API with the local storage backend: chunked uploads at byte offsets that resume,
verification against the declared size and checksum, retry after a mismatch, the storage quota, and
each bad input's answer."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from remotegpu.tests.api.conftest import Caller
from remotegpu.tests.api.test_cli_commands import InProcess, _refused, _token
from remotegpu.tests.api.test_cli_commands import invoke as cli_in_process

MiB = 1 << 20
invoke = cli_in_process
"""The CLI run in this process, as in the CLI tests."""


def checksum(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
def owner(new_user: Callable[[str], Caller]) -> Caller:
    caller = new_user(f"ds{uuid.uuid4().hex[:8]}")
    assert caller.post("/workspaces", json={"name": f"data-{caller.username}"}).status_code == 201
    return caller


def _ws(caller: Caller) -> str:
    return f"data-{caller.username}"


def create_upload(caller: Caller, name: str, data: bytes, **overrides: Any) -> httpx.Response:
    body = {
        "name": name,
        "workspace": _ws(caller),
        "size_bytes": len(data),
        "checksum": checksum(data),
        "file_name": "train.bin",
    } | overrides
    return caller.http.post("/datasets", json=body)


def put_chunk(caller: Caller, dataset_id: str, offset: int, data: bytes) -> httpx.Response:
    return caller.http.put(
        f"/datasets/{dataset_id}/content",
        params={"offset": offset},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def test_a_chunked_upload_resumes_from_what_arrived_and_is_ready_when_it_matches(
    owner: Caller, dataset_dir: Path
) -> None:
    data = os.urandom(3 * MiB + 123)
    created = create_upload(owner, "imagenet-mini", data)
    assert created.status_code == 201, created.text
    dataset = created.json()
    assert dataset["status"] == "uploading"
    assert dataset["upload"] == {"storage": "local", "chunk_bytes": MiB, "part_bytes": None}
    assert put_chunk(owner, dataset["id"], 0, data[:MiB]).json()["received_bytes"] == MiB
    # an interrupted client comes back, asks how far it got, and repeats a little (the overlap matches)
    assert owner.get(f"/datasets/{dataset['id']}").json()["received_bytes"] == MiB
    middle = put_chunk(owner, dataset["id"], MiB - 10, data[MiB - 10 : 2 * MiB])
    assert middle.status_code == 200, middle.text
    assert middle.json()["received_bytes"] == 2 * MiB
    done = put_chunk(owner, dataset["id"], 2 * MiB, data[2 * MiB :]).json()
    assert done["status"] == "ready"
    assert done["ready_at"] is not None
    assert (dataset_dir / dataset["id"] / "train.bin").read_bytes() == data
    listed = owner.get("/datasets", params={"workspace": _ws(owner)}).json()
    assert [(d["name"], d["status"], d["checksum"]) for d in listed] == [
        ("imagenet-mini", "ready", checksum(data))
    ]


def test_a_resumed_upload_with_different_content_is_refused(owner: Caller) -> None:
    data = os.urandom(2 * MiB)
    dataset = create_upload(owner, "weights", data).json()
    put_chunk(owner, dataset["id"], 0, data[:MiB])
    other = os.urandom(MiB)
    refused = put_chunk(owner, dataset["id"], 0, other)
    assert refused.status_code == 409
    assert "not the file this upload started with" in refused.json()["detail"]
    assert owner.get(f"/datasets/{dataset['id']}").json()["received_bytes"] == MiB


def test_a_chunk_past_what_arrived_says_where_to_resume(owner: Caller) -> None:
    data = os.urandom(2 * MiB)
    dataset = create_upload(owner, "gap", data).json()
    refused = put_chunk(owner, dataset["id"], MiB, data[MiB:])
    assert refused.status_code == 409
    assert "resume from offset 0" in refused.json()["detail"]
    too_long = put_chunk(owner, dataset["id"], 0, data + b"x")
    assert too_long.status_code == 422
    assert "past the declared size" in too_long.json()["detail"]


def test_a_checksum_mismatch_fails_with_the_reason_and_can_be_retried(owner: Caller) -> None:
    data = os.urandom(MiB // 2)
    dataset = create_upload(owner, "corrupt", data, checksum=checksum(b"something else")).json()
    failed = put_chunk(owner, dataset["id"], 0, data).json()
    assert failed["status"] == "failed"
    assert failed["retryable"] is True
    assert "checksum mismatch" in failed["reason"]
    assert checksum(data) in failed["reason"]
    refused = put_chunk(owner, dataset["id"], 0, data)
    assert refused.status_code == 409
    assert "Retry it" in refused.json()["detail"]
    retried = owner.post(f"/datasets/{dataset['id']}/retry").json()
    assert (retried["status"], retried["received_bytes"], retried["reason"]) == ("uploading", 0, None)
    again = put_chunk(owner, dataset["id"], 0, data).json()
    assert again["status"] == "failed"  # the same wrong declaration fails the same way


def test_datasets_count_against_the_storage_quota_and_deleting_gives_it_back(
    owner: Caller, admin: Caller, dataset_dir: Path
) -> None:
    workspace = next(w["id"] for w in owner.get("/workspaces").json()["items"] if w["name"] == _ws(owner))
    assert admin.put(f"/quotas/workspaces/{workspace}", json={"storage": "3Mi"}).status_code == 200
    data = os.urandom(2 * MiB)
    first = create_upload(owner, "first", data).json()
    usage = owner.get(f"/quotas/workspaces/{workspace}/usage").json()
    assert usage["storage_bytes"] == 2 * MiB
    refused = create_upload(owner, "second", data)
    assert refused.status_code == 409
    problem = refused.json()
    assert "storage quota of 3Mi" in problem["detail"]
    assert "max_storage_bytes" in problem["detail"]
    assert problem["errors"][0]["field"] == "$.size_bytes"
    put_chunk(owner, first["id"], 0, data[:MiB])
    deleted = owner.delete(f"/datasets/{first['id']}")
    assert deleted.status_code == 200
    assert not (dataset_dir / first["id"]).exists()
    assert owner.get(f"/quotas/workspaces/{workspace}/usage").json()["storage_bytes"] == 0
    assert create_upload(owner, "second", data).status_code == 201


def test_a_taken_name_is_a_conflict_naming_the_field(owner: Caller) -> None:
    assert create_upload(owner, "dup", b"abc").status_code == 201
    taken = create_upload(owner, "dup", b"abc")
    assert taken.status_code == 409
    assert taken.json()["errors"][0]["field"] == "$.name"
    assert "already has a dataset named 'dup'" in taken.json()["detail"]


BAD_INPUT: list[tuple[dict[str, Any], str, str]] = [
    ({"source": "upload", "size_bytes": 3}, "$.checksum", "sha256"),
    ({"source": "upload", "checksum": "sha256:" + "0" * 64}, "$.size_bytes", "size"),
    ({"source": "upload", "size_bytes": 3, "checksum": "md5:abc"}, "$.checksum", "sha256sum"),
    ({"source": "volume", "size_bytes": 3}, "$.volume", "PersistentVolumeClaim"),
    (
        {"source": "upload", "size_bytes": 3, "checksum": "sha256:" + "0" * 64, "file_name": ".."},
        "$.file_name",
        "not starting with '.'",
    ),
    (
        {"name": "Not_A_Label", "source": "volume", "volume": "pvc", "size_bytes": 1},
        "$.name",
        "DNS label",
    ),
]
"""(body, field named, words of the fix) of each refused create."""


def test_bad_input_names_the_field(owner: Caller) -> None:
    for body, field, words in BAD_INPUT:  # one owner for all: each case is one request
        answer = owner.post("/datasets", json={"name": "bad", "workspace": _ws(owner)} | body)
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert problem["errors"][0]["field"] == field
        assert words in str(problem), (body, problem)


def test_a_volume_dataset_is_ready_at_once(owner: Caller) -> None:
    made = owner.post(
        "/datasets",
        json={
            "name": "scratch",
            "workspace": _ws(owner),
            "source": "volume",
            "volume": "lab-data",
            "size_bytes": 1,
        },
    ).json()
    assert (made["status"], made["volume"], made["storage"]) == ("ready", "lab-data", None)


def test_other_workspaces_datasets_do_not_exist_for_you(
    owner: Caller, new_user: Callable[[str], Caller]
) -> None:
    dataset = create_upload(owner, "private", b"secret data").json()
    stranger = new_user(f"st{uuid.uuid4().hex[:8]}")
    assert stranger.get(f"/datasets/{dataset['id']}").status_code == 404
    assert stranger.delete(f"/datasets/{dataset['id']}").status_code == 404
    assert put_chunk(stranger, dataset["id"], 0, b"secret data").status_code == 404
    assert stranger.get("/datasets", params={"workspace": _ws(owner)}).status_code == 404


def test_the_cli_resumes_an_interrupted_upload_and_lists_describes_and_deletes(
    owner: Caller, invoke: InProcess, tmp_path: Path
) -> None:
    data = os.urandom(3 * MiB + 5)
    path = tmp_path / "shard-0.bin"
    path.write_bytes(data)
    token = _token(owner)
    # an earlier run was interrupted after its first chunk
    first = create_upload(owner, "shards", data, file_name="shard-0.bin").json()
    put_chunk(owner, first["id"], 0, data[:MiB])
    resumed = invoke("datasets", "create", "shards", "--file", str(path), "-w", _ws(owner), token=token)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming its upload" in resumed.output
    assert "dataset/shards ready" in resumed.output
    assert owner.get(f"/datasets/{first['id']}").json()["status"] == "ready"
    listed = invoke("datasets", "list", "-w", _ws(owner), token=token)
    assert "shards" in listed.output
    assert "ready" in listed.output
    described = invoke("datasets", "describe", "shards", "-w", _ws(owner), "-o", "json", token=token)
    assert checksum(data) in described.output
    other = tmp_path / "other.bin"
    other.write_bytes(b"other content")
    taken = invoke("datasets", "create", "shards", "--file", str(other), "-w", _ws(owner), token=token)
    assert "already has a dataset named 'shards' with other content" in _refused(taken)
    deleted = invoke("datasets", "delete", "shards", "-w", _ws(owner), token=token)
    assert deleted.exit_code == 0, deleted.output
    assert owner.get(f"/datasets/{first['id']}").status_code == 404


def test_the_cli_retries_a_failed_upload(owner: Caller, invoke: InProcess, tmp_path: Path) -> None:
    data = os.urandom(1000)
    path = tmp_path / "labels.csv"
    path.write_bytes(data)
    made = create_upload(owner, "labels", data, file_name="labels.csv").json()
    failed = put_chunk(
        owner, made["id"], 0, os.urandom(1000)
    ).json()  # another file's bytes: checksum mismatch
    assert failed["status"] == "failed"
    retried = invoke(
        "datasets", "create", "labels", "--file", str(path), "-w", _ws(owner), token=_token(owner)
    )
    assert retried.exit_code == 0, retried.output
    assert "retrying" in retried.output
    assert owner.get(f"/datasets/{made['id']}").json()["status"] == "ready"


def test_home_volumes_are_a_workspace_setting_with_a_checked_size(owner: Caller, invoke: InProcess) -> None:
    workspace = next(w["id"] for w in owner.get("/workspaces").json()["items"] if w["name"] == _ws(owner))
    path = f"/workspaces/{workspace}/settings"
    assert owner.get(path).json()["home_volume_size"] is None
    small = owner.put(path, json={"home_volume_size": "10Mi"})
    assert small.status_code == 422
    assert "at least 1Gi" in small.json()["detail"]
    assert owner.put(path, json={"home_volume_size": "lots"}).status_code == 422
    changed = invoke(
        "workspaces", "settings", "--home-volume", "50Gi", "-w", _ws(owner), "-o", "json", token=_token(owner)
    )
    assert changed.exit_code == 0, changed.output
    assert owner.get(path).json()["home_volume_size"] == "50Gi"
