"""What an environment asks for is derived from its typed spec, with the struct's defaults."""

from __future__ import annotations

import typing
import uuid

import msgspec

from remotegpu.core.capacity.requests import ClaimedPort
from remotegpu.core.cluster.driver import VolumeSpec
from remotegpu.core.environments.derived import (
    PodPlacement,
    port_requests,
    resource_requests,
    workload_spec,
)
from remotegpu.core.environments.spec import (
    ACCESS_PORTS,
    AccessName,
    Resources,
    parse_spec,
    spec_from_stored,
    spec_to_dict,
)
from remotegpu.core.environments.states import PortPurpose, Protocol
from remotegpu.core.platform.quantities import parse_bytes, parse_cpu_millis

GIB = 1 << 30


def test_every_access_kind_has_its_port_in_the_one_table() -> None:
    assert set(ACCESS_PORTS) == set(typing.get_args(AccessName))
    assert {kind: port.purpose.value for kind, port in ACCESS_PORTS.items()} == {
        "ssh": "ssh",
        "jupyter": "jupyter",
    }


def test_spec_access_and_ports_become_port_requests_with_their_purpose() -> None:
    spec = parse_spec(
        {
            "name": "train",
            "image": "pytorch:24.05",
            "access": ["ssh", "jupyter"],
            "ports": [{"container": 6006, "purpose": "http", "name": "tensorboard"}],
        }
    )
    assert [(p.container_port, p.purpose, p.name) for p in port_requests(spec)] == [
        (22, PortPurpose.SSH, None),
        (8888, PortPurpose.JUPYTER, None),
        (6006, PortPurpose.HTTP, "tensorboard"),
    ]


def test_a_custom_port_22_keeps_its_declared_purpose() -> None:
    spec = parse_spec({"name": "web", "image": "nginx:1", "ports": [{"container": 22, "purpose": "http"}]})
    assert [(p.container_port, p.purpose) for p in port_requests(spec)] == [(22, PortPurpose.HTTP)]


def test_resources_left_out_are_requested_at_the_specs_defaults() -> None:
    stored = spec_to_dict(parse_spec({"name": "small", "image": "pytorch:24.05"}))
    assert "resources" not in stored, "defaults are left out of the stored form"
    requests = resource_requests(spec_from_stored(stored))
    defaults = Resources()
    assert (requests.gpu_count, requests.gpu_model) == (0, None)
    assert requests.cpu_millis == parse_cpu_millis(defaults.cpu) == 1000
    assert requests.memory_bytes == parse_bytes(defaults.memory) == 4 * GIB
    assert requests.storage_bytes == 0


def test_resource_requests_in_the_units_the_database_stores() -> None:
    spec = parse_spec(
        {
            "name": "train",
            "image": "pytorch:24.05",
            "resources": {"gpus": 2, "cpu": "500m", "memory": "64Gi"},
            "volumes": [
                {"name": "data", "size": "100Gi", "mount": "/data"},
                {"name": "cache", "size": "1Gi", "mount": "/cache"},
            ],
        }
    )
    requests = resource_requests(spec)
    assert (requests.gpu_count, requests.gpu_model) == (2, None)
    assert (requests.cpu_millis, requests.memory_bytes, requests.storage_bytes) == (500, 64 * GIB, 101 * GIB)


def test_the_stored_spec_reads_back_as_the_struct_it_was() -> None:
    spec = parse_spec(
        {
            "name": "train",
            "image": "pytorch:24.05",
            "resources": {"gpus": {"count": 2, "model": "H100"}},
            "env": {"WANDB_MODE": "offline"},
        }
    )
    text = msgspec.json.encode(spec_to_dict(spec))
    assert spec_from_stored(text) == spec_from_stored(msgspec.json.decode(text)) == spec


def test_the_workload_is_the_spec_on_its_placement() -> None:
    spec = parse_spec(
        {
            "name": "train",
            "image": "pytorch:24.05",
            "command": ["python", "train.py"],
            "env": {"B": "2", "A": "1"},
            "volumes": [{"name": "data", "size": "10Gi", "mount": "/workspace"}],
        }
    )
    ssh = ClaimedPort(22, 30000, Protocol.TCP, PortPurpose.SSH)
    placement = PodPlacement("gpu-node-7", (ssh,), gpu_count=1, cpu_millis=2000, memory_bytes=GIB)
    environment, workspace = uuid.uuid4(), uuid.uuid4()
    workload = workload_spec(environment, workspace, 3, spec, placement)
    assert (workload.environment_id, workload.workspace_id, workload.generation) == (
        environment,
        workspace,
        3,
    )
    assert (workload.node, workload.image, workload.command) == (
        "gpu-node-7",
        "pytorch:24.05",
        ("python", "train.py"),
    )
    assert (workload.gpu_count, workload.cpu_millis, workload.memory_bytes) == (1, 2000, GIB)
    assert workload.ports == (ssh,)
    assert workload.volumes == (VolumeSpec("data", 10 * GIB, "/workspace"),)
    assert workload.env == (("A", "1"), ("B", "2"))
