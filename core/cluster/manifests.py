"""Kubernetes manifests for an environment: pod, service, volumes' claims, and the workspace's network policy.

Names are deterministic (`env-<id>`, `env-<id>-<volume>`, `ws-<id>-isolation`) so a repeated create
finds the existing object. Every object carries the owner labels RemoteGPU's garbage collector and
selectors use. The pod is pinned to the chosen node and gets its GPUs in one of two binding modes:
`device-plugin` asks for them as `nvidia.com/gpu` (the device plugin picks the devices; RemoteGPU reads
back which); `device-id` names the claimed GPUs by UUID in `NVIDIA_VISIBLE_DEVICES` under the `nvidia`
RuntimeClass and asks the device plugin for nothing (nodes dedicated to RemoteGPU, whose GPUs it
tracks through its host agent). It maps its claimed host ports, mounts a
memory-backed `/dev/shm` sized to the spec (PyTorch data loaders fail at the 64 MiB default), and runs
with a restrictive security context.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from remotegpu.core.cluster.driver import DatasetSyncJob, VolumeSpec, WorkloadSpec, workload_name
from remotegpu.core.environments.states import PortPurpose

ENVIRONMENT_LABEL = "remotegpu.io/environment"
WORKSPACE_LABEL = "remotegpu.io/workspace"
GENERATION_LABEL = "remotegpu.io/generation"
MANAGED_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "remotegpu"
GPU_RESOURCE = "nvidia.com/gpu"
ALLOCATED_GPUS_ANNOTATION = "remotegpu.io/allocated-gpus"
GPU_BINDINGS = ("device-plugin", "device-id")
VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"
NVIDIA_RUNTIME_CLASS = "nvidia"

Manifest = dict[str, Any]


def labels_for(spec: WorkloadSpec) -> dict[str, str]:
    """The owner labels every object of an environment carries."""
    return {
        MANAGED_LABEL: MANAGER,
        ENVIRONMENT_LABEL: str(spec.environment_id),
        WORKSPACE_LABEL: str(spec.workspace_id),
        GENERATION_LABEL: str(spec.generation),
    }


def volume_claim_name(environment_id: uuid.UUID, volume: str) -> str:
    """Deterministic PVC name of one volume of an environment."""
    return f"{workload_name(environment_id)}-{volume}"


def _memory_quantity(size_bytes: int) -> str:
    return f"{max(size_bytes // (1 << 20), 1)}Mi"


ACCESS_IMAGE = "ghcr.io/remotegpu/access:1"
"""Image whose `/access` folder holds a static sshd, its helpers and `bin/entrypoint`; configurable."""
ACCESS_MOUNT = "/opt/remotegpu"


def wants_ssh(spec: WorkloadSpec) -> bool:
    """Whether the environment asked for SSH access: a claimed port whose purpose is SSH (a custom port 22
    is the user's own business)."""
    return any(port.purpose is PortPurpose.SSH for port in spec.ports)


JUPYTER_SECRET_SUFFIX = "jupyter"  # noqa: S105 - a name suffix, not a password
"""The environment's Jupyter token lives in the Secret `env-<id>-jupyter`."""
JUPYTER_TOKEN_KEY = "JUPYTER_TOKEN"  # noqa: S105 - a key name
JUPYTER_PORT_VARIABLE = "REMOTEGPU_JUPYTER_PORT"
JUPYTER_UNAVAILABLE_MARKER = "/run/remotegpu/jupyter-unavailable"
"""The access entrypoint writes this file when the image has no `jupyter`; the readiness probe fails on it."""
JUPYTER_PROBE_PERIOD_SECONDS = 5


def wants_jupyter(spec: WorkloadSpec) -> bool:
    """Whether the environment asked for Jupyter: a claimed port whose purpose is Jupyter."""
    return any(port.purpose is PortPurpose.JUPYTER for port in spec.ports)


def environment_secret_name(environment_id: uuid.UUID, suffix: str) -> str:
    """Deterministic name of one of an environment's Secrets (`env-<id>-jupyter`, `env-<id>-ssh`)."""
    return f"{workload_name(environment_id)}-{suffix}"


def _jupyter_container_settings(spec: WorkloadSpec) -> Manifest:
    """The token (from the environment's Secret, never in the pod spec), the port, and a readiness probe
    that fails when the entrypoint found no `jupyter` in the image, so the pod itself reports it."""
    port = next(port for port in spec.ports if port.purpose is PortPurpose.JUPYTER)
    secret = environment_secret_name(spec.environment_id, JUPYTER_SECRET_SUFFIX)
    return {
        "env": [
            {"name": JUPYTER_PORT_VARIABLE, "value": str(port.container_port)},
            {
                "name": JUPYTER_TOKEN_KEY,
                "valueFrom": {"secretKeyRef": {"name": secret, "key": JUPYTER_TOKEN_KEY}},
            },
        ],
        "readinessProbe": {
            "exec": {"command": ["sh", "-c", f"test ! -e {JUPYTER_UNAVAILABLE_MARKER}"]},
            "periodSeconds": JUPYTER_PROBE_PERIOD_SECONDS,
        },
    }


def _resources(spec: WorkloadSpec, *, gpus_by_count: bool) -> Manifest:
    """Requests and limits: CPU and memory as claimed; GPUs as a `nvidia.com/gpu` count unless they are
    bound by device id."""
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if spec.gpu_count and gpus_by_count:
        limits[GPU_RESOURCE] = str(spec.gpu_count)
    if spec.cpu_millis:
        requests["cpu"] = limits["cpu"] = f"{spec.cpu_millis}m"
    if spec.memory_bytes:
        requests["memory"] = limits["memory"] = _memory_quantity(spec.memory_bytes)
    return {"limits": limits, "requests": requests}


class GpuBindingError(ValueError):
    """`device-id` binding cannot pin the pod: the claimed GPUs' UUIDs are not all known."""


def _device_id_binding(spec: WorkloadSpec) -> Manifest:
    """The container's `env` entry pinning it to the claimed GPUs (or to none). Set in `env`, which wins
    over the spec's variables (`envFrom`), so a user's own `NVIDIA_VISIBLE_DEVICES` cannot widen it;
    `void` for a pod without GPUs, because CUDA images default to `all`."""
    if spec.gpu_count and len(spec.gpu_uuids) != spec.gpu_count:
        raise GpuBindingError(
            f"device-id binding needs the UUIDs of all {spec.gpu_count} claimed GPUs of {spec.node}, known"
            f" for {len(spec.gpu_uuids)}: run RemoteGPU's host agent on the node (remotegpu agent)"
        )
    return {"name": VISIBLE_DEVICES, "value": ",".join(sorted(spec.gpu_uuids)) if spec.gpu_count else "void"}


def _storage(spec: WorkloadSpec) -> tuple[list[Manifest], list[Manifest]]:
    """The mounts and volumes of the environment's persistent volumes and of its datasets (read-only
    unless the spec says otherwise; a local dataset is its folder of the shared dataset volume)."""
    volume_mounts: list[Manifest] = []
    volumes: list[Manifest] = []
    for volume in spec.volumes:
        volume_mounts.append({"name": f"vol-{volume.name}", "mountPath": volume.mount})
        volumes.append(
            {
                "name": f"vol-{volume.name}",
                "persistentVolumeClaim": {"claimName": volume_claim_name(spec.environment_id, volume.name)},
            }
        )
    for index, dataset in enumerate(spec.datasets):  # by index: a dataset's name may fill a whole label
        mount: Manifest = {
            "name": f"dataset-{index}",
            "mountPath": dataset.mount,
            "readOnly": dataset.read_only,
        }
        if dataset.sub_path:
            mount["subPath"] = dataset.sub_path
        volume_mounts.append(mount)
        volumes.append(
            {
                "name": f"dataset-{index}",
                "persistentVolumeClaim": {"claimName": dataset.claim, "readOnly": dataset.read_only},
            }
        )
    if spec.home is not None:
        volume_mounts.append({"name": "home", "mountPath": spec.home.mount})
        volumes.append({"name": "home", "persistentVolumeClaim": {"claimName": spec.home.claim}})
    return volume_mounts, volumes


HOME_USER_LABEL = "remotegpu.io/home-user"


def home_claim_manifest(spec: WorkloadSpec, storage_class: str | None) -> Manifest:
    """A user's home volume in a workspace: labelled as the workspace's and the user's, never as an
    environment's, so no environment's delete or garbage collection removes it."""
    assert spec.home is not None
    claim_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": _memory_quantity(spec.home.size_bytes)}},
    }
    if storage_class:
        claim_spec["storageClassName"] = storage_class
    labels = {
        MANAGED_LABEL: MANAGER,
        WORKSPACE_LABEL: str(spec.workspace_id),
        HOME_USER_LABEL: str(spec.home.user_id),
    }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": spec.home.claim, "labels": labels},
        "spec": claim_spec,
    }


def pod_manifest(
    spec: WorkloadSpec,
    *,
    shm_fraction: float = 0.5,
    access_image: str = ACCESS_IMAGE,
    pull_secret: bool | str = False,
    gpu_binding: str = "device-plugin",
) -> Manifest:
    """The environment's pod, pinned to `spec.node`.

    With SSH access, an init container copies a static sshd from `access_image` into a shared volume,
    and the main container starts through its entrypoint, which runs sshd (keys from the optional
    secret `env-<id>-ssh`) and then execs the user's command: sshd in any image, no root image changes.
    With Jupyter access the same entrypoint starts `jupyter lab` with the token of `env-<id>-jupyter`.
    `gpu_binding` chooses how it gets its GPUs (see the module); `device-id` raises `GpuBindingError`
    when the claimed GPUs' UUIDs are not all known.
    """
    if gpu_binding not in GPU_BINDINGS:
        raise ValueError(f"gpu_binding: {gpu_binding!r} is not one of {', '.join(GPU_BINDINGS)}")
    by_device_id = gpu_binding == "device-id"
    shm_bytes = int(spec.memory_bytes * shm_fraction) if spec.memory_bytes else 1 << 30
    volume_mounts: list[Manifest] = [{"name": "dshm", "mountPath": "/dev/shm"}]  # noqa: S108 - the container's shm
    volumes: list[Manifest] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _memory_quantity(shm_bytes)}}
    ]
    storage_mounts, storage_volumes = _storage(spec)
    volume_mounts += storage_mounts
    volumes += storage_volumes
    container: Manifest = {
        "name": "main",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "resources": _resources(spec, gpus_by_count=not by_device_id),
        "ports": [
            {
                "name": f"p{port.container_port}-{port.protocol.value}"[:15],
                "containerPort": port.container_port,
                "hostPort": port.host_port,
                "protocol": port.protocol.value.upper(),
            }
            for port in spec.ports
        ],
        # the spec's variables live in a ConfigMap, so `kubectl describe` keeps them out of the pod spec
        "envFrom": [{"configMapRef": {"name": env_config_map_name(spec.environment_id)}}] if spec.env else [],
        "volumeMounts": volume_mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if spec.command:
        container["command"] = list(spec.command)
    if by_device_id:
        container["env"] = [_device_id_binding(spec)]
    if wants_jupyter(spec):
        jupyter = _jupyter_container_settings(spec)
        container["env"] = container.get("env", []) + jupyter.pop("env")
        container.update(jupyter)
    init_containers: list[Manifest] = []
    if wants_ssh(spec) or wants_jupyter(spec):
        init_containers.append(
            {
                "name": "access-init",
                "image": access_image,
                "command": ["cp", "-a", "/access/.", ACCESS_MOUNT],
                "volumeMounts": [{"name": "access", "mountPath": ACCESS_MOUNT}],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        )
        if wants_ssh(spec):
            # sshd started as root separates each login's pre-authentication into a chroot (/run/sshd)
            container["securityContext"]["capabilities"]["add"].append("SYS_CHROOT")
        else:  # Jupyter only: the entrypoint starts no sshd
            container.setdefault("env", []).append({"name": "REMOTEGPU_SSH", "value": "0"})
        container["command"] = [
            f"{ACCESS_MOUNT}/bin/entrypoint",
            "--",
            *(spec.command or ("sleep", "infinity")),
        ]
        volume_mounts.append({"name": "access", "mountPath": ACCESS_MOUNT})
        volumes.append({"name": "access", "emptyDir": {}})
    if wants_ssh(spec):
        volume_mounts.append({"name": "ssh-keys", "mountPath": f"{ACCESS_MOUNT}/keys", "readOnly": True})
        volumes.append(
            {
                "name": "ssh-keys",
                "secret": {
                    "secretName": environment_secret_name(spec.environment_id, "ssh"),
                    "optional": True,
                },
            }
        )
    pod_spec_extra: Manifest = {"initContainers": init_containers} if init_containers else {}
    if pull_secret:  # True: the platform-wide Secret; a name: its registry's (or project's) own
        name = PULL_SECRET_NAME if pull_secret is True else pull_secret
        pod_spec_extra["imagePullSecrets"] = [{"name": name}]
    if by_device_id and spec.gpu_count:
        pod_spec_extra["runtimeClassName"] = NVIDIA_RUNTIME_CLASS
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": spec.name, "labels": labels_for(spec)},
        "spec": {
            "nodeName": spec.node,
            "restartPolicy": "Always",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [container],
            **pod_spec_extra,
            "volumes": volumes,
        },
    }


def service_manifest(spec: WorkloadSpec) -> Manifest:
    """A ClusterIP service in front of the pod's ports (or a headless one when it has none)."""
    ports = [
        {
            "name": f"p{port.container_port}-{port.protocol.value}"[:15],
            "port": port.container_port,
            "targetPort": port.container_port,
            "protocol": port.protocol.value.upper(),
        }
        for port in spec.ports
    ]
    service_spec: Manifest = {"type": "ClusterIP", "selector": {ENVIRONMENT_LABEL: str(spec.environment_id)}}
    if ports:
        service_spec["ports"] = ports
    else:
        service_spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "labels": labels_for(spec)},
        "spec": service_spec,
    }


def volume_claim_manifest(spec: WorkloadSpec, volume: VolumeSpec, storage_class: str | None) -> Manifest:
    """A PVC for one persistent volume; kept on stop, deleted with the environment."""
    claim_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": _memory_quantity(volume.size_bytes or (1 << 30))}},
    }
    if storage_class:
        claim_spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": volume_claim_name(spec.environment_id, volume.name), "labels": labels_for(spec)},
        "spec": claim_spec,
    }


PULL_SECRET_NAME = "remotegpu-pull"  # noqa: S105 - an object name, not a password
"""The image pull Secret RemoteGPU keeps in each namespace it uses, when registry credentials are set."""


def pull_secret_manifest(docker_config_json: str, name: str = PULL_SECRET_NAME) -> Manifest:
    """A `kubernetes.io/dockerconfigjson` Secret from registry credentials (`~/.docker/config.json` form):
    the platform-wide one, or one registry's (or project's) under its own name."""
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "labels": {MANAGED_LABEL: MANAGER}},
        "data": {".dockerconfigjson": base64.b64encode(docker_config_json.encode()).decode()},
    }


SSH_KEYS_SECRET = "ssh"  # noqa: S105 - a name suffix, not a password
"""Suffix of the Secret holding an environment's `authorized_keys` (mounted at `/opt/remotegpu/keys`)."""


def environment_secret_manifest(
    environment_id: uuid.UUID, workspace_id: uuid.UUID, suffix: str, data: Mapping[str, str]
) -> Manifest:
    """An Opaque Secret of an environment's access material, labelled as its (so it goes with it)."""
    import base64

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": environment_secret_name(environment_id, suffix),
            "labels": {
                MANAGED_LABEL: MANAGER,
                ENVIRONMENT_LABEL: str(environment_id),
                WORKSPACE_LABEL: str(workspace_id),
            },
        },
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(data.items())},
    }


def env_config_map_name(environment_id: uuid.UUID) -> str:
    """Deterministic name of the ConfigMap holding an environment's variables."""
    return f"{workload_name(environment_id)}-env"


def env_config_map_manifest(spec: WorkloadSpec) -> Manifest:
    """The environment's variables (`env:` of the spec) as a ConfigMap the pod reads with `envFrom`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": env_config_map_name(spec.environment_id), "labels": labels_for(spec)},
        "data": dict(spec.env),
    }


def network_policy_manifest(workspace_id: uuid.UUID) -> Manifest:
    """Isolate a workspace: its pods accept traffic from each other and from outside the cluster (host
    ports, gateways), never from another workspace's pods."""
    name = f"ws-{workspace_id}-isolation"
    selector = {"matchLabels": {WORKSPACE_LABEL: str(workspace_id)}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": {MANAGED_LABEL: MANAGER, WORKSPACE_LABEL: str(workspace_id)}},
        "spec": {
            "podSelector": selector,
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": selector}]},
                {"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
            ],
        },
    }


SYNC_MOUNT = "/dataset"
SYNC_BACKOFF_LIMIT = 2


def _sync_labels(job: DatasetSyncJob) -> dict[str, str]:
    return {
        MANAGED_LABEL: MANAGER,
        ENVIRONMENT_LABEL: str(job.environment_id),
        WORKSPACE_LABEL: str(job.workspace_id),
        "remotegpu.io/dataset": str(job.dataset_id),
    }


def dataset_claim_manifest(job: DatasetSyncJob, storage_class: str | None) -> Manifest:
    """The volume an S3 dataset is synced into for one environment (its size plus a tenth, for the
    file system's own use); it goes with the environment's other volumes."""
    claim_spec: Manifest = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {
            "requests": {"storage": _memory_quantity(job.size_bytes + job.size_bytes // 10 + (64 << 20))}
        },
    }
    if storage_class:
        claim_spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": job.name, "labels": _sync_labels(job)},
        "spec": claim_spec,
    }


def dataset_sync_job_manifest(job: DatasetSyncJob) -> Manifest:
    """A Job running `remotegpu dataset-sync` into the dataset's claim, with the S3 connection from the
    environment's Secret (never in the Job's spec); retried twice, then failed with the command's
    message as its reason."""
    args = ["dataset-sync", "--source", job.source, "--dest", SYNC_MOUNT]
    if job.checksum:
        args += ["--checksum", job.checksum]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job.name, "labels": _sync_labels(job)},
        "spec": {
            "backoffLimit": SYNC_BACKOFF_LIMIT,
            "template": {
                "metadata": {"labels": _sync_labels(job)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "sync",
                            "image": job.image,
                            "command": ["remotegpu"],
                            "args": args,
                            "envFrom": [{"secretRef": {"name": job.credentials_secret}}],
                            "volumeMounts": [{"name": "dataset", "mountPath": SYNC_MOUNT}],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                    "volumes": [{"name": "dataset", "persistentVolumeClaim": {"claimName": job.name}}],
                },
            },
        },
    }
