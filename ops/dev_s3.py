"""The S3 service of `remotegpu dev --s3 moto`: moto's standalone S3 server on loopback (a process the
stack owns and kills), with the bucket `remotegpu-datasets` made and its connection stored as the
platform secret `dataset-s3`; the stack's uploads then go to it, and the simulated cluster's sync Jobs
copy from it for real. moto is a test dependency (`pip install 'moto[server]'`), not a runtime one."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import msgspec
from sqlalchemy.engine import URL

from remotegpu.core.datasets.s3 import S3_SECRET, S3Connection
from remotegpu.core.platform.db import make_engine
from remotegpu.core.platform.errors import SettingsError
from remotegpu.core.platform.settings import DevS3Choice, Settings
from remotegpu.core.secrets.configured import open_secret_store

DEV_BUCKET = "remotegpu-datasets"
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_moto(stack: contextlib.ExitStack) -> str:
    if importlib.util.find_spec("moto") is None:
        raise SettingsError(
            "--s3 moto: moto is not installed; pip install 'moto[server]' (or leave --s3 out)"
        )
    url = f"http://127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    process = subprocess.Popen(  # noqa: S603 - this interpreter running moto's server module
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )

    def stop() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    stack.callback(stop)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SettingsError(f"--s3 moto: moto's server exited with {process.returncode} at start")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/moto-api/", timeout=1).status_code == 200:
                return url
        time.sleep(0.1)  # real time: another process is starting
    raise SettingsError(f"--s3 moto: moto's server did not answer at {url} within {START_TIMEOUT_S:.0f} s")


def prepare_dev_s3(
    settings: Settings, choice: DevS3Choice, database_url: URL, stack: contextlib.ExitStack
) -> tuple[Settings, str]:
    """Start the S3 service of `choice` (stopped by `stack`) and store its connection; the settings the
    API gets (uploads to S3 when there is one) and a line saying where it is."""
    if choice == "none":
        return settings, f"none (uploads go to {settings.dataset_folder}; `--s3 moto` for an S3 service)"
    url = _start_moto(stack)
    connection = S3Connection(DEV_BUCKET, "us-east-1", "dev-key", "dev-secret", endpoint_url=url)
    connection.client().create_bucket(Bucket=DEV_BUCKET)
    engine = make_engine(database_url, pool_size=1)
    try:
        open_secret_store(settings, engine).put(S3_SECRET, connection.to_secret())
    finally:
        engine.dispose()
    where = f"moto's S3 server at {url}, bucket {DEV_BUCKET}: uploads go there, sync Jobs copy from it"
    return msgspec.structs.replace(settings, dataset_storage="s3"), where
