"""Quota arithmetic: does a request fit the limits of a workspace and of a user?

The same function serves the fast check at submit time and the authoritative check under the quota
locks at allocation. A limit of None is unlimited. Usage may already exceed a limit that an admin
lowered; then every new request over it is refused until usage drops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class QuotaState:
    """Limits and usage of one subject (a workspace or a user)."""

    subject: str
    """`workspace` or `user`, for messages."""
    max_gpus: int | None = None
    max_cpu_millis: int | None = None
    max_memory_bytes: int | None = None
    max_storage_bytes: int | None = None
    max_running_environments: int | None = None
    used_gpus: int = 0
    used_cpu_millis: int = 0
    used_memory_bytes: int = 0
    used_storage_bytes: int = 0
    running_environments: int = 0
    max_gpus_by_model: Mapping[str, int | None] = field(default_factory=dict)
    used_gpus_by_model: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class QuotaRequest:
    """What an allocation would add to usage."""

    gpu_count: int
    gpu_model: str | None
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int


@dataclass(frozen=True)
class QuotaViolation:
    """One limit a request would break, with the numbers to say by how much."""

    subject: str
    dimension: str
    limit: int
    used: int
    requested: int

    @property
    def excess(self) -> int:
        """How far over the limit the request would go."""
        return self.used + self.requested - self.limit

    def message(self) -> str:
        """`workspace quota on GPUs: 6 of 8 in use, 4 requested, over by 2`."""
        return (
            f"{self.subject} quota on {self.dimension}: {self.used} of {self.limit} in use, "
            f"{self.requested} requested, over by {self.excess}"
        )


def quota_violations(state: QuotaState, request: QuotaRequest) -> list[QuotaViolation]:
    """Every limit of `state` that `request` would break; empty when it fits."""
    checks: list[tuple[str, int | None, int, int]] = [
        ("GPUs", state.max_gpus, state.used_gpus, request.gpu_count),
        ("CPU millicores", state.max_cpu_millis, state.used_cpu_millis, request.cpu_millis),
        ("memory bytes", state.max_memory_bytes, state.used_memory_bytes, request.memory_bytes),
        ("storage bytes", state.max_storage_bytes, state.used_storage_bytes, request.storage_bytes),
        ("running environments", state.max_running_environments, state.running_environments, 1),
    ]
    if request.gpu_model is not None and request.gpu_count:
        model = request.gpu_model
        checks.append(
            (
                f"{model} GPUs",
                state.max_gpus_by_model.get(model),
                state.used_gpus_by_model.get(model, 0),
                request.gpu_count,
            )
        )
    return [
        QuotaViolation(state.subject, dimension, limit, used, wanted)
        for dimension, limit, used, wanted in checks
        if limit is not None and wanted > 0 and used + wanted > limit
    ]


def models_without_headroom(states: list[QuotaState], gpu_count: int) -> frozenset[str]:
    """GPU models whose per-model limit leaves no room for `gpu_count` more, in any of `states`."""
    blocked: set[str] = set()
    for state in states:
        for model, limit in state.max_gpus_by_model.items():
            if limit is not None and state.used_gpus_by_model.get(model, 0) + gpu_count > limit:
                blocked.add(model)
    return frozenset(blocked)
