"""Quota arithmetic on its own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from remotegpu.policies.admission import QuotaRequest, QuotaState, models_without_headroom, quota_violations


def test_a_request_within_every_limit_has_no_violation() -> None:
    state = QuotaState(
        "workspace", max_gpus=8, used_gpus=4, max_running_environments=3, running_environments=2
    )
    assert quota_violations(state, QuotaRequest(4, "H100", 0, 0, 0)) == []


def test_violation_says_which_limit_and_by_how_much() -> None:
    state = QuotaState("workspace", max_gpus=8, used_gpus=6)
    (violation,) = quota_violations(state, QuotaRequest(4, None, 0, 0, 0))
    assert violation.message() == "workspace quota on GPUs: 6 of 8 in use, 4 requested, over by 2"
    assert violation.excess == 2


def test_per_model_limit_applies_only_to_its_model() -> None:
    state = QuotaState("user", max_gpus_by_model={"H100": 2}, used_gpus_by_model={"H100": 1})
    assert [v.dimension for v in quota_violations(state, QuotaRequest(2, "H100", 0, 0, 0))] == ["H100 GPUs"]
    assert quota_violations(state, QuotaRequest(2, "A100", 0, 0, 0)) == []
    assert models_without_headroom([state], 2) == frozenset({"H100"})
    assert models_without_headroom([state], 1) == frozenset()


def test_limit_lowered_below_usage_refuses_everything_new() -> None:
    state = QuotaState("workspace", max_gpus=2, used_gpus=4)
    assert quota_violations(state, QuotaRequest(1, None, 0, 0, 0))[0].excess == 3
    assert quota_violations(state, QuotaRequest(0, None, 0, 0, 0)) == [], "a CPU-only request asks no GPU"


@given(
    limit=st.one_of(st.none(), st.integers(0, 16)),
    used=st.integers(0, 16),
    wanted=st.integers(0, 16),
)
def test_refused_exactly_when_usage_would_exceed_the_limit(limit: int | None, used: int, wanted: int) -> None:
    """Invariant: a GPU violation is reported if and only if used + wanted > limit (and wanted > 0)."""
    state = QuotaState("workspace", max_gpus=limit, used_gpus=used)
    refused = any(v.dimension == "GPUs" for v in quota_violations(state, QuotaRequest(wanted, None, 0, 0, 0)))
    assert refused == (limit is not None and wanted > 0 and used + wanted > limit)
