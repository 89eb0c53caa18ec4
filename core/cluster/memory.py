"""An in-memory cluster that behaves like one: for tests, benchmarks and `remotegpu dev`.

Pods start asynchronously (Pending until `start_delay` has passed on `core.platform.clock`), a second create of
the same name is a conflict that the driver resolves to "already exists", and faults can be injected:
pods that vanish, images that fail to pull, nodes that go NotReady, and an API that is unavailable.
Thread-safe, since reconciler workers call it concurrently.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from remotegpu.core.cluster.driver import (
    ClusterUnavailableError,
    DatasetSyncJob,
    NoContainerError,
    PodObservation,
    PodState,
    SyncObservation,
    SyncState,
    WorkloadSpec,
    workload_name,
)
from remotegpu.core.cluster.manifests import JUPYTER_SECRET_SUFFIX, environment_secret_name, wants_jupyter
from remotegpu.core.platform import clock


@dataclass
class _Pod:
    spec: WorkloadSpec
    created_at: dt.datetime
    failure: tuple[str, str, bool] | None = None


@dataclass
class InMemoryCluster:
    """A fake cluster with the semantics the reconciler depends on."""

    nodes: set[str] = field(default_factory=set)
    start_delay: dt.timedelta = dt.timedelta(seconds=0)
    pods: dict[str, _Pod] = field(default_factory=dict)
    volumes: dict[str, set[str]] = field(default_factory=dict)
    """Environment name -> volume names; they outlive the pod until a delete without keep_volumes."""
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    """Secret name -> its data (the environments' Secrets: `env-<id>-ssh`, `env-<id>-jupyter`); they go
    with the pod."""
    secret_writes: Counter[str] = field(default_factory=Counter)
    """Creates and replacements per Secret name: an unchanged Secret is never written again."""
    creates: Counter[str] = field(default_factory=Counter)
    """Successful creates per object name: more than one for a live name would be a duplicate."""
    conflicts: int = 0
    not_ready: set[str] = field(default_factory=set)
    unavailable: bool = False
    without_jupyter: set[str] = field(default_factory=set)
    """Images that have no `jupyter`: their Jupyter pods run but fail the readiness probe."""
    homes: set[str] = field(default_factory=set)
    """Home volume claims: made with a user's first environment, never deleted with one."""
    sync_jobs: dict[str, DatasetSyncJob] = field(default_factory=dict)
    """Dataset sync Jobs by name; they complete at once unless their source is in `failing_syncs`."""
    failing_syncs: dict[str, str] = field(default_factory=dict)
    """S3 source → the message its sync Job fails with."""
    _failing_images: dict[str, tuple[str, str, bool]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the driver protocol ------------------------------------------------------------------
    def ensure_workload(self, spec: WorkloadSpec) -> bool:
        """Create the pod and its volumes; a conflict on an existing name means it already exists."""
        with self._lock:
            self._check_available()
            if spec.name in self.pods:
                self.conflicts += 1
                return False
            self.pods[spec.name] = _Pod(spec, clock.now(), self._failing_images.get(spec.image))
            self.creates[spec.name] += 1
            self.volumes.setdefault(spec.name, set()).update(volume.name for volume in spec.volumes)
            if spec.home is not None:
                self.homes.add(spec.home.claim)
            return True

    def observe_workload(self, environment_id: uuid.UUID) -> PodObservation:
        """Pending until the start delay has passed on its node, then Running, unless a fault says otherwise."""
        with self._lock:
            self._check_available()
            pod = self.pods.get(workload_name(environment_id))
            if pod is None:
                return PodObservation(PodState.MISSING)
            node, generation = pod.spec.node, pod.spec.generation
            if pod.failure is not None:
                reason, message, retryable = pod.failure
                return PodObservation(PodState.FAILED, reason, message, node, generation, retryable)
            jupyter = wants_jupyter(pod.spec)
            secret = environment_secret_name(environment_id, JUPYTER_SECRET_SUFFIX)
            if jupyter and secret not in self.secrets:  # as a kubelet: a secretKeyRef to nothing
                message = f'secret "{secret}" not found'
                return PodObservation(
                    PodState.FAILED, "CreateContainerConfigError", message, node, generation, False
                )
            started_at = pod.created_at + self.start_delay
            if node in self.not_ready or clock.now() < started_at:
                return PodObservation(PodState.PENDING, "ContainerCreating", "", node, generation)
            ready = not (jupyter and pod.spec.image in self.without_jupyter)
            return PodObservation(
                PodState.RUNNING, None, "", node, generation, ready=ready, started_at=started_at
            )

    def delete_workload(self, environment_id: uuid.UUID, *, keep_volumes: bool) -> bool:
        """Delete the pod (and the volumes unless kept); deleting what is gone is not an error."""
        name = workload_name(environment_id)
        with self._lock:
            self._check_available()
            removed = self.pods.pop(name, None) is not None
            for secret in [secret for secret in self.secrets if secret.startswith(f"{name}-")]:
                del self.secrets[secret]
                removed = True
            if not keep_volumes and name in self.volumes:
                del self.volumes[name]
                removed = True
            if not keep_volumes:
                for job in [job for job in self.sync_jobs if job.startswith(f"{name}-")]:
                    del self.sync_jobs[job]
                    removed = True
            return removed

    def ensure_dataset_sync(self, job: DatasetSyncJob) -> SyncObservation:
        """Record the Job and its claim (kept with the environment's volumes); done at once, or failed."""
        with self._lock:
            self._check_available()
            if job.name not in self.sync_jobs:
                self.sync_jobs[job.name] = job
                self.creates[job.name] += 1
                self.volumes.setdefault(job.name.rsplit("-ds-", 1)[0], set()).add(job.name)
            failure = self.failing_syncs.get(job.source)
            if failure is not None:
                return SyncObservation(SyncState.FAILED, failure)
            return SyncObservation(SyncState.SUCCEEDED)

    def node_ready(self, node: str) -> bool:
        """A node is ready when it exists and no fault marks it NotReady."""
        with self._lock:
            self._check_available()
            return node in self.nodes and node not in self.not_ready

    def ensure_environment_secret(
        self, environment_id: uuid.UUID, workspace_id: uuid.UUID, suffix: str, data: Mapping[str, str]
    ) -> bool:
        """Create or replace the Secret when its data differs; True when it was written."""
        name = environment_secret_name(environment_id, suffix)
        with self._lock:
            self._check_available()
            if self.secrets.get(name) == dict(data):
                return False
            self.secrets[name] = dict(data)
            self.secret_writes[name] += 1
            return True

    def stream_logs(
        self, environment_id: uuid.UUID, *, follow: bool = False, tail_lines: int | None = None
    ) -> Iterator[str]:
        """What a simulated container prints: its image and command, one line each. `follow` ends at
        once, as for a container that has exited. No pod, or one whose image failed to pull, raises
        `NoContainerError` before this returns, as the Kubernetes driver does."""
        with self._lock:
            pod = self.pods.get(workload_name(environment_id))
        if pod is None:
            raise NoContainerError("the environment has no running container (it has no pod)")
        if pod.failure is not None:
            raise NoContainerError("the environment has no running container (its container has not started)")
        lines = [
            f"container started from {pod.spec.image}",
            f"command: {' '.join(pod.spec.command) or '(image default)'}",
        ]
        return iter(lines[-tail_lines:] if tail_lines else lines)

    # -- fault injection ----------------------------------------------------------------------
    def vanish(self, environment_id: uuid.UUID) -> None:
        """The pod disappears (evicted, deleted by hand) while its node stays healthy."""
        with self._lock:
            self.pods.pop(workload_name(environment_id), None)

    def fail_image(self, image: str, reason: str = "ImagePullBackOff", *, retryable: bool = True) -> None:
        """Pods created from `image` from now on fail with `reason`."""
        with self._lock:
            self._failing_images[image] = (reason, f"image {image!r} could not be pulled", retryable)

    def heal_image(self, image: str) -> None:
        """Pods created from `image` from now on pull it fine again."""
        with self._lock:
            self._failing_images.pop(image, None)

    def set_node_ready(self, node: str, ready: bool) -> None:
        """Mark a node Ready or NotReady."""
        with self._lock:
            (self.not_ready.discard if ready else self.not_ready.add)(node)

    def live_pods(self) -> list[str]:
        """Names of the pods that exist now."""
        with self._lock:
            return sorted(self.pods)

    def _check_available(self) -> None:
        if self.unavailable:
            raise ClusterUnavailableError("cluster API unavailable (injected fault)")
