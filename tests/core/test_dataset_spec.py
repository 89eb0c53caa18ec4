"""A spec's `datasets:`: read-only by default, names and mount paths unique (also against volumes), and
where each kind of dataset is mounted from."""

from __future__ import annotations

import uuid

import pytest

from remotegpu.core.datasets.attach import DatasetRef, dataset_mounts, s3_source_of
from remotegpu.core.datasets.states import DatasetSource, StorageKind
from remotegpu.core.environments.spec import SpecError, parse_spec

BASE = {"name": "train", "image": "pytorch:24.05"}


def test_datasets_are_read_only_unless_the_spec_says_otherwise() -> None:
    spec = parse_spec(
        BASE | {"datasets": [{"name": "a", "mount": "/a"}, {"name": "b", "mount": "/b", "read_only": False}]}
    )
    assert [(d.name, d.read_only) for d in spec.datasets] == [("a", True), ("b", False)]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            {"datasets": [{"name": "a", "mount": "/a"}, {"name": "a", "mount": "/b"}]},
            "name 'a' appears twice",
        ),
        (
            {
                "volumes": [{"name": "v", "size": "1Gi", "mount": "/data"}],
                "datasets": [{"name": "a", "mount": "/data"}],
            },
            "mount '/data' appears twice",
        ),
        ({"datasets": [{"name": "a", "mount": "relative"}]}, "$.datasets[0].mount"),
        ({"datasets": [{"name": "a", "mount": "/a", "readonly": True}]}, "readonly"),
    ],
)
def test_a_bad_datasets_entry_names_the_field(extra: dict[str, object], words: str) -> None:
    with pytest.raises(SpecError) as refused:
        parse_spec(BASE | extra)
    assert refused.value.field.startswith("$.datasets")
    assert words in str(refused.value)


def _ref(source: DatasetSource, storage: StorageKind | None, **extra: object) -> DatasetRef:
    fields: dict[str, object] = {
        "id": uuid.UUID(int=7),
        "name": "d",
        "source": source,
        "storage": storage,
        "status": "ready",
        "file_name": "f",
        "url": None,
        "volume": None,
        "size_bytes": 1,
        "checksum": None,
        "reason": None,
    }
    return DatasetRef(**(fields | extra))  # type: ignore[arg-type]


def test_each_kind_of_dataset_is_mounted_from_its_own_place() -> None:
    environment = uuid.UUID(int=1)
    spec = parse_spec(BASE | {"datasets": [{"name": "d", "mount": "/d"}]})
    local = dataset_mounts(
        environment, spec.datasets, [_ref(DatasetSource.UPLOAD, StorageKind.LOCAL)], "shared"
    )
    assert (local[0].claim, local[0].sub_path) == ("shared", str(uuid.UUID(int=7)))
    in_s3 = dataset_mounts(environment, spec.datasets, [_ref(DatasetSource.UPLOAD, StorageKind.S3)], "shared")
    assert in_s3[0].claim == f"env-{environment}-ds-{uuid.UUID(int=7).hex[:8]}"
    volume = dataset_mounts(
        environment, spec.datasets, [_ref(DatasetSource.VOLUME, None, volume="pvc")], "shared"
    )
    assert (volume[0].claim, volume[0].sub_path) == ("pvc", None)
    source = _ref(DatasetSource.S3, None, url="s3://corpora/wiki/")
    assert s3_source_of(source, "platform-bucket") == "s3://corpora/wiki/"
    assert (
        s3_source_of(_ref(DatasetSource.UPLOAD, StorageKind.S3), "b")
        == f"s3://b/datasets/{uuid.UUID(int=7)}/"
    )
