"""The one way a test waits for something another thread or process does: poll until it holds.

A test that needs time to pass *inside RemoteGPU* moves the injected clock (`core/platform/clock.py`,
`clock.frozen_at`) instead. Polling is for what runs on its own: a server starting, a notification
arriving, a reconciler thread or the simulated kubelet doing its work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _truthy(value: object) -> bool:
    return bool(value)


def poll_until(
    read: Callable[[], T],
    timeout_s: float = 10.0,
    what: str = "the condition",
    *,
    until: Callable[[T], bool] = _truthy,
    interval_s: float = 0.02,
) -> T:
    """Call `read` until `until(value)` holds (by default: the value is truthy) and return that value.

    At the timeout, raise an AssertionError naming `what` and the last value read, so a failure says
    what never happened and what was seen instead. The last read is made once the deadline has passed,
    so a slow machine never fails a condition that held by then.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; last value: {value!r}")
        time.sleep(interval_s)
