"""Every manifest RemoteGPU generates is valid against the official Kubernetes schemas."""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid

import kubernetes_validate
import pytest

from remotegpu.core.capacity.requests import ClaimedPort
from remotegpu.core.cluster.driver import DatasetMount, DatasetSyncJob, VolumeSpec, WorkloadSpec
from remotegpu.core.cluster.manifests import (
    GPU_RESOURCE,
    GpuBindingError,
    dataset_claim_manifest,
    dataset_sync_job_manifest,
    env_config_map_manifest,
    environment_secret_manifest,
    network_policy_manifest,
    pod_manifest,
    pull_secret_manifest,
    service_manifest,
    volume_claim_manifest,
)
from remotegpu.core.environments.states import PortPurpose, Protocol
from remotegpu.core.secrets.registry_credentials import docker_config_for

SPEC = WorkloadSpec(
    environment_id=uuid.UUID("00000000-0000-0000-0000-000000000001"),
    workspace_id=uuid.UUID("00000000-0000-0000-0000-000000000002"),
    generation=3,
    node="gpu-node-7",
    image="harbor.example.org/ml/pytorch:24.05-cuda12",
    command=("sleep", "infinity"),
    gpu_count=2,
    cpu_millis=16000,
    memory_bytes=128 << 30,
    ports=(
        ClaimedPort(22, 30022, Protocol.TCP, PortPurpose.SSH),
        ClaimedPort(8888, 30023, Protocol.TCP, PortPurpose.JUPYTER),
        ClaimedPort(6006, 30024, Protocol.UDP, PortPurpose.CUSTOM),
    ),
    volumes=(VolumeSpec("data", 500 << 30, "/workspace"),),
    env=(("WANDB_MODE", "offline"),),
)
VERSION = "1.31"


@pytest.mark.parametrize(
    "manifest",
    [
        pod_manifest(SPEC),
        service_manifest(SPEC),
        service_manifest(WorkloadSpec(SPEC.environment_id, SPEC.workspace_id, 1, "n", "img")),
        volume_claim_manifest(SPEC, SPEC.volumes[0], "fast-ssd"),
        network_policy_manifest(SPEC.workspace_id),
        env_config_map_manifest(SPEC),
        environment_secret_manifest(
            SPEC.environment_id, SPEC.workspace_id, "ssh", {"authorized_keys": "ssh-ed25519 AAAA\n"}
        ),
    ],
    ids=["pod", "service", "headless-service", "pvc", "network-policy", "configmap", "keys-secret"],
)
def test_manifest_is_valid_against_the_official_schema(manifest: dict[str, object]) -> None:
    kubernetes_validate.validate(manifest, VERSION, strict=True)


def test_pod_is_pinned_with_gpus_host_ports_shm_and_a_restrictive_security_context() -> None:
    pod = pod_manifest(SPEC)
    spec = pod["spec"]
    container = spec["containers"][0]
    assert spec["nodeName"] == "gpu-node-7"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert [(p["containerPort"], p["hostPort"], p["protocol"]) for p in container["ports"]] == [
        (22, 30022, "TCP"),
        (8888, 30023, "TCP"),
        (6006, 30024, "UDP"),
    ]
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "65536Mi"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["metadata"]["labels"]["remotegpu.io/generation"] == "3"
    assert spec["automountServiceAccountToken"] is False


def test_ssh_access_brings_sshd_into_any_image_through_an_init_container() -> None:
    pod = pod_manifest(SPEC, access_image="registry.example.org/access:2")
    (init,) = pod["spec"]["initContainers"]
    assert init["image"] == "registry.example.org/access:2"
    main = pod["spec"]["containers"][0]
    assert main["command"] == ["/opt/remotegpu/bin/entrypoint", "--", "sleep", "infinity"]
    assert (
        "SYS_CHROOT" in main["securityContext"]["capabilities"]["add"]
    )  # sshd's privilege separation as root
    assert {m["mountPath"] for m in main["volumeMounts"]} >= {"/opt/remotegpu", "/opt/remotegpu/keys"}
    keys = next(v for v in pod["spec"]["volumes"] if v["name"] == "ssh-keys")
    assert keys["secret"] == {"secretName": f"env-{SPEC.environment_id}-ssh", "optional": True}
    kubernetes_validate.validate(pod, VERSION, strict=True)
    secret = environment_secret_manifest(
        SPEC.environment_id, SPEC.workspace_id, "ssh", {"authorized_keys": "k\n"}
    )
    assert secret["metadata"]["name"] == keys["secret"]["secretName"], (
        "the Secret the reconciler writes is the one mounted"
    )
    assert secret["metadata"]["labels"]["remotegpu.io/environment"] == str(SPEC.environment_id)


def test_without_ssh_the_command_is_left_as_written() -> None:
    spec = WorkloadSpec(SPEC.environment_id, SPEC.workspace_id, 1, "n", "img", command=("python", "train.py"))
    pod = pod_manifest(spec)
    assert "initContainers" not in pod["spec"]
    assert pod["spec"]["containers"][0]["command"] == ["python", "train.py"]


def test_a_custom_port_22_is_the_users_own_and_brings_no_sshd() -> None:
    own_server = ClaimedPort(22, 30022, Protocol.TCP, PortPurpose.HTTP)
    spec = WorkloadSpec(
        SPEC.environment_id, SPEC.workspace_id, 1, "n", "img", ("serve",), ports=(own_server,)
    )
    pod = pod_manifest(spec)
    assert "initContainers" not in pod["spec"]
    assert pod["spec"]["containers"][0]["command"] == ["serve"]


def test_environment_variables_come_from_a_config_map() -> None:
    config_map = env_config_map_manifest(SPEC)
    assert config_map["data"] == {"WANDB_MODE": "offline"}
    container = pod_manifest(SPEC)["spec"]["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": config_map["metadata"]["name"]}}]
    assert "WANDB_MODE" not in {variable["name"] for variable in container.get("env", [])}


def test_registry_credentials_become_a_pull_secret_the_pod_references() -> None:
    """The store keeps the `~/.docker/config.json` form; the Secret carries it as Kubernetes expects."""
    stored = json.dumps(docker_config_for("harbor.example.org", "user", "pass"))
    secret = pull_secret_manifest(stored)
    kubernetes_validate.validate(secret, VERSION, strict=True)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert base64.b64decode(secret["data"][".dockerconfigjson"]).decode() == stored
    assert "dXNlcjpwYXNz" not in str(secret), "the credentials are stored encoded, as Kubernetes expects"
    assert pod_manifest(SPEC, pull_secret=True)["spec"]["imagePullSecrets"] == [{"name": "remotegpu-pull"}]
    assert "imagePullSecrets" not in pod_manifest(SPEC)["spec"]


def test_jupyter_reads_its_token_from_the_environment_secret_and_has_a_readiness_probe() -> None:
    pod = pod_manifest(SPEC)
    main = pod["spec"]["containers"][0]
    variables = {variable["name"]: variable for variable in main["env"]}
    assert variables["REMOTEGPU_JUPYTER_PORT"] == {"name": "REMOTEGPU_JUPYTER_PORT", "value": "8888"}
    assert variables["JUPYTER_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": f"env-{SPEC.environment_id}-jupyter", "key": "JUPYTER_TOKEN"}
    }
    assert main["readinessProbe"]["exec"] == {
        "command": ["sh", "-c", "test ! -e /run/remotegpu/jupyter-unavailable"]
    }
    kubernetes_validate.validate(pod, VERSION, strict=True)


def test_jupyter_alone_starts_through_the_entrypoint_without_ssh_keys() -> None:
    jupyter = ClaimedPort(8888, 30023, Protocol.TCP, PortPurpose.JUPYTER)
    spec = WorkloadSpec(SPEC.environment_id, SPEC.workspace_id, 1, "n", "img", ("serve",), ports=(jupyter,))
    pod = pod_manifest(spec)
    main = pod["spec"]["containers"][0]
    assert main["command"] == ["/opt/remotegpu/bin/entrypoint", "--", "serve"]
    assert "ssh-keys" not in {volume["name"] for volume in pod["spec"]["volumes"]}
    assert {"name": "REMOTEGPU_SSH", "value": "0"} in main["env"], "the entrypoint starts no sshd"
    assert "SYS_CHROOT" not in main["securityContext"]["capabilities"]["add"]
    assert "readinessProbe" in main
    kubernetes_validate.validate(pod, VERSION, strict=True)


def test_without_jupyter_there_is_no_token_and_no_readiness_probe() -> None:
    ssh = ClaimedPort(22, 30022, Protocol.TCP, PortPurpose.SSH)
    spec = WorkloadSpec(SPEC.environment_id, SPEC.workspace_id, 1, "n", "img", ports=(ssh,))
    main = pod_manifest(spec)["spec"]["containers"][0]
    assert "readinessProbe" not in main
    assert "env" not in main


def test_an_environment_secret_is_valid_labelled_and_encoded() -> None:
    secret = environment_secret_manifest(
        SPEC.environment_id, SPEC.workspace_id, "jupyter", {"JUPYTER_TOKEN": "tok-123"}
    )
    kubernetes_validate.validate(secret, VERSION, strict=True)
    assert secret["metadata"]["name"] == f"env-{SPEC.environment_id}-jupyter"
    assert secret["metadata"]["labels"]["remotegpu.io/environment"] == str(SPEC.environment_id)
    assert secret["data"] == {"JUPYTER_TOKEN": "dG9rLTEyMw=="}


CLAIMED = ("GPU-6f1c0e3a-0000-4000-8000-000000000002", "GPU-6f1c0e3a-0000-4000-8000-000000000001")
BOUND = dataclasses.replace(SPEC, gpu_uuids=CLAIMED)


@pytest.mark.parametrize("binding", ["device-plugin", "device-id"])
def test_pods_of_both_gpu_binding_modes_are_valid(binding: str) -> None:
    kubernetes_validate.validate(pod_manifest(BOUND, gpu_binding=binding), VERSION, strict=True)
    no_gpus = dataclasses.replace(BOUND, gpu_count=0, gpu_uuids=())
    kubernetes_validate.validate(pod_manifest(no_gpus, gpu_binding=binding), VERSION, strict=True)


def test_device_id_binding_pins_the_claimed_uuids_and_asks_the_device_plugin_for_nothing() -> None:
    pod = pod_manifest(BOUND, gpu_binding="device-id")
    container = pod["spec"]["containers"][0]
    assert GPU_RESOURCE not in container["resources"]["limits"]
    assert container["env"][0] == {"name": "NVIDIA_VISIBLE_DEVICES", "value": ",".join(sorted(CLAIMED))}
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    # `env` wins over `envFrom`: the spec's own variables cannot widen the binding
    assert container["envFrom"] == [{"configMapRef": {"name": f"env-{SPEC.environment_id}-env"}}]


def test_device_plugin_binding_asks_for_a_count_and_names_no_device() -> None:
    pod = pod_manifest(BOUND)
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"][GPU_RESOURCE] == "2"
    assert "NVIDIA_VISIBLE_DEVICES" not in json.dumps(pod)
    assert "runtimeClassName" not in pod["spec"]


def test_device_id_binding_gives_a_pod_without_gpus_none_and_refuses_unknown_uuids() -> None:
    bare = pod_manifest(dataclasses.replace(BOUND, gpu_count=0, gpu_uuids=()), gpu_binding="device-id")
    assert bare["spec"]["containers"][0]["env"][0] == {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}
    assert "runtimeClassName" not in bare["spec"]
    with pytest.raises(GpuBindingError, match="UUIDs of all 2 claimed GPUs of gpu-node-7, known for 1"):
        pod_manifest(dataclasses.replace(BOUND, gpu_uuids=CLAIMED[:1]), gpu_binding="device-id")
    with pytest.raises(ValueError, match="gpu_binding: 'dra' is not one of device-plugin, device-id"):
        pod_manifest(BOUND, gpu_binding="dra")


def test_datasets_are_mounted_read_only_unless_asked_and_local_ones_by_their_folder() -> None:
    spec = dataclasses.replace(
        SPEC,
        datasets=(
            DatasetMount("imagenet", "/data/imagenet", "env-x-ds-1234abcd"),
            DatasetMount("labels", "/data/labels", "remotegpu-datasets", sub_path="0f1e"),
            DatasetMount("scratch", "/scratch", "lab-scratch", read_only=False),
        ),
    )
    pod = pod_manifest(spec)
    kubernetes_validate.validate(pod, VERSION, strict=True)
    container = pod["spec"]["containers"][0]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data/imagenet"]["readOnly"] is True
    assert mounts["/data/labels"]["subPath"] == "0f1e"
    assert mounts["/scratch"]["readOnly"] is False
    claims = {
        v["name"]: v["persistentVolumeClaim"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v
    }
    assert claims[mounts["/data/labels"]["name"]] == {"claimName": "remotegpu-datasets", "readOnly": True}


def test_a_dataset_sync_job_and_its_claim_are_valid_and_keep_the_credentials_out_of_the_spec() -> None:
    job = DatasetSyncJob(
        environment_id=SPEC.environment_id,
        workspace_id=SPEC.workspace_id,
        dataset_id=uuid.UUID("00000000-0000-0000-0000-00000000d0d0"),
        source="s3://datasets/corpora/wiki/",
        size_bytes=10 << 30,
        image="ghcr.io/remotegpu/remotegpu:0.1.0",
        credentials_secret=f"{SPEC.name}-dataset-s3",
        checksum="sha256:" + "ab" * 32,
    )
    manifest = dataset_sync_job_manifest(job)
    claim = dataset_claim_manifest(job, "fast")
    kubernetes_validate.validate(manifest, VERSION, strict=True)
    kubernetes_validate.validate(claim, VERSION, strict=True)
    assert len(job.name) <= 63
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "dataset-sync",
        "--source",
        job.source,
        "--dest",
        "/dataset",
        "--checksum",
        job.checksum,
    ]
    assert container["envFrom"] == [{"secretRef": {"name": job.credentials_secret}}]
    assert claim["spec"]["storageClassName"] == "fast"
    assert manifest["metadata"]["labels"]["remotegpu.io/environment"] == str(SPEC.environment_id)
