"""The terminal log handler shows the structured fields of a log call."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from rich.console import Console

from remotegpu.ops.log_format import console_handler


@pytest.fixture
def terminal() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the CLI's console handler into a buffer."""
    output = io.StringIO()
    logger = logging.getLogger("remotegpu.tests.log_format")
    handler = console_handler(Console(file=output, width=400, color_system=None))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, output
    logger.removeHandler(handler)
    logger.propagate = True


def test_extra_fields_follow_the_message_as_key_value_pairs(
    terminal: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, output = terminal
    logger.info("Environment provisioned", extra={"env": "e-1", "node": "node-0"})
    logger.info("Orphan deleted", extra={"object": "default/env-1", "why": "no environment"})
    logger.info("Leader elected")
    lines = output.getvalue().splitlines()
    assert "Environment provisioned env=e-1 node=node-0" in lines[0]
    assert 'Orphan deleted object=default/env-1 why="no environment"' in lines[1]
    assert lines[2].rstrip().endswith("Leader elected")


def test_the_fields_come_before_a_traceback(terminal: tuple[logging.Logger, io.StringIO]) -> None:
    logger, output = terminal
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("Step result discarded", extra={"env": "e-2", "trigger": "finish_stop"})
    text = output.getvalue()
    assert "Step result discarded env=e-2 trigger=finish_stop" in text
    assert text.index("trigger=finish_stop") < text.index("ValueError: boom")
