"""How the long-running commands (`dev`, `api`, `reconciler`, `simcluster`) stop: on SIGINT or SIGTERM,
whoever sends it, together with every process they started.

- The handlers are installed explicitly: a command started from a shell that ignores SIGINT (a background
  job of a non-interactive shell) inherits SIG_IGN, and Python keeps it.
- A stop signal raises `StopRequested` in the main thread, as Ctrl-C raises `KeyboardInterrupt` in a
  script, so whatever is starting or running unwinds through its `with` blocks (start-up included). The
  first signal also restores the default actions: a second one ends the process at once when a clean stop
  hangs.
- Child processes die with their parent, also when it is killed with SIGKILL (`die_with_parent`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class StopRequested(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so that no `except Exception` swallows it."""


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    for each in STOP_SIGNALS:
        signal.signal(each, signal.SIG_DFL)
    raise StopRequested(signal.Signals(signum).name)


def install_stop_handlers() -> None:
    """From now on the first SIGINT or SIGTERM raises `StopRequested` in the main thread."""
    for each in STOP_SIGNALS:
        signal.signal(each, _raise_stop)


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Run the body until SIGINT or SIGTERM; a stop signal ends it at whatever point (start-up included)
    and is not an error."""
    install_stop_handlers()
    with contextlib.suppress(StopRequested):
        yield


def wait_for_stop() -> None:
    """Block until a stop signal raises `StopRequested`."""
    idle = threading.Event()
    while True:
        # A timeout: a signal arriving just before the wait starts still has its handler run soon.
        idle.wait(timeout=1.0)


def die_with_parent(parent_pid: int) -> None:
    """Have this process receive SIGTERM when `parent_pid` (its parent) dies, SIGKILL included: the
    kernel sends it on Linux; elsewhere a thread watches the parent."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        threading.Event().wait(timeout=1.0)
    os.kill(os.getpid(), signal.SIGTERM)
