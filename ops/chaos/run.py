"""`remotegpu chaos [--quick] [--minutes N] [--seed S]`: churn under faults, then check every invariant.

The run starts its own stack (`stack.ChaosStack`), lets the users of `churn.Churn` work, strikes the
faults of a seeded `faults.schedule` while they do, stops the churn, waits for every environment to
settle, and checks claims, billing and the cluster's objects (`checks`). A 500 from the API is a
violation too. It prints a table and, last, one JSON line: `faults`, `envs`, `requests`, `violations`,
`converge_s`, `api_500`.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from remotegpu.core.platform.fencing_audit import stamped_rows
from remotegpu.ops.chaos.checks import invariant_violations, wait_converged
from remotegpu.ops.chaos.churn import Churn
from remotegpu.ops.chaos.faults import FAULTS, schedule
from remotegpu.ops.chaos.stack import ChaosStack


@dataclass(frozen=True)
class ChaosConfig:
    """How long and how hard."""

    churn_s: float
    faults: int
    users: int = 3
    pause_s: float = 0.15
    converge_timeout_s: float = 180.0


QUICK = ChaosConfig(churn_s=45, faults=len(FAULTS))


def run(config: ChaosConfig, seed: int, console: Console, folder: Path | None = None) -> dict[str, Any]:
    """One run; returns its figures (and prints the table)."""
    with tempfile.TemporaryDirectory(prefix="remotegpu-chaos-") as temporary:
        stack = ChaosStack(folder or Path(temporary))
        try:
            stack.start()
            figures = _churn_under_faults(stack, config, seed, console)
        finally:
            stack.close()
    _print(console, figures)
    return figures


def _churn_under_faults(
    stack: ChaosStack, config: ChaosConfig, seed: int, console: Console
) -> dict[str, Any]:
    churn = Churn(stack.api_url, seed, config.users)
    churn.setup()
    stop = threading.Event()
    worker = threading.Thread(target=churn.run, args=(stop, config.pause_s), name="churn", daemon=True)
    started = time.monotonic()
    worker.start()
    struck: list[str] = []
    missed: list[str] = []
    try:
        for fault in schedule(seed, config.churn_s, config.faults):
            time.sleep(max(0.0, started + fault.at_s - time.monotonic()))
            try:
                what = FAULTS[fault.kind](stack)
                (missed if what.endswith("(skipped)") else struck).append(what)
            except Exception as error:  # the harness's own call failed (say, a sign-in answered 503)
                what = f"{fault.kind}: not struck ({type(error).__name__}: {error})"
                missed.append(what)
            console.print(f"[{time.monotonic() - started:5.1f} s] {what}", highlight=False)
        time.sleep(max(0.0, started + config.churn_s - time.monotonic()))
    finally:
        stop.set()
        worker.join(timeout=30)
        churn.close()
    converge_s, left = wait_converged(stack.engine, config.converge_timeout_s)  # type: ignore[arg-type]
    violations = [f"not settled: {line}" for line in left]
    violations += invariant_violations(stack.engine, str(stack.kubeconfig))  # type: ignore[arg-type]
    api_500 = churn.statuses.get(500, 0)
    if api_500:
        violations.append(f"the API answered 500 {api_500} times (see {stack.api.log})")
    refused = churn.statuses.get(401, 0) + churn.statuses.get(403, 0)
    if refused:  # valid tokens of members: an auth check that could not reach the database must be a 503
        violations.append(f"the API refused valid credentials {refused} times (401/403; see {stack.api.log})")
    with stack.engine.connect() as connection:  # type: ignore[union-attr]
        envs = int(connection.execute(text("SELECT count(*) FROM environments")).scalar_one())
        terms = int(connection.execute(text("SELECT count(*) FROM leader_terms")).scalar_one())
        stamped = stamped_rows(connection)
        policy_stops = int(
            connection.execute(text("SELECT count(*) FROM events WHERE kind = 'policy'")).scalar_one()
        )
    for line in violations:
        console.print(f"violation: {line}", highlight=False)
    return {
        "benchmark": "chaos",
        "seed": seed,
        "faults": len(struck),
        "faults_not_struck": len(missed),
        "envs": envs,
        "requests": churn.requests,
        "answers_503": churn.statuses.get(503, 0),
        "statuses": {str(code): count for code, count in sorted(churn.statuses.items())},
        "unreachable": churn.unreachable,
        "policy_stops": policy_stops,
        "leader_terms": terms,
        "stamped_rows": stamped,
        "violations": len(violations),
        "converge_s": converge_s,
        "api_500": api_500,
    }


def _print(console: Console, figures: dict[str, Any]) -> None:
    table = Table(title="remotegpu chaos")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(name, str(value))
    console.print(table)


def main(quick: bool, minutes: float | None, seed: int) -> int:
    """Entry point for the CLI: table, then the figures as the last line; exit status 1 on a violation."""
    config = (
        QUICK
        if quick or minutes is None
        else ChaosConfig(churn_s=minutes * 60, faults=max(len(FAULTS), int(minutes * 6)))
    )
    figures = run(config, seed, Console())
    print(json.dumps(figures))
    return 1 if figures["violations"] else 0
