"""Fields every log record of a unit of work carries: the request id and user of an API call, the
environment, shard and epoch of a reconcile step. Bound once where the work starts, added to every
record logged inside it (by `ContextFieldsFilter`), whatever module logs.

A context variable holds one dict per unit of work; code deeper in the same unit (a handler on a worker
thread, which runs in a copy of the context) adds to that same dict, so what it learns — who the caller
is — reaches the request's log line too.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_fields", default=None)


@contextlib.contextmanager
def bound_log_fields(**fields: Any) -> Iterator[dict[str, Any]]:
    """Bind `fields` (on top of the enclosing ones) for the block; yields the dict to add to."""
    merged = {**(_fields.get() or {}), **fields}
    token = _fields.set(merged)
    try:
        yield merged
    finally:
        _fields.reset(token)


def add_log_fields(**fields: Any) -> None:
    """Add fields to the unit of work in progress (nothing outside one)."""
    current = _fields.get()
    if current is not None:
        current.update(fields)


def log_field(name: str) -> Any:
    """A field of the unit of work in progress, or None."""
    current = _fields.get()
    return None if current is None else current.get(name)


class ContextFieldsFilter(logging.Filter):
    """Copies the bound fields onto each record (an explicit `extra=` of the same name wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_fields.get() or {}).items():
            if key not in record.__dict__:
                record.__dict__[key] = value
        return True
