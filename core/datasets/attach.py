"""Datasets as an environment sees them: the rows its spec names (loaded with its row by the
reconciler, `DATASETS_SQL`), and where each is mounted from.

A volume dataset mounts its own claim; a local upload mounts its folder (`<dataset id>`) of the shared
volume the local backend writes to; an S3 dataset (an S3 prefix, or an upload kept in S3) mounts a
claim of the environment's own that a sync Job filled (`env-<id>-ds-<dataset>`). Every name is
deterministic, so the mounts follow from the rows alone, on every pass.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from remotegpu.core.cluster.driver import DatasetMount, dataset_object_name
from remotegpu.core.datasets.states import DatasetSource, StorageKind
from remotegpu.core.environments.spec import DatasetSpec

DATASETS_SQL = """
    CASE WHEN e.spec ? 'datasets' THEN  -- most specs mount none: no subquery for them
    coalesce((SELECT json_agg(json_build_array(d.id, d.name, d.source, d.storage, d.status, d.file_name,
                                               d.source_url, d.volume, d.size_bytes, d.checksum, d.reason)
                              ORDER BY d.name)
                FROM datasets d
               WHERE d.workspace_id = e.workspace_id
                 AND d.name IN (SELECT x->>'name' FROM jsonb_array_elements(e.spec->'datasets') x)), '[]')
    ELSE '[]' END
"""
"""The datasets an environment's spec names, as a JSON array of rows (a column of the step's load)."""


@dataclass(frozen=True)
class DatasetRef:
    """One dataset row as an environment's step reads it."""

    id: uuid.UUID
    name: str
    source: DatasetSource
    storage: StorageKind | None
    status: str
    file_name: str | None
    url: str | None
    volume: str | None
    size_bytes: int
    checksum: str | None
    reason: str | None

    @property
    def synced(self) -> bool:
        """Whether it reaches the environment through a sync Job (its bytes are in S3)."""
        return self.source is DatasetSource.S3 or self.storage is StorageKind.S3


def refs_from_json(rows: Sequence[Sequence[Any]]) -> tuple[DatasetRef, ...]:
    """`DATASETS_SQL`'s array as `DatasetRef`s."""
    return tuple(
        DatasetRef(
            uuid.UUID(str(r[0])),
            r[1],
            DatasetSource(r[2]),
            StorageKind(r[3]) if r[3] else None,
            r[4],
            r[5],
            r[6],
            r[7],
            int(r[8]),
            r[9],
            r[10],
        )
        for r in rows
    )


def dataset_mounts(
    environment_id: uuid.UUID, wanted: Sequence[DatasetSpec], refs: Sequence[DatasetRef], local_claim: str
) -> tuple[DatasetMount, ...]:
    """Where each wanted dataset that exists is mounted from (a missing one is the sync step's to report)."""
    by_name = {ref.name: ref for ref in refs}
    mounts = []
    for spec in wanted:
        ref = by_name.get(spec.name)
        if ref is None:
            continue
        if ref.source is DatasetSource.VOLUME:
            claim, sub_path = str(ref.volume), None
        elif ref.synced:
            claim, sub_path = dataset_object_name(environment_id, ref.id), None
        else:
            claim, sub_path = local_claim, str(ref.id)
        mounts.append(DatasetMount(spec.name, spec.mount, claim, spec.read_only, sub_path))
    return tuple(mounts)


def s3_source_of(ref: DatasetRef, bucket: str) -> str:
    """What a sync Job copies: the S3 prefix of a source, or an S3 upload's folder in the platform bucket."""
    if ref.source is DatasetSource.S3 and ref.url:
        return ref.url
    return f"s3://{bucket}/datasets/{ref.id}/"
