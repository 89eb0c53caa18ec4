"""Log output: JSON lines for machines (`--log-format json`, the default of `api` and `reconciler`), or
the terminal's lines (`console`, the default of `remotegpu dev`): the message followed by its fields.

Log calls name their object in `extra=` (kubebuilder style: `log.info("Environment provisioned",
extra={"env": …, "node": …})`). A stdlib format string shows only the attributes it names, so the
fields were silently dropped; `FieldsFormatter` appends every attribute a record carries beyond the
standard ones, as `key=value`, right after the message (before any traceback).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, Literal

from rich.console import Console
from rich.logging import RichHandler

from remotegpu.core.platform.log_context import ContextFieldsFilter

LogFormat = Literal["json", "console"]

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


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, RFC 3339), `level`, `logger`, `message`, every field
    (`extra=` and the bound ones: request id, user, environment, shard, epoch), and `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_handler(log_format: LogFormat, console: Console) -> logging.Handler:
    """The handler of a server command: JSON lines on stderr, or the terminal's lines on `console`."""
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = console_handler(console)
    handler.addFilter(ContextFieldsFilter())
    return handler


NOISY = ("pgserver", "alembic", "apscheduler", "transitions", "urllib3", "httpx", "httpcore")
"""Third-party chatter (pgserver's command lines, Alembic's context lines, httpx's request lines): only
at debug level."""


def configure_logging(level: str, log_format: LogFormat, console: Console, *, replace: bool = False) -> None:
    """Root logging of a server process: `level`, one handler in `log_format`. Where logging is set up
    already (a host process, pytest) this changes nothing, unless `replace` (a settings reload)."""
    logging.basicConfig(
        level=level.upper(), format="%(message)s", handlers=[log_handler(log_format, console)], force=replace
    )
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
