"""How fast this machine runs Python and answers Postgres, measured at the start of every benchmark.

Absolute figures move by up to 3× between development machines (and on one machine under load). Two
fixed loops, run before the benchmark on the same interpreter and the same Postgres server, say at a
glance how two runs' machines compare: a pure-Python loop (no allocation, no I/O) and a loop of
`SELECT 1` round trips on one connection (the per-statement floor every benchmark pays). Each is the
best of three tries, as `timeit` advises: a slower try measured the other processes on the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from sqlalchemy.engine import URL

PYTHON_STEPS = 1_000_000
SELECTS = 1_000
TRIES = 3


def _python_loop(steps: int) -> int:
    total = 0
    for step in range(steps):
        total += step % 7
    return total


def python_mloops_per_s(steps: int = PYTHON_STEPS) -> float:
    """Millions of iterations per second of a fixed pure-Python loop (best of three)."""
    best = min(_timed(lambda: _python_loop(steps)) for _ in range(TRIES))
    return round(steps / best / 1e6, 2)


def postgres_selects_per_s(url: URL, selects: int = SELECTS) -> float:
    """`SELECT 1` round trips per second on one autocommit connection (best of three)."""
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("SELECT 1")

        def loop() -> None:
            for _ in range(selects):
                connection.execute("SELECT 1")

        best = min(_timed(loop) for _ in range(TRIES))
    return round(selects / best)


def calibrate(url: URL) -> dict[str, Any]:
    """The calibration figures of this run (`calibration_*`), against the server `url` is on."""
    return {
        "calibration_python_mloops_per_s": python_mloops_per_s(),
        "calibration_postgres_select1_per_s": postgres_selects_per_s(url),
    }


def calibration_line(figures: dict[str, Any]) -> str:
    """One line for the output: how fast this machine was during this run."""
    return (
        f"calibration: Python {figures['calibration_python_mloops_per_s']} M loops/s,"
        f" Postgres {figures['calibration_postgres_select1_per_s']:,} SELECT 1/s"
    )


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started
