"""One `remotegpu dev` per data folder: a second one would share its embedded Postgres as a standby and
overwrite its kubeconfig with its own cluster's, breaking `kubectl` for the first."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from remotegpu.core.platform.errors import RemoteGPUError


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold `data_dir/dev.lock` while the stack runs; another holder is one error line naming its pid.
    The kernel drops the lock when the process ends, however it ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir.resolve() / "dev.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RemoteGPUError(
                f"another remotegpu dev (pid {holder}) is using {data_dir.resolve()}: stop it first, or run"
                " from another folder (or set data_dir)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
