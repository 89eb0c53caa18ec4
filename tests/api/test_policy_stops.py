"""Spending limits and max duration as users see them: only owners (and platform admins) set the limit;
`GET /environments/{id}`, a start's answer, `GET /billing/usage`, `describe env` and `billing usage`
show the budget, the deadline, the policy stop and the overrun; a start while the budget is spent is
accepted and says it waits; raising the limit lets it start."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, text
from typer.testing import CliRunner

from remotegpu.core.platform import clock
from remotegpu.ops.cli.app import app
from remotegpu.reconciler.loop import Reconciler
from remotegpu.reconciler.policies import policy_tick
from remotegpu.tests.api.conftest import Caller, spec
from remotegpu.tests.api.test_billing_usage import _cli_env

START = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)


def test_limits_deadlines_and_policy_stops_are_shown_and_a_start_waits_until_the_limit_is_raised(
    new_user: Callable[[str], Caller],
    admin: Caller,
    reconciler: Reconciler,
    engine: Engine,
    api_url: str,
    tmp_path: Path,
) -> None:
    alice, bob, carol = (new_user(name) for name in ("alice", "bob", "carol"))
    ws = alice.post("/workspaces", json={"name": "lab"}).json()["id"]
    for name, role in (("bob", "member"), ("carol", "admin")):
        alice.post(f"/workspaces/{ws}/members", json={"user": name, "role": role})
    settings = f"/workspaces/{ws}/settings"
    refused = carol.put(settings, json={"spending_limit": "3"})
    assert refused.status_code == 403, "a workspace admin may not set the limit"
    assert carol.put(settings, json={"admin_keys_in_member_environments": True}).status_code == 200
    assert admin.put(settings, json={"spending_limit": "50"}).json()["spending_limit"] == "50"
    assert alice.put(settings, json={"spending_limit": "3"}).json()["spending_limit"] == "3"
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO prices (resource, gpu_model, unit_price, effective_from) VALUES ('gpu', 'H100', 1, :t)"
            ),
            {"t": START - dt.timedelta(days=1)},
        )
    runner = CliRunner()
    as_alice, as_bob = _cli_env(alice, api_url, tmp_path / "a"), _cli_env(bob, api_url, tmp_path / "b")

    with clock.frozen_at(START) as advance:
        ids = {}
        for name, extra in (("train", {"policies": {"max_duration": "3h"}}), ("eval", {})):
            applied = bob.post("/environments/apply", json=spec(name, "lab", **extra))
            ids[name] = applied.json()["environment"]["id"]
        reconciler.run_until_idle()
        shown = bob.get(f"/environments/{ids['train']}").json()
        assert shown["phase"] == "running"
        assert shown["max_duration_deadline"].startswith("2026-11-10T15:00:00")
        assert shown["budget"]["state"] == "ok"
        assert shown["budget"]["limit"] is None, "a member sees the state, not the bills"
        assert bob.get(f"/environments/{ids['eval']}").json()["max_duration_deadline"] is None
        described = runner.invoke(app, ["describe", "env", "train", "-w", "lab"], env=as_bob)
        assert "Deadline:    2026-11-10T15:00:00Z (policies.max_duration)" in described.output

        advance(dt.timedelta(minutes=75))  # 2 × 1.25 h × 1.00 = 2.50 of 3: a warning
        budget = alice.get(f"/environments/{ids['train']}").json()["budget"]
        assert (budget["state"], Decimal(budget["spent"]), Decimal(budget["percent"])) == (
            "warning",
            Decimal("2.5"),
            Decimal("83.3"),
        )
        described = runner.invoke(app, ["describe", "env", "train", "-w", "lab"], env=as_alice)
        assert "Budget:      WARNING: 83.3% of the limit spent (2.50 of 3 USD)" in described.output
        usage = runner.invoke(app, ["billing", "usage", "-w", "lab"], env=as_alice)
        assert "Budget since 2026-11-01: 2.50 of 3 USD (83.3%, warning) — WARNING" in usage.output

        advance(dt.timedelta(minutes=25))  # 3.33: spent
        assert sorted(str(i) for i in policy_tick(reconciler.ctx).stopped) == sorted(ids.values())
        reconciler.run_until_idle()
        shown = bob.get(f"/environments/{ids['train']}").json()
        assert (shown["phase"], shown["desired_state"]) == ("stopped", "stopped")
        assert shown["policy_stop"]["reason"] == "BudgetExceeded"
        assert shown["max_duration_deadline"] is None, "not running: no deadline"
        assert "PolicyStopped" in {c["type"] for c in shown["conditions"]}
        described = runner.invoke(app, ["describe", "env", "train", "-w", "lab"], env=as_bob)
        assert "Stopped by:  BudgetExceeded: stopped by policy: the workspace spent 3.33 of its 3.00" in (
            " ".join(described.output.split("\n"))
        )
        answer = alice.get("/billing/usage", params={"workspace": "lab"}).json()["budget"]
        assert answer["state"] == "exhausted"
        assert Decimal(answer["overrun"]) == Decimal(answer["spent"]) - 3 > 0
        usage = runner.invoke(app, ["billing", "usage", "-w", "lab"], env=as_alice)
        assert "EXHAUSTED" in usage.output
        assert "overrun 0.33 USD" in usage.output

        started = runner.invoke(app, ["start", "train", "-w", "lab"], env=as_bob)
        assert started.exit_code == 0, started.output
        assert "it will wait: its workspace's budget is exhausted" in " ".join(started.output.split())
        reconciler.run_until_idle()
        shown = bob.get(f"/environments/{ids['train']}").json()
        assert shown["budget"]["state"] == "exhausted", "the start is accepted"
        assert shown["policy_stop"] is None, "a user's start clears the policy stop"
        assert (shown["phase"], shown["queue_reason"]) == ("admitted", "budget exhausted")
        described = runner.invoke(app, ["describe", "env", "train", "-w", "lab"], env=as_bob)
        assert "Queue:       budget exhausted" in described.output
        assert "Budget:      EXHAUSTED" in described.output

        assert alice.put(settings, json={"spending_limit": "100"}).status_code == 200
        reconciler.run_until_idle()
        shown = bob.get(f"/environments/{ids['train']}").json()
        assert (shown["phase"], shown["queue_reason"]) == ("running", None)
        assert shown["max_duration_deadline"].startswith("2026-11-10T16:40:00"), "the new run's"
        assert bob.get(f"/environments/{ids['eval']}").json()["phase"] == "stopped", "never by itself"
