"""`remotegpu datasets-s3 set | check`: the S3 service datasets use (server-side: the connection goes
into the secrets store, which needs the server's settings). API processes read it on first use."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from remotegpu.core.platform.errors import RemoteGPUError, SettingsError
from remotegpu.core.platform.settings import Settings
from remotegpu.core.secrets.store import SecretStore
from remotegpu.ops.cli.consoles import console
from remotegpu.ops.cli.server.config import ConfigOption, server_settings

datasets_s3_app = typer.Typer(help="The S3 service of datasets: its connection.", no_args_is_help=True)


@contextmanager
def _store(settings: Settings) -> Iterator[SecretStore]:
    if not settings.database_url:
        raise SettingsError("database_url is not set: export DATABASE_URL=postgresql://USER@HOST:PORT/DBNAME")
    from remotegpu.core.platform.db import make_engine
    from remotegpu.core.secrets.configured import open_secret_store

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        yield open_secret_store(settings, engine)
    finally:
        engine.dispose()


@datasets_s3_app.command("set")
def set_connection(
    bucket: Annotated[str, typer.Option("--bucket", help="The bucket uploads go to.")],
    access_key_id: Annotated[str, typer.Option("--access-key-id", help="The access key RemoteGPU uses.")],
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="An S3-compatible service's URL (MinIO, Ceph); none for AWS."),
    ] = None,
    region: Annotated[str, typer.Option("--region")] = "us-east-1",
    secret_stdin: Annotated[
        bool,
        typer.Option("--secret-access-key-stdin", help="Read the secret access key from standard input."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Store the S3 connection (in the secrets store, the platform secret `dataset-s3`). The secret
    access key is read from standard input or a prompt, never an argument."""
    from remotegpu.core.datasets.s3 import S3_SECRET, S3Connection
    from remotegpu.core.datasets.s3_urls import parse_s3_url

    parse_s3_url(f"s3://{bucket}/", "--bucket")
    settings = server_settings(config)
    secret = (
        sys.stdin.readline().rstrip("\r\n")
        if secret_stdin
        else typer.prompt("Secret access key", hide_input=True)
    )
    if not secret:
        raise RemoteGPUError("secret access key: empty")
    with _store(settings) as store:
        store.put(S3_SECRET, S3Connection(bucket, region, access_key_id, secret, endpoint).to_secret())
    console.print(
        f"Stored the S3 connection to bucket {bucket}; restart API processes to use it.", highlight=False
    )


@datasets_s3_app.command("check")
def check(config: ConfigOption = None) -> None:
    """List the bucket with the stored connection: what a dataset upload needs to work."""
    from remotegpu.core.datasets.s3 import S3Connection, list_objects
    from remotegpu.core.datasets.s3_urls import S3Location

    settings = server_settings(config)
    with _store(settings) as store:
        connection = S3Connection.from_secret(store)
    count = sum(1 for _ in list_objects(connection.client(), S3Location(connection.bucket, "datasets/")))
    console.print(f"s3://{connection.bucket}: reachable; {count} dataset object(s).", highlight=False)
