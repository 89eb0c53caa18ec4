"""Image references follow the Distribution grammar; a malformed one is refused naming what is wrong."""

from __future__ import annotations

import pytest

from remotegpu.core.catalog.references import check_reference
from remotegpu.core.platform.errors import InvalidInputError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "reference",
    [
        "nvcr.io/nvidia/pytorch:24.05-py3",
        "library/pytorch:nope",
        "localhost:5000/team/model",
        f"127.0.0.1:35737/library/pytorch@{DIGEST}",
        f"harbor.example.org/ml/pytorch:24.05@{DIGEST}",
        "ghcr.io/a_b/c__d/e-f:T1",
        "[::1]:5000/x:1",
    ],
)
def test_well_formed_references_pass(reference: str) -> None:
    check_reference(reference)


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ("UPPER/Case:tag", "the repository part 'UPPER' must be lower-case"),
        ("busybox@sha256:zz", "the digest 'sha256:zz' is not algorithm:hex"),
        ("team//model", "the repository part ''"),
        ("team/model:", "the tag ''"),
        ("team/model:" + "t" * 129, "128 at most"),
        ("bad_host.example.org/x", "is not a registry host"),
    ],
)
def test_malformed_references_are_refused_saying_why(reference: str, why: str) -> None:
    with pytest.raises(InvalidInputError, match="image") as refused:
        check_reference(reference)
    assert why in str(refused.value)
