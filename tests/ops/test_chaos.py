"""`remotegpu chaos --quick`: every kind of fault under churn, and nothing lost, doubled or left behind;
and the run's checks do see an environment that did not settle."""

from __future__ import annotations

import io
import json
import os
import re
import signal
from pathlib import Path

from rich.console import Console
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from remotegpu.ops.chaos.checks import unsettled
from remotegpu.ops.chaos.faults import FAULTS, schedule
from remotegpu.ops.chaos.run import QUICK, run
from remotegpu.tests.ops.processes import command_env, started
from remotegpu.tests.polling import poll_until
from remotegpu.tests.reconciler.world import build_world


def test_the_quick_run_strikes_every_fault_and_finds_no_violation() -> None:
    output = io.StringIO()
    figures = run(QUICK, seed=7, console=Console(file=output, width=160))
    printed = output.getvalue()
    assert figures["violations"] == 0, printed
    assert figures["api_500"] == 0, printed
    # a fault finding nothing to strike (no leader for a moment after a kill) is skipped and counted apart
    assert figures["faults"] >= max(5, len(FAULTS) - 1), printed
    assert figures["envs"] >= 20, "enough churn to have something to break"
    assert figures["requests"] > figures["envs"]
    assert figures["leader_terms"] >= 3, "the killed and the paused leader were each replaced"
    assert figures["stamped_rows"] > figures["envs"], "the fencing audit had the reconcilers' writes to check"
    for kind in (
        "kill -9 leader",
        "SIGSTOP leader",
        "pg_terminate_backend",
        "Postgres restarted",
        "cluster:",
        "deleted with its",
    ):
        assert kind in printed, f"{kind} struck"
    json.dumps(figures)


def test_the_schedule_is_seeded_and_strikes_each_kind_before_repeating() -> None:
    first = schedule(3, 60, len(FAULTS) + 2)
    assert first == schedule(3, 60, len(FAULTS) + 2)
    assert {fault.kind for fault in first[: len(FAULTS)]} == set(FAULTS)
    assert all(0 < fault.at_s < 60 for fault in first)
    assert [fault.at_s for fault in first] == sorted(fault.at_s for fault in first)


def test_an_environment_stuck_short_of_its_desired_state_is_reported(
    engine: Engine, database_url: URL, sessions: object
) -> None:
    world = build_world(engine, database_url)
    try:
        stuck = world.submit("stuck")
        world.reconciler.run_until_idle()
        assert unsettled(engine) == []
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE environments SET phase = 'provisioning' WHERE id = :id"), {"id": stuck}
            )
        assert unsettled(engine) == ["stuck: desired running, still provisioning (no reason)"]
    finally:
        world.reconciler.close()


def _command_lines() -> dict[int, str]:
    lines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # gone meanwhile
                continue
    return lines


def _children(parent: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:  # the field after the state is the ppid
                found.add(int(entry.name))
    return found


def test_a_stop_signal_ends_the_run_and_stops_every_process_it_started(tmp_path: Path) -> None:
    """The replicas and the API run in sessions of their own, and Postgres is a daemon: none gets the
    signal, so the run must stop each on its way out."""
    with started(["chaos", "--quick", "--seed", "2"], command_env(), cwd=tmp_path) as (process, output):
        assert output.wait_for("[", 120), f"no fault struck:\n{output.text()}"  # "[  2.1 s] kill -9 …"
        children = _children(process.pid)
        assert len(children) >= 3, "the replicas and the API"
        lines = _command_lines()
        # this run's folder, from its own children (another chaos run may share the machine)
        found = re.search(r"(/\S*remotegpu-chaos-[^/\s]+)", " ".join(lines.get(pid, "") for pid in children))
        assert found is not None, "the run's replicas name its folder"
        folder = found.group(1)
        assert sum(folder in line for line in lines.values()) >= 3, "the replicas and Postgres"
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=90)
        text = output.text()
        assert process.returncode == 1, text
        assert "Stopped before the checks ran" in text
        assert "Traceback" not in text, text
    poll_until(
        lambda: [line for pid, line in _command_lines().items() if folder in line or pid in children],
        30,
        f"every process of the run gone (its output: {text!r})",
        until=lambda left: not left,
    )
