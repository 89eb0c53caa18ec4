"""The one source of the current time, so tests can move it.

Time in RemoteGPU is always timezone-aware UTC.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator


def _system_time() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Clock:
    """Holds the current time source; replaced only by `frozen_at`."""

    source: Callable[[], dt.datetime] = staticmethod(_system_time)


def now() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return _Clock.source()


@contextlib.contextmanager
def frozen_at(moment: dt.datetime) -> Iterator[Callable[[dt.timedelta], None]]:
    """Freeze `now()` at `moment` for the block; yields a function that moves the frozen time forward."""
    if moment.tzinfo is None:
        raise ValueError("frozen_at needs an aware datetime (UTC)")
    current = [moment.astimezone(dt.UTC)]

    def frozen() -> dt.datetime:
        return current[0]

    def advance(delta: dt.timedelta) -> None:
        current[0] = current[0] + delta

    previous = _Clock.source
    _Clock.source = staticmethod(frozen)
    try:
        yield advance
    finally:
        _Clock.source = previous
