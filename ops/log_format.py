"""The terminal log handler: each line is the message followed by its structured fields.

Log calls name their object in `extra=` (kubebuilder style: `log.info("Environment provisioned",
extra={"env": …, "node": …})`). A stdlib format string shows only the attributes it names, so the
fields were silently dropped; `FieldsFormatter` appends every attribute a record carries beyond the
standard ones, as `key=value`, right after the message (before any traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _show(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if not text or any(c.isspace() or c in '"=' for c in text) else text


class FieldsFormatter(logging.Formatter):
    """`%(message)s`-style formatting plus the record's `extra=` fields as `key=value` pairs."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (the stdlib's name)
        text = super().formatMessage(record)
        fields = [
            f"{key}={_show(value)}"
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        ]
        return " ".join([text, *fields]) if fields else text


def console_handler(console: Console) -> logging.Handler:
    """The handler the CLI's long-running commands log to the terminal with."""
    handler = RichHandler(console=console, show_path=False)
    handler.setFormatter(FieldsFormatter("%(message)s"))
    return handler
