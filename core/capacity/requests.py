"""What an allocation asks for and what it gets: the requests and results of `allocate`,
`allocate_planned` and the scheduler, shared by the single and the batch path."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from remotegpu.core.environments.states import PortPurpose, Protocol
from remotegpu.policies.admission import QuotaViolation
from remotegpu.policies.placement import PlacementRequest


@dataclass(frozen=True)
class PortRequest:
    """A container port that needs a host port."""

    container_port: int
    protocol: Protocol = Protocol.TCP
    purpose: PortPurpose = PortPurpose.CUSTOM
    name: str | None = None


@dataclass(frozen=True)
class AllocationRequest:
    """What one environment generation asks for."""

    environment_id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    generation: int
    gpu_count: int
    gpu_model: str | None = None
    cpu_millis: int = 0
    memory_bytes: int = 0
    storage_bytes: int = 0
    """What the spec's volumes ask for."""
    storage_bytes_held: int = 0
    """What its volumes already hold (counted in the quotas since an earlier placement); `allocate`
    fills it in from the row it reads under the quota locks."""
    ports: tuple[PortRequest, ...] = ()

    @property
    def storage_charge(self) -> int:
        """The storage this allocation adds to the quotas: volumes outlive a stop and never shrink, so
        only growth beyond what they hold is new."""
        return max(0, self.storage_bytes - self.storage_bytes_held)

    def placement_request(self, excluded_models: frozenset[str] = frozenset()) -> PlacementRequest:
        """The placement view of this request."""
        return PlacementRequest(
            gpu_count=self.gpu_count,
            gpu_model=self.gpu_model,
            cpu_millis=self.cpu_millis,
            memory_bytes=self.memory_bytes,
            ports=len(self.ports),
            excluded_models=excluded_models,
        )


class AllocationOutcome(enum.StrEnum):
    """How an allocation attempt ended."""

    ALLOCATED = "allocated"
    ALREADY_ALLOCATED = "already-allocated"
    OVER_QUOTA = "over-quota"
    NO_CAPACITY = "no-capacity"
    CONTENDED = "contended"
    """Every fitting host was locked by another allocator, or a constraint caught a race: retry soon."""
    NOT_ALLOCATABLE = "not-allocatable"
    """The environment no longer wants this allocation (stopped, deleted, spec changed)."""


@dataclass(frozen=True)
class ClaimedPort:
    """One host port mapping made by an allocation."""

    container_port: int
    host_port: int
    protocol: Protocol
    purpose: PortPurpose
    """Why it is published, as requested and stored: SSH is known by this, never by the port number."""
    name: str | None = None


@dataclass(frozen=True)
class AllocationResult:
    """The outcome, and on success what was claimed."""

    outcome: AllocationOutcome
    reason: str = ""
    host_id: uuid.UUID | None = None
    gpu_model: str | None = None
    gpu_ids: tuple[uuid.UUID, ...] = ()
    ports: tuple[ClaimedPort, ...] = ()
    violations: tuple[QuotaViolation, ...] = ()

    @property
    def holds_claims(self) -> bool:
        """True when the environment now holds an allocation."""
        return self.outcome in {AllocationOutcome.ALLOCATED, AllocationOutcome.ALREADY_ALLOCATED}
