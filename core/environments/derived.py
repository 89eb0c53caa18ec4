"""What an environment asks of the cluster, as functions of its typed spec.

The spec travels as `EnvironmentSpec` from the edge to the Pod (the stored JSONB is read back with
`spec_from_stored`); the resource requests the quota and placement count, the host ports it claims, its
volumes and the workload the driver creates are all derived here, so each default is the struct's and
no second reader of the spec grows defaults of its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from remotegpu.core.capacity.requests import ClaimedPort, PortRequest
from remotegpu.core.cluster.driver import DatasetMount, HomeMount, VolumeSpec, WorkloadSpec
from remotegpu.core.environments.spec import ACCESS_PORTS, AccessName, EnvironmentSpec, GpuRequest
from remotegpu.core.environments.states import PortPurpose, Protocol
from remotegpu.core.platform.quantities import parse_bytes, parse_cpu_millis

ANY_GPU_MODEL = "any"
"""A GPU model that means what no model means: any."""


@dataclass(frozen=True)
class ResourceRequests:
    """The resources a spec asks for, in the units the database stores."""

    gpu_count: int
    gpu_model: str | None
    cpu_millis: int
    memory_bytes: int
    storage_bytes: int


def gpu_request(spec: EnvironmentSpec) -> GpuRequest:
    """The spec's GPU request in its long form (`gpus: 2` is `count: 2`, any model)."""
    gpus = spec.resources.gpus
    return GpuRequest(count=gpus) if isinstance(gpus, int) else gpus


def resource_requests(spec: EnvironmentSpec) -> ResourceRequests:
    """GPUs, CPU, memory, and the storage of all its volumes."""
    gpus = gpu_request(spec)
    return ResourceRequests(
        gpu_count=gpus.count,
        gpu_model=None if gpus.model in (None, ANY_GPU_MODEL) else gpus.model,
        cpu_millis=parse_cpu_millis(spec.resources.cpu),
        memory_bytes=parse_bytes(spec.resources.memory),
        storage_bytes=sum(parse_bytes(volume.size) for volume in spec.volumes),
    )


def port_requests(spec: EnvironmentSpec) -> tuple[PortRequest, ...]:
    """Host-port requests: its `access` entries (from `ACCESS_PORTS`), then its `ports`, each with the
    purpose its claim keeps."""
    wanted = [access_port_request(kind) for kind in spec.access]
    wanted += [
        PortRequest(port.container, Protocol(port.protocol), PortPurpose(port.purpose), port.name)
        for port in spec.ports
    ]
    return tuple(wanted)


def access_port_request(kind: AccessName) -> PortRequest:
    """The host-port request of one `access` entry, from the one table (`ACCESS_PORTS`)."""
    port = ACCESS_PORTS[kind]
    return PortRequest(port.container_port, port.protocol, port.purpose)


def volume_specs(spec: EnvironmentSpec) -> tuple[VolumeSpec, ...]:
    """Its persistent volumes, sizes in bytes."""
    return tuple(VolumeSpec(v.name, parse_bytes(v.size), v.mount) for v in spec.volumes)


@dataclass(frozen=True)
class PodPlacement:
    """Where an environment was placed and what it claimed there (the allocation, not the spec)."""

    node: str
    ports: tuple[ClaimedPort, ...]
    gpu_count: int
    cpu_millis: int
    memory_bytes: int
    gpu_uuids: tuple[str, ...] = ()
    """Device UUIDs of the claimed GPUs, where their node reported them."""


def workload_spec(
    environment_id: uuid.UUID,
    workspace_id: uuid.UUID,
    generation: int,
    spec: EnvironmentSpec,
    placement: PodPlacement,
    *,
    image: str | None = None,
    datasets: tuple[DatasetMount, ...] = (),
    home: HomeMount | None = None,
) -> WorkloadSpec:
    """The objects the driver creates for one generation: the spec's image, command, volumes and
    environment, on the placement's node with what it claimed; `image`: the pinned reference to run
    instead of the spec's tag; `datasets`: where its datasets are mounted from (`core.datasets.attach`); `home`: its user's home
    volume."""
    return WorkloadSpec(
        environment_id=environment_id,
        workspace_id=workspace_id,
        generation=generation,
        node=placement.node,
        image=image or spec.image,
        command=tuple(spec.command),
        gpu_count=placement.gpu_count,
        cpu_millis=placement.cpu_millis,
        memory_bytes=placement.memory_bytes,
        ports=placement.ports,
        volumes=volume_specs(spec),
        env=tuple(sorted(spec.env.items())),
        gpu_uuids=placement.gpu_uuids,
        datasets=datasets,
        home=home,
    )
