"""`remotegpu dataset-sync --source s3://BUCKET/PREFIX --dest DIR [--checksum sha256:HEX]`: what a
dataset's sync Job runs. The S3 connection comes from the environment, as boto3 reads it
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from remotegpu.ops.cli.consoles import console


def dataset_sync(
    source: Annotated[str, typer.Option("--source", help="s3://BUCKET/PREFIX to copy.")],
    dest: Annotated[Path, typer.Option("--dest", help="The folder to copy into (the dataset's volume).")],
    checksum: Annotated[
        str | None, typer.Option("--checksum", help="sha256:HEX of the one object (an uploaded dataset).")
    ] = None,
) -> None:
    """Copy an S3 prefix into a folder, checking every file's size and checksum; a run again after an
    interruption skips what is already there. Prints one JSON line: files, bytes, skipped."""
    import boto3
    from botocore.config import Config

    from remotegpu.core.datasets.s3_urls import parse_s3_url
    from remotegpu.core.datasets.sync import sync_prefix

    location = parse_s3_url(source, "--source")
    client = boto3.client("s3", config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    report = sync_prefix(client, location, dest, checksum)
    console.print(
        json.dumps(
            {"source": location.url, "files": report.files, "bytes": report.bytes, "skipped": report.skipped}
        ),
        highlight=False,
        soft_wrap=True,
    )
