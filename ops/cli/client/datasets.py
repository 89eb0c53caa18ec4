"""`remotegpu datasets create | list | describe | delete`: a workspace's datasets.

`create --file` hashes the file, creates the dataset and uploads it with a progress bar; run again
after an interruption, it finds the dataset it created (same name, same size and checksum) and resumes
from what the backend already holds. A failed upload (checksum mismatch) is retried the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.core.platform.quantities import parse_bytes
from remotegpu.ops.api_client import ApiClient, ApiError
from remotegpu.ops.cli.client.options import Output, Workspace
from remotegpu.ops.cli.client.session import required_workspace, signed_in_client
from remotegpu.ops.cli.consoles import console, err_console
from remotegpu.ops.dataset_upload import LocalFile, describe_file, upload
from remotegpu.ops.output import OutputFormat, emit

datasets_app = typer.Typer(
    help="Datasets: uploaded files, S3 prefixes or volumes, mounted into environments.", no_args_is_help=True
)

_COLUMNS: list[tuple[str, Any]] = [
    ("NAME", lambda d: d["name"]),
    ("SOURCE", lambda d: d["source"]),
    ("STATUS", lambda d: d["status"]),
    ("SIZE", lambda d: d["size_bytes"]),
    ("STORAGE", lambda d: d.get("storage")),
    ("REASON", lambda d: d.get("reason")),
]
DatasetName = Annotated[str, typer.Argument(help="Dataset name (a DNS label) or id.")]


@datasets_app.command("create")
def datasets_create(
    name: DatasetName,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Upload this file.")] = None,
    s3: Annotated[str | None, typer.Option("--s3", help="Use the objects under s3://BUCKET/PREFIX.")] = None,
    volume: Annotated[str | None, typer.Option("--volume", help="Use this existing PVC.")] = None,
    size: Annotated[str | None, typer.Option("--size", help="A volume's size (e.g. 100Gi).")] = None,
    workspace: Workspace = None,
) -> None:
    """Create a dataset from a file (uploaded, resumable: run it again after an interruption), an S3
    prefix, or an existing volume."""
    if sum(x is not None for x in (file, s3, volume)) != 1:
        raise RemoteGPUError("give exactly one of --file PATH, --s3 s3://BUCKET/PREFIX or --volume PVC")
    ws = required_workspace(workspace)
    with signed_in_client() as client:
        if file is not None:
            dataset = _upload_file(client, ws, name, describe_file(file.expanduser()))
        else:
            body: dict[str, Any] = {"name": name, "workspace": ws}
            if s3 is not None:
                body |= {"source": "s3", "url": s3}
            else:
                if size is None:
                    raise RemoteGPUError(
                        "--volume needs --size (counted against the workspace's storage quota)"
                    )
                try:
                    body |= {"source": "volume", "volume": volume, "size_bytes": parse_bytes(size)}
                except ValueError as error:
                    raise RemoteGPUError(f"--size: {error}") from None
            dataset = client.post("/datasets", body)
    if dataset["status"] == "failed":
        raise RemoteGPUError(
            f"dataset/{dataset['name']} failed: {dataset['reason']} (run the same command again to retry)"
        )
    console.print(
        f"dataset/{dataset['name']} {dataset['status']} ({dataset['size_bytes']} bytes)", highlight=False
    )


def _upload_file(client: ApiClient, workspace: str, name: str, file: LocalFile) -> dict[str, Any]:
    body = {
        "name": name,
        "workspace": workspace,
        "source": "upload",
        "size_bytes": file.size_bytes,
        "checksum": file.checksum,
        "file_name": _file_name(file.path.name),
    }
    try:
        dataset = client.post("/datasets", body)
    except ApiError as error:
        if error.status != 409 or "already has a dataset named" not in str(error):
            raise
        dataset = _resumable(client, workspace, name, file)
    if dataset["status"] == "ready":
        return dict(dataset)
    return upload(client, dataset, file, err_console)


def _file_name(name: str) -> str:
    """The name the dataset's file gets: the local name with anything but letters, digits, '.', '_', '-'
    and spaces replaced by '_' (and no leading '.')."""
    cleaned = re.sub(r"[^A-Za-z0-9._ -]", "_", name).lstrip(".")[:255]
    return cleaned or "data"


def _resumable(client: ApiClient, workspace: str, name: str, file: LocalFile) -> dict[str, Any]:
    """The existing dataset `name`, when it is this file's upload (to resume or retry)."""
    existing = _find(client, workspace, name)
    if existing["source"] != "upload" or existing["checksum"] != file.checksum:
        raise RemoteGPUError(
            f"workspace {workspace!r} already has a dataset named {name!r} with other content"
            f" ({existing.get('checksum') or existing['source']}); choose another name or delete it first"
        )
    if existing["status"] == "failed":
        err_console.print(f"dataset/{name} failed before ({existing['reason']}); retrying", highlight=False)
        return dict(client.post(f"/datasets/{existing['id']}/retry"))
    if existing["status"] == "uploading":
        err_console.print(f"dataset/{name}: resuming its upload", highlight=False)
    return existing


def _find(client: ApiClient, workspace: str, reference: str) -> dict[str, Any]:
    for item in client.get("/datasets", workspace=workspace):
        if reference in (item["name"], item["id"]):
            return dict(item)
    raise RemoteGPUError(
        f"workspace {workspace!r} has no dataset {reference!r} (see `remotegpu datasets list`)"
    )


@datasets_app.command("list")
def datasets_list(workspace: Workspace = None, output: Output = OutputFormat.TABLE) -> None:
    """The workspace's datasets and their status."""
    with signed_in_client() as client:
        items = client.get("/datasets", workspace=required_workspace(workspace))
    emit(console, items, output, _COLUMNS)


@datasets_app.command("describe")
def datasets_describe(
    name: DatasetName, workspace: Workspace = None, output: Output = OutputFormat.YAML
) -> None:
    """Everything about one dataset: source, checksum, status and why, upload progress."""
    with signed_in_client() as client:
        dataset = _find(client, required_workspace(workspace), name)
    emit(console, dataset, output, _COLUMNS)


@datasets_app.command("delete")
def datasets_delete(name: DatasetName, workspace: Workspace = None) -> None:
    """Delete a dataset and its stored bytes (refused while an environment mounts it)."""
    with signed_in_client() as client:
        dataset = _find(client, required_workspace(workspace), name)
        client.request("DELETE", f"/datasets/{dataset['id']}")
    console.print(f"dataset/{dataset['name']} deleted", highlight=False)
