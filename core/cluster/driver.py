"""The cluster driver interface: what the reconciler (and, for logs, the API) needs from Kubernetes.

Every call is idempotent by name: objects are named after the environment, so a repeated create finds
the existing object instead of making a second one. Implementations: `InMemoryCluster` (tests,
benchmarks, `remotegpu dev` until the simulated cluster lands) and the Kubernetes driver.
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from remotegpu.core.capacity.requests import ClaimedPort
from remotegpu.core.inventory.sync import ObservedNode
from remotegpu.core.platform.errors import ConflictError
from remotegpu.core.registry.credentials import PullSecret

WORKSPACE_NAMESPACE_PREFIX = "rgpu-ws-"
"""With `namespace_per_workspace`, a workspace's objects live in `rgpu-ws-<workspace id>`."""


def workload_name(environment_id: uuid.UUID) -> str:
    """Deterministic object name of an environment's pod (and service, volumes' prefix)."""
    return f"env-{environment_id}"


@dataclass(frozen=True)
class VolumeSpec:
    """A persistent volume of an environment; kept on stop, removed on delete."""

    name: str
    size_bytes: int
    mount: str


@dataclass(frozen=True)
class DatasetMount:
    """A dataset mounted into an environment: the claim holding it (and the folder of it that is the
    dataset, for the local backend's shared volume), where, and whether read-only."""

    name: str
    mount: str
    claim: str
    read_only: bool = True
    sub_path: str | None = None


def dataset_object_name(environment_id: uuid.UUID, dataset_id: uuid.UUID) -> str:
    """Deterministic name of the volume claim (and sync Job) holding an S3 dataset synced for one
    environment: short enough for a Job name (63 characters)."""
    return f"{workload_name(environment_id)}-ds-{dataset_id.hex[:8]}"


@dataclass(frozen=True)
class DatasetSyncJob:
    """Copy an S3 dataset into a volume of one environment with `remotegpu dataset-sync`."""

    environment_id: uuid.UUID
    workspace_id: uuid.UUID
    dataset_id: uuid.UUID
    source: str
    """`s3://bucket/prefix` to copy."""
    size_bytes: int
    image: str
    """The image holding the `remotegpu` command."""
    credentials_secret: str
    """The environment Secret (`env-<id>-<suffix>`) with the S3 endpoint and keys as AWS_* variables."""
    checksum: str | None = None
    """`sha256:<hex>` of an uploaded dataset's one object, verified after the copy."""

    @property
    def name(self) -> str:
        """The Job's and the claim's name."""
        return dataset_object_name(self.environment_id, self.dataset_id)


class SyncState(enum.StrEnum):
    """Where a dataset sync Job is."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class SyncObservation:
    """One look at a sync Job: its state, and why it failed."""

    state: SyncState
    message: str = ""


@runtime_checkable
class DatasetSyncer(Protocol):
    """A driver that can sync S3 datasets into volumes with Jobs."""

    def ensure_dataset_sync(self, job: DatasetSyncJob) -> SyncObservation:
        """Create the claim and the Job unless they exist (by name), and report the Job's state. The
        claim and the Job go with the environment's volumes (`delete_workload` without keeping them)."""


@dataclass(frozen=True)
class HomeMount:
    """A user's home volume in a workspace, mounted at `/home/<user>`; it outlives environments."""

    workspace_id: uuid.UUID
    user_id: uuid.UUID
    mount: str
    size_bytes: int

    @property
    def claim(self) -> str:
        """The claim's deterministic name: one per user per workspace."""
        return home_claim_name(self.workspace_id, self.user_id)


def home_claim_name(workspace_id: uuid.UUID, user_id: uuid.UUID) -> str:
    """The PersistentVolumeClaim of a user's home in a workspace."""
    return f"home-{workspace_id}-{user_id}"


@dataclass(frozen=True)
class WorkloadSpec:
    """Everything needed to create an environment's objects on its node."""

    environment_id: uuid.UUID
    workspace_id: uuid.UUID
    generation: int
    node: str
    image: str
    command: tuple[str, ...] = ()
    gpu_count: int = 0
    cpu_millis: int = 0
    memory_bytes: int = 0
    ports: tuple[ClaimedPort, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    gpu_uuids: tuple[str, ...] = ()
    """Device UUIDs of the claimed GPUs (what `device-id` binding pins the pod to)."""
    datasets: tuple[DatasetMount, ...] = ()
    home: HomeMount | None = None
    """The user's home volume (when the workspace has them): created unless it exists, never deleted
    with the environment."""

    @property
    def name(self) -> str:
        """The pod's name."""
        return workload_name(self.environment_id)


class PodState(enum.StrEnum):
    """What the cluster says of an environment's pod."""

    PENDING = "pending"
    RUNNING = "running"
    FAILED = "failed"
    MISSING = "missing"


@dataclass(frozen=True)
class PodObservation:
    """One look at the pod: its state, why, where, and for which generation it was made."""

    state: PodState
    reason: str | None = None
    message: str = ""
    node: str | None = None
    generation: int | None = None
    retryable: bool = True
    """False for failures a retry cannot fix (e.g. an image that does not exist)."""
    devices: tuple[str, ...] = ()
    """GPU UUIDs the node gave the pod (device-plugin mode reads them back), when it reports them."""
    ready: bool = True
    """For a running pod: whether its main container passes its readiness probe (only Jupyter
    environments have one; a container that runs but fails it is reported running and not ready)."""
    started_at: dt.datetime | None = None
    """When the main container started, so a probe that has not run yet is told from one that failed."""


class ClusterUnavailableError(Exception):
    """The cluster could not be reached or answered 5xx; a temporary error, retried with backoff."""


class NoContainerError(ConflictError):
    """The environment has no running container to read a log from: no pod, or its container has not
    started. Raised when a log stream is opened, before any of it is sent."""


class ClusterDriver(Protocol):
    """Kubernetes, as RemoteGPU uses it."""

    def ensure_workload(self, spec: WorkloadSpec) -> bool:
        """Create the environment's objects unless they exist; True when something was created."""

    def observe_workload(self, environment_id: uuid.UUID) -> PodObservation:
        """The environment's pod as the cluster reports it now."""

    def delete_workload(self, environment_id: uuid.UUID, *, keep_volumes: bool) -> bool:
        """Delete the pod and service (and the volumes unless `keep_volumes`); True when something went."""

    def node_ready(self, node: str) -> bool:
        """Whether the node exists and reports Ready."""

    def ensure_environment_secret(
        self, environment_id: uuid.UUID, workspace_id: uuid.UUID, suffix: str, data: Mapping[str, str]
    ) -> bool:
        """Make the Secret `env-<id>-<suffix>` (SSH keys, the Jupyter token) hold exactly `data`: create it, or replace it when its
        content differs; True when something was written. Cheap when nothing changed (implementations
        remember what they wrote), so a step may call it on every resync. `delete_workload` removes it."""


@runtime_checkable
class InventorySource(Protocol):
    """A driver that can list its nodes, so hosts and GPUs are synced from the cluster."""

    def list_nodes(self) -> list[ObservedNode]:
        """Every node with its GPU capacity, labels and Ready condition."""


@runtime_checkable
class OwnedObjects(Protocol):
    """A driver that can list and delete the objects RemoteGPU created, for garbage collection."""

    def owned_objects(self) -> list[tuple[str, str, str, uuid.UUID]]:
        """(kind, namespace, name, environment id) of every object labelled as an environment's."""

    def delete_object(self, kind: str, namespace: str, name: str) -> bool:
        """Delete one of them; True when something was deleted."""


@runtime_checkable
class WorkloadWatcher(Protocol):
    """A driver that can report pod changes as they happen, so the reconciler looks at once."""

    def watch_workloads(self, on_change: Callable[[uuid.UUID], None], stop: threading.Event) -> None:
        """Call `on_change` with the environment id of every changed pod until `stop` is set."""


@runtime_checkable
class PullSecretConsumer(Protocol):
    """A driver that writes image pull Secrets per registry: the reconciler hands it its registries."""

    def use_pull_secrets(self, provider: Callable[[str], PullSecret | None]) -> None:
        """Take the pull Secret of each pod's image from `provider`."""
