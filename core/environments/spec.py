"""The environment spec as users write it (YAML through the CLI, JSON over REST), as msgspec structs.

One definition serves three purposes: decoding with every unknown field refused (the error names it and
where it is), the stored form (`spec_to_dict`, defaults left out, so a stored spec reads like what the
user wrote; `spec_from_stored` reads it back into the struct, so the defaults live here and nowhere
else), and the published JSON Schema (`spec_json_schema`). Checks msgspec cannot express (sizes,
durations, duplicate names) run in `parse_spec` and raise `SpecError` naming the field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal

import msgspec

from remotegpu.core.environments.states import PortPurpose, Protocol
from remotegpu.core.platform.errors import InvalidInputError
from remotegpu.core.platform.quantities import BIGINT_MAX, parse_bytes, parse_cpu_millis, parse_duration
from remotegpu.core.platform.validation_messages import field_and_message

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
"""Names of environments, workspaces and volumes: Kubernetes DNS labels."""

Name = Annotated[
    str, msgspec.Meta(pattern=DNS_LABEL, description="lower-case DNS label, at most 63 characters")
]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
EnvName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256)]
Quantity = Annotated[str, msgspec.Meta(description="Kubernetes quantity, e.g. 128Gi", examples=["128Gi"])]
Duration = Annotated[str, msgspec.Meta(description="Go-style duration, e.g. 30m or 24h", examples=["30m"])]
AccessName = Literal["ssh", "jupyter"]
"""An `access` entry: a way in that RemoteGPU knows how to publish (see `ACCESS_PORTS`)."""
GpuModel = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="e.g. H100")]
"""A GPU model name (`nvidia.com/gpu.product`), as long as the columns that hold it allow."""

MAX_CPU_MILLIS = 4096 * 1000
"""The most CPU one environment may ask for (4096 cores): more than any host has, far below the column's
range."""


@dataclass(frozen=True)
class AccessPort:
    """The container port an `access` entry publishes, and the purpose its claimed host port keeps."""

    container_port: int
    protocol: Protocol
    purpose: PortPurpose


ACCESS_PORTS: Mapping[AccessName, AccessPort] = MappingProxyType(
    {
        "ssh": AccessPort(22, Protocol.TCP, PortPurpose.SSH),
        "jupyter": AccessPort(8888, Protocol.TCP, PortPurpose.JUPYTER),
    }
)
"""The one table of access ports: access kind → container port, protocol, purpose."""


class SpecError(InvalidInputError):
    """A spec that cannot be accepted; `field` is its JSON path (`$.resources.memory`)."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, frozen=True):
    """Unknown fields are errors; defaults are left out of the stored form."""


class GpuRequest(_Strict, frozen=True):
    """How many GPUs, and of which model (`nvidia.com/gpu.product`); no model means any."""

    count: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    model: GpuModel | None = None


class Resources(_Strict, frozen=True):
    """What the environment asks of one host."""

    gpus: GpuRequest | Annotated[int, msgspec.Meta(ge=0, le=64)] = GpuRequest()
    cpu: Annotated[
        str | int | float,
        msgspec.Meta(description="cores (`16`, `0.5`) or millicores (`500m`), at most 4096"),
    ] = 1
    memory: Quantity = "4Gi"


class PortSpec(_Strict, frozen=True):
    """A container port to publish on a host port."""

    container: Port
    purpose: Literal["http", "custom"] = "custom"
    name: Annotated[str, msgspec.Meta(pattern=DNS_LABEL, max_length=15)] | None = None
    protocol: Literal["tcp", "udp"] = "tcp"


class VolumeSpec(_Strict, frozen=True):
    """A persistent volume: kept when the environment stops, removed when it is deleted."""

    name: Name
    size: Quantity
    mount: Annotated[str, msgspec.Meta(pattern=r"^/", description="absolute path in the container")]


class DatasetSpec(_Strict, frozen=True):
    """A dataset of the workspace (`remotegpu datasets list`) mounted into the environment: read-only
    unless `read_only: false` (then writes go to the environment's own copy of an S3 dataset, and into
    the dataset itself for a volume or local one)."""

    name: Name
    mount: Annotated[str, msgspec.Meta(pattern=r"^/", description="absolute path in the container")]
    read_only: bool = True


class PolicySpec(_Strict, frozen=True):
    """Automatic stop rules."""

    idle_stop_after: Duration | None = None
    max_duration: Duration | None = None


class EnvironmentSpec(_Strict, frozen=True):
    """A GPU environment as its user wants it to be."""

    name: Name
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    kind: Literal["environment"] = "environment"
    workspace: Name | None = None
    command: list[str] = []
    resources: Resources = Resources()
    access: list[AccessName] = []
    ports: list[PortSpec] = []
    env: dict[EnvName, str] = {}
    volumes: list[VolumeSpec] = []
    datasets: list[DatasetSpec] = []
    policies: PolicySpec = PolicySpec()
    state: Literal["running", "stopped"] = "running"


def parse_spec(data: Any) -> EnvironmentSpec:
    """Validate a decoded YAML/JSON document as an environment spec, normalised (`gpus: 2` → `count: 2`).

    Raises `SpecError` naming the field and what to write instead.
    """
    try:
        spec = msgspec.convert(data, EnvironmentSpec, strict=False)
    except msgspec.ValidationError as error:
        raise SpecError(*field_and_message(str(error), EnvironmentSpec, data)) from None
    return check_spec(spec)


def check_spec(spec: EnvironmentSpec) -> EnvironmentSpec:
    """The checks msgspec's types cannot express, and normalisation; SpecError names the field."""
    _check_values(spec)
    if isinstance(spec.resources.gpus, int):
        spec = msgspec.structs.replace(
            spec,
            resources=msgspec.structs.replace(spec.resources, gpus=GpuRequest(count=spec.resources.gpus)),
        )
    return spec


def _check_values(spec: EnvironmentSpec) -> None:
    checks: list[tuple[str, Any, Any]] = [
        ("$.resources.cpu", lambda cpu: parse_cpu_millis(cpu, at_most=MAX_CPU_MILLIS), spec.resources.cpu),
        ("$.resources.memory", parse_bytes, spec.resources.memory),
    ]
    checks += [(f"$.volumes[{i}].size", parse_bytes, v.size) for i, v in enumerate(spec.volumes)]
    for name in ("idle_stop_after", "max_duration"):
        value = getattr(spec.policies, name)
        if value is not None:
            checks.append((f"$.policies.{name}", _policy_duration, value))
    for field, parse, value in checks:
        try:
            parse(value)
        except ValueError as error:
            raise SpecError(field, str(error)) from None
    if sum(parse_bytes(v.size) for v in spec.volumes) > BIGINT_MAX:  # the environment's storage column
        raise SpecError("$.volumes", f"the sizes add up to more than {BIGINT_MAX} bytes (just under 8Ei)")
    _refuse_duplicates("$.volumes", [v.name for v in spec.volumes], "name")
    _refuse_duplicates("$.volumes", [v.mount for v in spec.volumes], "mount")
    _refuse_duplicates("$.datasets", [d.name for d in spec.datasets], "name")
    _refuse_duplicates(
        "$.datasets", [v.mount for v in spec.volumes] + [d.mount for d in spec.datasets], "mount"
    )
    _refuse_duplicates("$.access", list(spec.access), "entry")
    ports = [(p.container, p.protocol) for p in spec.ports] + [
        (ACCESS_PORTS[a].container_port, ACCESS_PORTS[a].protocol.value) for a in spec.access
    ]
    _refuse_duplicates("$.ports", [f"{port}/{protocol}" for port, protocol in ports], "container port")
    _refuse_duplicates("$.ports", [p.name for p in spec.ports if p.name], "name")


MIN_POLICY_DURATION = dt.timedelta(minutes=1)


def _policy_duration(value: str) -> dt.timedelta:
    """A stop policy's duration: at least a minute (policies are applied every few seconds, and a
    shorter one would stop an environment before it could be used)."""
    duration = parse_duration(value)
    if duration < MIN_POLICY_DURATION:
        raise ValueError(f"must be at least 1m, not {value}")
    return duration


def _refuse_duplicates(field: str, values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise SpecError(field, f"{what} {value!r} appears twice; each must be unique")
        seen.add(value)


def spec_to_dict(spec: EnvironmentSpec) -> dict[str, Any]:
    """The stored (and diffed) form: plain data, defaults left out; `workspace`, `kind` and `state` live in
    their own columns."""
    data: dict[str, Any] = msgspec.to_builtins(spec)
    for key in ("workspace", "kind", "state"):
        data.pop(key, None)
    return data


def spec_from_stored(stored: dict[str, Any] | str | bytes) -> EnvironmentSpec:
    """The stored spec (`environments.spec`, as JSON text or as decoded JSONB) read back as the struct.

    What is stored was checked when it was written, so this only converts; JSON text is decoded straight
    into the struct (the reconciler's hot path reads the column as text for that). `workspace`, `kind`
    and `state` are not stored (they live in columns): read back, they are the defaults.
    """
    if isinstance(stored, dict):
        return msgspec.convert(stored, EnvironmentSpec)
    return msgspec.json.decode(stored, type=EnvironmentSpec)


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec, as published in the README and served by the API."""
    schema: dict[str, Any] = msgspec.json.schema(EnvironmentSpec)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "RemoteGPU environment spec"
    return schema
