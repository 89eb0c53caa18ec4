"""`remotegpu get images`: the image catalogue as the caller may use it; `remotegpu images sync`: read
the configured registries now (platform admins)."""

from __future__ import annotations

from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError
from remotegpu.ops.cli.client.options import Output
from remotegpu.ops.cli.client.session import signed_in_client
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.output import OutputFormat, emit


def get_images(output: Output = OutputFormat.TABLE) -> None:
    """Images you can use."""
    with signed_in_client() as client:
        items = list(client.items("/images"))
    emit(
        console,
        items,
        output,
        [
            ("NAME", lambda i: i["name"]),
            ("REFERENCE", lambda i: i["reference"]),
            ("VISIBILITY", lambda i: i["visibility"]),
            ("CUDA", lambda i: i["cuda_version"]),
            ("SOURCE", lambda i: i["registry"] or i["source"]),
            ("SYNCED", lambda i: i["synced_at"] or "-"),
        ],
    )


images_app = typer.Typer(help="The image catalog (syncing it needs a platform admin).", no_args_is_help=True)


@images_app.command("sync")
def images_sync(
    registry: Annotated[str | None, typer.Option("--registry", help="Only this configured registry.")] = None,
) -> None:
    """Sync the catalog from the configured registries now (the leader also does it every
    `registry_sync_seconds`): new images appear, removed ones are marked gone."""
    with signed_in_client() as client:
        reports = client.post("/images/sync", registry=registry)["registries"]
    failed = []
    for report in reports:
        if report["error"]:
            failed.append(report)
            console.print(f"{report['registry']}: not synced: {report['error']}", highlight=False)
        else:
            console.print(
                f"{report['registry']}: {report['images']} images, {report['gone']} newly gone",
                highlight=False,
            )
    if not reports:
        console.print("No registry is configured; add one with `remotegpu registry add`.", highlight=False)
    if failed:
        raise RemoteGPUError(f"{len(failed)} of {len(reports)} registries could not be synced (see above)")
