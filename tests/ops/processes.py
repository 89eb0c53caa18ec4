"""Starting the real `remotegpu` executable in tests, and making sure nothing it started outlives the test.

Each command starts in a session (so a process group) of its own, with SIGINT ignored as a background job
of a non-interactive shell inherits it: its own handlers must be installed explicitly. Whatever happens in
the test, the whole group is killed at the end, so a hanging command never leaves processes behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from remotegpu.tests.polling import poll_until

EXECUTABLE = shutil.which("remotegpu") or str(Path(sys.executable).with_name("remotegpu"))


def command_env(**overrides: str) -> dict[str, str]:
    """This test run's environment without RemoteGPU settings, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("REMOTEGPU_")}
    env.update(overrides)
    env["COLUMNS"] = "200"
    return env


class Output:
    """A started command's stdout and stderr, read line by line on a thread (so waiting has a deadline)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterator[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, prefix: str, timeout_s: float = 60) -> bool:
        """Read until a line starting with `prefix` (True), the end of the output or the timeout (False).

        A blocking read of the next line with a deadline, not a poll: it returns as the line arrives."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                return False
            self.seen.append(line)
            if line.startswith(prefix):
                return True
        return False

    def close(self) -> None:
        """Stop reading (the process has ended)."""
        self._thread.join(timeout=10)
        self._stream.close()

    def text(self) -> str:
        """Everything read so far, and the rest once the process ended."""
        self._thread.join(timeout=10)
        while not self._lines.empty():
            line = self._lines.get()
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)


def group_members(group: int) -> list[int]:
    """Processes of process group `group` still running (zombies not counted), from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == group and state not in {"Z", "X"}:
            members.append(int(entry.name))
    return members


def wait_for_empty_group(group: int, timeout_s: float = 15) -> None:
    """Wait until no process of `group` runs; at the timeout, fail naming those still running."""
    poll_until(
        lambda: group_members(group),
        timeout_s,
        f"every process of group {group} to end",
        until=lambda members: not members,
        interval_s=0.05,
    )


def wait_until_serving(
    process: subprocess.Popen[str], output: Output, url: str, timeout_s: float = 60
) -> None:
    """Wait until `url` answers 200; fail with the command's output if it exits first or never answers."""

    def state() -> str:
        if process.poll() is not None:
            return f"exited with {process.returncode}"
        try:
            return "serving" if httpx.get(url, timeout=1).status_code == 200 else "starting"
        except httpx.TransportError:
            return "starting"

    try:
        seen = poll_until(
            state, timeout_s, f"{url} to answer 200", until=lambda s: s != "starting", interval_s=0.1
        )
    except AssertionError as error:
        raise AssertionError(f"{error}\n{output.text()}") from None
    assert seen == "serving", f"the command {seen} before serving:\n{output.text()}"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def started(
    args: Sequence[str], env: dict[str, str], cwd: Path | None = None, program: str = EXECUTABLE
) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """`remotegpu ARGS` (or `program ARGS`) in a session of its own with SIGINT ignored; its process group
    is killed on exit."""
    process = subprocess.Popen(
        [program, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_ignore_sigint,  # noqa: PLW1509 - the tests start no threads that fork meanwhile
    )
    output = Output(process)
    try:
        yield process, output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        output.close()
