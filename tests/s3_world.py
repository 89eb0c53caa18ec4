"""A real S3-compatible server for the dataset tests: moto's standalone server on loopback, started as
a process of its own (killed with its whole group whatever happens), and the connection RemoteGPU
uses to reach it.

moto authenticates requests only when `INITIAL_NO_AUTH_ACTION_COUNT` is set, and then its presigned
URLs fail; so uploads run against a server without authentication, and the wrong-credentials tests
against one with it (`authenticated=True`), whose first three calls make an IAM user and its key.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator

import boto3

from remotegpu.core.datasets.s3 import S3Connection
from remotegpu.tests.ops.processes import command_env, started, wait_until_serving

BUCKET = "remotegpu-datasets"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def moto_server(*, authenticated: bool = False) -> Iterator[S3Connection]:
    """A moto S3 server with the bucket `BUCKET`; the connection to it (valid credentials)."""
    port = _free_port()
    env = command_env()
    if authenticated:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    else:
        env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    url = f"http://127.0.0.1:{port}"
    args = ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with started(args, env, program=sys.executable) as (process, output):
        wait_until_serving(process, output, f"{url}/moto-api/", timeout_s=30)
        key_id, secret = "test-key", "test-secret"
        if authenticated:
            key_id, secret = _iam_key(url)
        connection = S3Connection(BUCKET, "us-east-1", key_id, secret, endpoint_url=url)
        connection.client().create_bucket(Bucket=BUCKET)
        yield connection


def _iam_key(url: str) -> tuple[str, str]:
    iam = boto3.client(
        "iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    iam.create_user(UserName="remotegpu")
    key = iam.create_access_key(UserName="remotegpu")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="remotegpu", PolicyName="all", PolicyDocument=json.dumps(policy))
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def put_objects(connection: S3Connection, objects: dict[str, bytes], bucket: str = BUCKET) -> None:
    """Write objects straight to the server (what a user's own tools put there)."""
    client = connection.client()
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)


def object_bytes(connection: S3Connection, key: str) -> bytes:
    return bytes(connection.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())


os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # boto3 never probes a cloud metadata service
