"""Live usage and cost so far: what the meter closed plus each meter's open tail, priced exactly, shown to
those who may see the bills (and an environment's cost to its owner); records filtered by environment
and time, page after page; `remotegpu billing usage` and `describe env` print them."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from remotegpu.core.billing.pricing import amount_for
from remotegpu.core.environments.states import MeteredResource
from remotegpu.core.platform import clock
from remotegpu.ops.cli.app import app
from remotegpu.reconciler.loop import Reconciler
from remotegpu.reconciler.metering import meter_tick
from remotegpu.tests.api.conftest import Caller, spec

START = dt.datetime(2026, 11, 10, 12, 0, tzinfo=dt.UTC)
PRICES = {
    ("gpu", "H100"): "2.49",
    ("cpu", None): "0.02",
    ("memory", None): "0.005",
    ("storage", None): "0.10",
}
VOLUME = [{"name": "data", "size": "100Gi", "mount": "/workspace"}]
"""Each environment: 1 H100, 4 cores, 16 GiB of memory (conftest's spec) and a 100 GiB volume."""


@pytest.fixture
def team(new_user: Callable[[str], Caller]) -> dict[str, Caller]:
    """`research`, owned by alice, with bob and dave as members and carol as admin; eve is outside it
    (with a workspace of her own)."""
    people = {name: new_user(name) for name in ("alice", "bob", "carol", "dave", "eve")}
    workspace = people["alice"].post("/workspaces", json={"name": "research"}).json()["id"]
    for name, role in (("bob", "member"), ("carol", "admin"), ("dave", "member")):
        added = people["alice"].post(
            f"/workspaces/{workspace}/members", json={"user": f"{name}@example.org", "role": role}
        )
        assert added.status_code in (200, 201), added.text
    assert people["eve"].post("/workspaces", json={"name": "elsewhere"}).status_code == 201
    return people


@pytest.fixture
def running(
    team: dict[str, Caller], reconciler: Reconciler, engine: Engine
) -> Iterator[tuple[dict[str, str], Callable[[dt.timedelta], None]]]:
    """Bob's `train` and `eval`, running since START; metered by a tick at START + 1 h, and now START +
    1.5 h (half an hour of open tail)."""
    with engine.begin() as connection:
        for (resource, model), price in PRICES.items():
            connection.execute(
                text(
                    "INSERT INTO prices (resource, gpu_model, unit_price, effective_from) VALUES (:r, :m, :p, :t)"
                ),
                {"r": resource, "m": model, "p": Decimal(price), "t": START - dt.timedelta(days=1)},
            )
    with clock.frozen_at(START) as advance:
        ids = {}
        for name in ("train", "eval"):
            applied = team["bob"].post("/environments/apply", json=spec(name, "research", volumes=VOLUME))
            assert applied.status_code == 200, applied.text
            ids[name] = applied.json()["environment"]["id"]
        reconciler.run_until_idle()
        assert {team["bob"].get(f"/environments/{i}").json()["phase"] for i in ids.values()} == {"running"}
        advance(dt.timedelta(hours=1))
        assert meter_tick(reconciler.ctx).intervals == 8
        advance(dt.timedelta(minutes=30))
        yield ids, advance


HOURS = Decimal("1.5")
QUANTITY = {"gpu": Decimal(1), "cpu": Decimal(4), "memory": Decimal(16), "storage": Decimal(100)}


def expected_amounts(hours: Decimal) -> dict[str, Decimal]:
    """Compute: quantity × price × hours, exactly. Storage: the closed hour and the tail, each priced
    as the meter prices them (per 730-hour month, to 12 places)."""
    amounts = {
        r: QUANTITY[r] * Decimal(PRICES[(r, "H100" if r == "gpu" else None)]) * hours
        for r in ("gpu", "cpu", "memory")
    }
    storage = MeteredResource.STORAGE
    price = Decimal(PRICES[("storage", None)])
    middle = START + dt.timedelta(hours=1)
    amounts["storage"] = amount_for(storage, QUANTITY["storage"], price, START, middle) + amount_for(
        storage, QUANTITY["storage"], price, middle, START + dt.timedelta(hours=float(hours))
    )
    return amounts


def lines_of(answer: dict[str, Any], environment: str) -> dict[str, dict[str, Any]]:
    return {line["resource"]: line for line in answer["lines"] if line["environment"] == environment}


def test_usage_is_the_closed_intervals_plus_the_open_tail_exactly(
    team: dict[str, Caller], running: tuple[dict[str, str], Any]
) -> None:
    answer = team["alice"].get("/billing/usage", params={"workspace": "research"})
    assert answer.status_code == 200, answer.text
    usage = answer.json()
    assert usage["from"].startswith("2026-11-01T00:00:00"), "the billing period's start by default"
    assert usage["currency"] == "USD"
    amounts = expected_amounts(HOURS)
    for environment in ("train", "eval"):
        lines = lines_of(usage, environment)
        assert {r: Decimal(line["amount"]) for r, line in lines.items()} == amounts
        assert {r: Decimal(line["quantity"]) for r, line in lines.items()} == {
            "gpu": Decimal("1.5"),
            "cpu": Decimal(6),
            "memory": Decimal(24),
            "storage": Decimal(150) / Decimal(730),
        }
        assert {r: line["unit"] for r, line in lines.items()} == {
            "gpu": "gpu_hour",
            "cpu": "core_hour",
            "memory": "gib_hour",
            "storage": "gib_month",
        }
        assert lines["gpu"]["gpu_model"] == "H100"
        assert lines["storage"]["subject"] == "data"
    total = 2 * sum(amounts.values())
    assert Decimal(usage["total"]) == total
    assert Decimal(usage["total_rounded"]) == Decimal("7.99")
    assert {Decimal(e["amount"]) for e in usage["environments"]} == {sum(amounts.values())}
    # the closed part is what the tick wrote: the records of the first hour
    records = team["alice"].get("/billing/records", params={"workspace": "research", "limit": 200}).json()
    gpu = [r for r in records["items"] if r["resource"] == "gpu"]
    assert sum(Decimal(r["amount"]) for r in gpu) == 2 * Decimal("2.49")
    assert team["carol"].get("/billing/usage", params={"workspace": "research"}).json() == usage
    everything = team["alice"].get("/billing/usage").json()
    assert everything["lines"] == usage["lines"], "without a workspace: every billable one"


def test_a_window_counts_intervals_pro_rata_and_the_tail_up_to_its_end(
    team: dict[str, Caller], running: tuple[dict[str, str], Any]
) -> None:
    window = {
        "workspace": "research",
        "from": (START + dt.timedelta(minutes=30)).isoformat(),
        "to": "2026-11-10T13:15:00Z",
    }
    usage = team["alice"].get("/billing/usage", params=window).json()
    lines = lines_of(usage, "train")
    assert Decimal(lines["gpu"]["quantity"]) == Decimal("0.75"), "half the closed hour and a quarter tail"
    assert Decimal(lines["gpu"]["amount"]) == Decimal("2.49") * Decimal("0.75")
    assert Decimal(lines["cpu"]["amount"]) == Decimal("0.02") * 4 * Decimal("0.75")
    assert usage["to"].startswith("2026-11-10T13:15:00")


def test_a_running_environments_cost_grows_between_ticks(
    team: dict[str, Caller], running: tuple[dict[str, str], Callable[[dt.timedelta], None]]
) -> None:
    ids, advance = running
    before = Decimal(team["bob"].get(f"/environments/{ids['train']}").json()["cost_so_far"]["amount"])
    assert before == sum(expected_amounts(HOURS).values())
    advance(dt.timedelta(minutes=30))
    after = team["bob"].get(f"/environments/{ids['train']}").json()["cost_so_far"]
    assert Decimal(after["amount"]) == sum(expected_amounts(Decimal(2)).values())
    assert (after["rounded"], after["currency"]) == ("5.33", "USD")


def test_who_sees_usage_and_cost(team: dict[str, Caller], running: tuple[dict[str, str], Any]) -> None:
    ids, _ = running
    assert team["bob"].get("/billing/usage", params={"workspace": "research"}).status_code == 403
    assert team["eve"].get("/billing/usage", params={"workspace": "research"}).status_code == 404
    assert team["eve"].get("/billing/usage").json()["lines"] == [], "her own workspace has no usage"
    assert team["bob"].get("/billing/usage").json()["lines"] == [], "a member sees no workspace's bills"
    assert team["eve"].get(f"/environments/{ids['train']}").status_code == 404
    cost = {
        name: team[name].get(f"/environments/{ids['train']}").json()["cost_so_far"]
        for name in ("alice", "bob", "carol", "dave")
    }
    assert cost["dave"] is None, "another member: not their environment, not their bills"
    assert cost["bob"] == cost["carol"] == cost["alice"] is not None


def test_bad_windows_are_refused_naming_the_field(
    team: dict[str, Caller], running: tuple[dict[str, str], Any]
) -> None:
    for params, field in (
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-11-10T13:00:00Z", "to": "2026-11-10T12:00:00Z"}, "from"),
        ({"from": "2026-12-01T00:00:00Z"}, "from"),  # after now, the default end
    ):
        answer = team["alice"].get("/billing/usage", params={"workspace": "research", **params})
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == field
    answer = team["alice"].get("/billing/records", params={"from": "soon"})
    assert (answer.status_code, answer.json()["errors"][0]["field"]) == (422, "from")


def test_records_filter_by_environment_and_time_page_by_page(
    team: dict[str, Caller],
    running: tuple[dict[str, str], Any],
    reconciler: Reconciler,
    engine: Engine,
) -> None:
    ids, _ = running
    assert meter_tick(reconciler.ctx).intervals == 8  # the half hour: now two intervals per meter
    with engine.connect() as connection:
        wanted = {
            str(row.id)
            for row in connection.execute(
                text(
                    "SELECT id FROM billing_intervals WHERE environment_id = :id AND ended_at > :since"
                    " ORDER BY started_at"
                ),
                {"id": ids["train"], "since": START + dt.timedelta(minutes=90) - dt.timedelta(minutes=1)},
            )
        }
    assert len(wanted) == 4
    for environment in ("train", ids["train"]):
        seen: list[str] = []
        cursor = None
        while True:
            params = {"workspace": "research", "environment": environment, "limit": 1}
            params |= {"from": "2026-11-10T13:29:00+00:00"} | ({"cursor": cursor} if cursor else {})
            page = team["alice"].get("/billing/records", params=params).json()
            seen += [item["id"] for item in page["items"]]
            assert all(item["environment_id"] == ids["train"] for item in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert len(seen) == len(set(seen)), environment
        assert set(seen) == wanted, environment
    first_hour = (
        team["alice"]
        .get(
            "/billing/records",
            params={"environment": "train", "from": "2026-11-10T12:00:00Z", "to": "2026-11-10T13:00:00Z"},
        )
        .json()["items"]
    )
    assert len(first_hour) == 4
    assert {r["ended_at"][:19] for r in first_hour} == {"2026-11-10T13:00:00"}


def _cli_env(caller: Caller, api_url: str, tmp_path: Path) -> dict[str, str | None]:
    api_token = caller.post("/auth/tokens", json={"name": "cli"}).json()["token"]
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("REMOTEGPU_")}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "200"}
    return env | {"REMOTEGPU_SERVER_URL": api_url, "REMOTEGPU_TOKEN": api_token}


def test_the_cli_prints_usage_and_the_cost_so_far(
    team: dict[str, Caller], running: tuple[dict[str, str], Any], api_url: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    env = _cli_env(team["alice"], api_url, tmp_path)
    result = runner.invoke(app, ["billing", "usage", "-w", "research"], env=env)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert ["ENVIRONMENT", "RESOURCE", "QUANTITY", "AMOUNT"] in rows
    assert ["train", "gpu", "H100", "1.5", "GPU-h", "3.74", "USD"] in rows  # 3.735, half-even
    assert ["eval", "cpu", "6.0", "core-h", "0.12", "USD"] in rows
    assert ["train", "storage", "data", "0.2055", "GiB-month", "0.02", "USD"] in rows
    assert result.output.rstrip().endswith(": 7.99 USD")
    assert "Total 2026-11-01T00:00:00Z – 2026-11-10T13:30:00Z" in result.output
    as_json = runner.invoke(app, ["billing", "usage", "-w", "research", "-o", "json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    assert '"total_rounded": "7.99"' in as_json.output
    bad = runner.invoke(app, ["billing", "usage", "-w", "research", "--from", "later"], env=env)
    assert bad.exit_code == 1
    assert str(bad.exception).startswith("from: expected an ISO 8601 time")

    owner = runner.invoke(app, ["describe", "env", "train"], env=_cli_env(team["bob"], api_url, tmp_path))
    assert owner.exit_code == 0, owner.output
    assert "Cost so far: 4.00 USD" in owner.output
    member = runner.invoke(app, ["describe", "env", "train"], env=_cli_env(team["dave"], api_url, tmp_path))
    assert member.exit_code == 0, member.output
    assert "Cost so far" not in member.output
