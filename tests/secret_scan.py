"""The secret scan: collect everything a test run lets out (every log record, every HTTP answer's headers
and body, the CLI's output, every row of every table) and search it for the secret values the test made.

A test registers each value it creates with `scan.secret(label, value, shown_in=...)`: the value may
appear only in the answers named by `shown_in` (an API token in the one answer that creates it, a
sign-in's tokens in the sign-in answer), and nowhere else: not in a log line (at DEBUG, every logger,
SQLAlchemy's statements included), not in another answer, not in a problem document, not in the CLI's
output, not in a plain column or an event. Later features add their values the same way (SSH private
keys, Jupyter tokens) and reuse the `secret_scan` fixture.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from remotegpu.core.models import Base


@dataclass
class _Seen:
    where: str
    text: str


@dataclass
class _Secret:
    label: str
    value: str
    shown_in: set[int] = field(default_factory=set)
    """ids of the `_Seen` captures allowed to hold the value."""


class _Capture(logging.Handler):
    """Every record, formatted with its arguments, its extra fields and its traceback."""

    def __init__(self, scan: SecretScan) -> None:
        super().__init__(logging.DEBUG)
        self.scan = scan
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [record.getMessage(), repr(record.__dict__)]
            if record.exc_info:
                parts.append(self._formatter.formatException(record.exc_info))
            if record.stack_info:
                parts.append(record.stack_info)
            self.scan.seen.append(_Seen(f"log {record.name}:{record.levelname}", "\n".join(parts)))
        except Exception as error:  # a record that cannot be formatted is kept as what we know
            self.scan.seen.append(_Seen(f"log {record.name}", f"unformattable record: {error!r}"))


class SecretScan:
    """What a test run let out, and the secrets it must not have let out."""

    def __init__(self) -> None:
        self.seen: list[_Seen] = []
        self.secrets: list[_Secret] = []

    # -- registering secrets ---------------------------------------------------------------------
    def secret(self, label: str, value: str, *, shown_in: Iterable[httpx.Response] = ()) -> str:
        """A value that must appear nowhere but in the `shown_in` answers (already captured); returns it."""
        assert len(value) >= 8, f"{label}: too short to search for without false alarms"
        allowed = {id(self._capture_of(response)) for response in shown_in}
        self.secrets.append(_Secret(label, value, allowed))
        return value

    def _capture_of(self, response: httpx.Response) -> _Seen:
        for seen in reversed(self.seen):
            if getattr(seen, "response", None) is response:
                return seen
        raise AssertionError("that answer was not captured (use a client from `scan.client`)")

    # -- capturing -------------------------------------------------------------------------------
    def _on_response(self, response: httpx.Response) -> None:
        response.read()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        seen = _Seen(
            f"answer {response.request.method} {response.request.url.path} {response.status_code}",
            f"{headers}\n\n{response.text}",
        )
        seen.response = response  # type: ignore[attr-defined]
        self.seen.append(seen)

    def client(self, base_url: str, token: str | None = None) -> httpx.Client:
        """An HTTP client whose every answer (headers and body) is captured."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=base_url, headers=headers, timeout=30, event_hooks={"response": [self._on_response]}
        )

    def output(self, where: str, *texts: Any) -> None:
        """Text a command printed (stdout, stderr, the exception it ended with)."""
        self.seen.append(_Seen(where, "\n".join(str(t) for t in texts if t is not None)))

    def database(self, engine: Engine) -> None:
        """Every row of every table, as JSON (secrets must be ciphertext or hashes there)."""
        with engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                rows = connection.execute(
                    text(f'SELECT row_to_json(t)::text FROM "{table.name}" t')
                ).scalars()
                self.seen.append(_Seen(f"table {table.name}", "\n".join(rows)))

    # -- the verdict -----------------------------------------------------------------------------
    def leaks(self) -> list[str]:
        """Each place a secret was found where it must not be (its label and where; never the value)."""
        found = []
        for secret in self.secrets:
            forms = {
                secret.value,
                json.dumps(secret.value)[1:-1],
                base64.b64encode(secret.value.encode()).decode(),
            }
            for seen in self.seen:
                if id(seen) in secret.shown_in:
                    continue
                if any(form in seen.text for form in forms):
                    found.append(f"{secret.label} in {seen.where}")
        return found


@pytest.fixture
def secret_scan() -> Iterator[SecretScan]:
    """A scan collecting every log record of the process at DEBUG (all loggers, propagating to the root
    logger) for the test's duration; the test registers its secrets, captures its answers and output,
    and asserts `scan.leaks() == []`."""
    scan = SecretScan()
    handler = _Capture(scan)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Loggers set quieter than the root on their own would hide their records: open them up too.
    quieted = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG
    }
    for name in quieted:
        logging.getLogger(name).setLevel(logging.DEBUG)
    # Loggers that do not propagate (uvicorn's) get the handler of their own.
    isolated = [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    for logger in isolated:
        logger.addHandler(handler)
    try:
        yield scan
    finally:
        for logger in isolated:
            logger.removeHandler(handler)
        root.removeHandler(handler)
        root.setLevel(previous)
        for name, level in quieted.items():
            logging.getLogger(name).setLevel(level)
